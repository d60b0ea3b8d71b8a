"""The one I/O module: Delta table creation and the writers every job uses, plus file listing.

Questions about a table's log (does it exist, its latest version, what the last commit
recorded) are answered from `_delta_log/` through the Hadoop FileSystem: the commit files are
Delta's documented protocol, and reading one small JSON file costs milliseconds where a
DeltaTable snapshot costs Spark jobs.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import unquote

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from adlake.tables import TableSpec

log = logging.getLogger(__name__)

# Locations known to exist in this process; tables are never dropped by AdLake jobs.
_known_tables: set[str] = set()

_COMMIT_FILE = re.compile(r"^(\d{20})\.json$")


@dataclass(frozen=True)
class LandingFile:
    """One listed landing file."""

    path: str
    length: int
    modification_ms: int


def _fs_path(spark: SparkSession, location: str) -> tuple[Any, Any]:
    """(Hadoop FileSystem, Path) for a location, through the session's Hadoop configuration."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    path = jvm.org.apache.hadoop.fs.Path(location)
    return path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), path


def commit_versions(spark: SparkSession, location: str) -> list[int]:
    """Versions of the commit files in the table's `_delta_log/` (empty: no table)."""
    fs, path = _fs_path(spark, location.rstrip("/") + "/_delta_log")
    if not fs.exists(path):
        return []
    versions = []
    for status in fs.listStatus(path):
        match = _COMMIT_FILE.match(str(status.getPath().getName()))
        if match:
            versions.append(int(match.group(1)))
    return sorted(versions)


def is_table(spark: SparkSession, location: str) -> bool:
    """True when a Delta table exists at `location` (one directory listing, no Spark job)."""
    return location in _known_tables or bool(commit_versions(spark, location))


def latest_version(spark: SparkSession, location: str) -> int | None:
    """Latest committed version of a Delta table, None when there is no table."""
    versions = commit_versions(spark, location)
    return versions[-1] if versions else None


def last_user_metadata(spark: SparkSession, location: str) -> str | None:
    """userMetadata of the table's latest commit (None: no table or none recorded)."""
    version = latest_version(spark, location)
    return None if version is None else commit_info(spark, location, version).get("userMetadata")


def commit_info(spark: SparkSession, location: str, version: int) -> dict[str, Any]:
    """The `commitInfo` action of one commit file ({} when the commit has none)."""
    fs, path = _fs_path(spark, f"{location.rstrip('/')}/_delta_log/{version:020d}.json")
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    stream = fs.open(path)
    try:
        text = jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8")
    finally:
        stream.close()
    for line in str(text).splitlines():
        if '"commitInfo"' in line:
            info: dict[str, Any] = json.loads(line).get("commitInfo", {})
            return info
    return {}


def ensure_table(spark: SparkSession, spec: TableSpec, location: str) -> None:
    """Create the table with its declared schema and partitioning if it does not exist yet.

    Creating up front (instead of letting the first append infer it) keeps the schema the
    declared one even when the first batch is empty. An existing table costs one listing.
    """
    if is_table(spark, location):
        _known_tables.add(location)
        return
    (
        DeltaTable.createIfNotExists(spark)
        .location(location)
        .addColumns(spec.schema)
        .partitionedBy(*spec.partition_by)
        .execute()
    )
    _known_tables.add(location)


def read_table(spark: SparkSession, location: str) -> DataFrame:
    """Batch read of a path-based Delta table."""
    return spark.read.format("delta").load(location)


def append_idempotent(
    df: DataFrame, spec: TableSpec, location: str, app_id: str, version: int
) -> None:
    """Append in one Delta transaction that Delta skips if (app_id, version) was already committed.

    This is what makes a re-run after a crash write each batch exactly once: the same batch
    always carries the same version, and Delta records the last version per app id in the
    table's own log, atomically with the data.
    """
    ordered = df.select(*[F.col(f.name).cast(f.dataType) for f in spec.schema.fields])
    (
        ordered.write.format("delta")
        .mode("append")
        .option("txnAppId", app_id)
        .option("txnVersion", version)
        .save(location)
    )
    log.info("append %s app_id=%s version=%d", spec.name, app_id, version)


def list_landing_files(spark: SparkSession, directory: str, path_glob: str) -> list[LandingFile]:
    """Files directly under `directory` whose name matches `path_glob`, sorted by path.

    One Hadoop FileSystem glob (local disk, HDFS, S3A alike): no Spark job, no file read.
    Paths are fully qualified (`file:/...`), the form Spark's `_metadata.file_path` gives.
    """
    fs, path = _fs_path(spark, directory.rstrip("/") + "/" + path_glob)
    statuses = fs.globStatus(path) or []
    files = [
        LandingFile(
            str(fs.makeQualified(s.getPath()).toString()),
            int(s.getLen()),
            int(s.getModificationTime()),
        )
        for s in statuses
        if s.isFile()
    ]
    return sorted(files, key=lambda f: f.path)


def _sql_literal(value: date | str) -> str:
    return "DATE'" + value.isoformat() + "'" if isinstance(value, date) else repr(str(value))


def merge_insert_new(
    df: DataFrame,
    spec: TableSpec,
    location: str,
    partition_values: Iterable[date] | None = None,
) -> int:
    """Insert the rows whose keys the table does not hold yet; returns how many were inserted.

    Insert-if-absent MERGE on the spec's keys is what makes re-runs and stream replays
    idempotent: the same row arriving twice, in one batch or in two, is stored once.
    The source must hold one row per key (callers deduplicate first).

    `partition_values` bounds the MERGE to the target partitions the batch can touch (the
    event dates of its rows): a literal predicate on the partition column in the ON clause,
    Delta's documented way to prune the target, so a batch's cost follows the batch, not the
    table's history. Keys are then unique per partition value, which holds for silver: a
    key is an event, and an event has one event date.
    """
    if not spec.keys:
        raise ValueError(f"{spec.name} declares no keys to merge on")
    source = df.select(*[F.col(f.name).cast(f.dataType) for f in spec.schema.fields])
    conditions = [f"t.`{k}` = s.`{k}`" for k in spec.keys]
    if partition_values is not None:
        if len(spec.partition_by) != 1:
            raise ValueError(f"{spec.name}: a bounded MERGE needs one partition column")
        column = spec.partition_by[0]
        values = sorted(set(partition_values))
        if not values:
            return 0
        literals = ", ".join(_sql_literal(v) for v in values)
        conditions = [f"t.`{column}` IN ({literals})", f"t.`{column}` = s.`{column}`", *conditions]
    condition = " AND ".join(conditions)
    metrics = (
        DeltaTable.forPath(df.sparkSession, location)
        .alias("t")
        .merge(source.alias("s"), condition)
        .whenNotMatchedInsertAll()
        .execute()
        .first()
    )
    inserted = int(metrics["num_inserted_rows"]) if metrics is not None else 0
    log.info("merge %s inserted=%d", spec.name, inserted)
    return inserted


def replace_table(
    df: DataFrame, spec: TableSpec, location: str, user_metadata: str | None = None
) -> None:
    """Replace the whole table in one transaction (small dimensions refreshed from a file).

    `user_metadata` (e.g. which file version it came from) is stored with the commit, where
    `last_user_metadata` reads it back without a Spark job.
    """
    ordered = df.select(*[F.col(f.name).cast(f.dataType) for f in spec.schema.fields])
    writer = ordered.write.format("delta").mode("overwrite")
    if user_metadata is not None:
        writer = writer.option("userMetadata", user_metadata)
    writer.save(location)
    log.info("replace %s", spec.name)


def overwrite_derived(
    df: DataFrame,
    name: str,
    location: str,
    partition_by: tuple[str, ...],
    inputs_fingerprint: str | None = None,
) -> None:
    """Replace a gold table recomputed from silver, in one transaction.

    A full replace is what makes gold idempotent and restates late data: the table always
    equals the function of the current silver tables. The schema is the transform's output.
    `inputs_fingerprint` (the input table versions and parameters) is stored as the commit's
    userMetadata so the next run can tell that nothing changed (`derived_commit`).
    """
    writer = (
        df.write.format("delta")
        .mode("overwrite")
        .option("overwriteSchema", "true")
        .partitionBy(*partition_by)
    )
    if inputs_fingerprint is not None:
        writer = writer.option("userMetadata", inputs_fingerprint)
    writer.save(location)
    log.info("replace %s", name)


def table_version(spark: SparkSession, location: str) -> int | None:
    """Latest committed version of a Delta table, None when there is no table."""
    return latest_version(spark, location)


_MAINTENANCE_OPERATIONS = ("OPTIMIZE", "VACUUM START", "VACUUM END")


def last_write_partial(spark: SparkSession, location: str) -> bool:
    """True when the latest data write of a derived table replaced only some rows (replaceWhere)."""
    for version in reversed(commit_versions(spark, location)):
        info = commit_info(spark, location, version)
        if info.get("operation") in _MAINTENANCE_OPERATIONS:
            continue
        predicate = (info.get("operationParameters") or {}).get("predicate")
        return predicate not in (None, "", "[]")
    return False


def derived_commit(spark: SparkSession, location: str) -> tuple[str | None, int]:
    """(userMetadata, numOutputRows) of the latest data write of a derived table.

    Maintenance commits (OPTIMIZE, VACUUM) are skipped: they change files, not content.
    (None, 0) when there is no table.
    """
    for version in reversed(commit_versions(spark, location)):
        info = commit_info(spark, location, version)
        if info.get("operation") in _MAINTENANCE_OPERATIONS:
            continue
        metrics = info.get("operationMetrics") or {}
        return info.get("userMetadata"), int(metrics.get("numOutputRows", 0))
    return None, 0


@dataclass(frozen=True)
class AddedFile:
    """A data file a commit added with dataChange = true: its full path and partition values."""

    path: str
    partition_values: dict[str, str | None]


def _commit_actions(
    spark: SparkSession, location: str, version: int
) -> list[dict[str, Any]] | None:
    """The actions of one commit file, None when the file is gone (log cleaned up)."""
    fs, path = _fs_path(spark, f"{location.rstrip('/')}/_delta_log/{version:020d}.json")
    if not fs.exists(path):
        return None
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    stream = fs.open(path)
    try:
        text = jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8")
    finally:
        stream.close()
    return [json.loads(line) for line in str(text).splitlines() if line.strip()]


def appended_files(
    spark: SparkSession, location: str, after: int, upto: int
) -> list[AddedFile] | None:
    """Files added by the commits (after, upto] when those commits only appended rows.

    Read from the commit files, no Spark job. None when the change is not a pure append,
    so the caller must recompute from scratch: a commit file is gone, a commit removed or
    rewrote rows (a remove with dataChange), changed the schema or properties (metaData), or
    added a file with a deletion vector. OPTIMIZE's adds and removes (dataChange = false)
    move rows without changing them and are skipped.
    """
    added: list[AddedFile] = []
    base = location.rstrip("/")
    for version in range(after + 1, upto + 1):
        actions = _commit_actions(spark, location, version)
        if actions is None:
            return None
        for action in actions:
            if "metaData" in action:
                return None
            if "remove" in action and action["remove"].get("dataChange", True):
                return None
            add = action.get("add")
            if add is None or not add.get("dataChange", True):
                continue
            if add.get("deletionVector"):
                return None
            relative = unquote(str(add["path"]))
            full = (
                relative
                if re.match(r"^[a-zA-Z][a-zA-Z0-9+.\-]*:", relative)
                else (f"{base}/{relative}")
            )
            added.append(AddedFile(full, dict(add.get("partitionValues") or {})))
    return added


def replace_partitions(
    df: DataFrame,
    name: str,
    location: str,
    column: str,
    values: Iterable[date | None],
    inputs_fingerprint: str,
) -> None:
    """Replace the rows of a derived table whose `column` is in `values`, in one transaction.

    Delta's replaceWhere on the partition column: only those partitions' files are
    rewritten, and a row of `df` outside them fails the write instead of landing there.
    A None value stands for the null partition.
    """
    values = list(values)
    chosen = sorted({v for v in values if v is not None})
    terms = [f"`{column}` IN ({', '.join(_sql_literal(v) for v in chosen)})"] if chosen else []
    if any(v is None for v in values):
        terms.append(f"`{column}` IS NULL")
    predicate = " OR ".join(terms) if terms else "false"
    (
        df.write.format("delta")
        .mode("overwrite")
        .option("replaceWhere", predicate)
        .option("userMetadata", inputs_fingerprint)
        .save(location)
    )
    log.info("replace %s where %s", name, predicate)
