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
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any, TypeVar
from urllib.parse import unquote

from delta.exceptions import (
    ConcurrentAppendException,
    ConcurrentDeleteDeleteException,
    ConcurrentDeleteReadException,
    ConcurrentTransactionException,
    ConcurrentWriteException,
    DeltaConcurrentModificationException,
    MetadataChangedException,
    ProtocolChangedException,
)
from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from adlake.tables import TableSpec

log = logging.getLogger(__name__)

# Locations known to exist in this process; tables are never dropped by AdLake jobs.
_known_tables: set[str] = set()

_COMMIT_FILE = re.compile(r"^(\d{20})\.json$")

# Delta's commit conflicts (the Python classes share no base class but PySparkException).
# Each means the transaction committed nothing, so running it again on the new snapshot is
# safe for a writer whose second run cannot store a row twice (see `retry_on_conflict`).
COMMIT_CONFLICTS: tuple[type[Exception], ...] = (
    DeltaConcurrentModificationException,
    ConcurrentWriteException,
    MetadataChangedException,
    ProtocolChangedException,
    ConcurrentAppendException,
    ConcurrentDeleteReadException,
    ConcurrentDeleteDeleteException,
    ConcurrentTransactionException,
)
CONFLICT_ATTEMPTS = 4
CONFLICT_BACKOFF_SECONDS = 0.5

T = TypeVar("T")


@dataclass(frozen=True)
class MergeCounts:
    """What an insert-if-absent MERGE did: rows it read from its source, rows it inserted.

    `source_rows` comes from the MERGE commit's operationMetrics (numSourceRows); None when
    the MERGE committed nothing (Delta skips the commit when no row is new).
    `replayed_from`: the counts are those of an earlier commit of the same tagged write (its
    version), because this run of it found every row stored by that one (see `WriteTag`).
    """

    source_rows: int | None
    inserted: int
    replayed_from: int | None = None


@dataclass(frozen=True)
class WriteTag:
    """Names one write of one batch, to recognise its commit when the batch is replayed.

    Stored as the commit's userMetadata. `writer` is stable across restarts (e.g. built from
    a stream's query id, which its checkpoint keeps) and writes its batches in `batch` order.
    """

    writer: str
    batch: int

    def user_metadata(self) -> str:
        return json.dumps({"adlake_writer": self.writer, "batch": self.batch}, sort_keys=True)

    @staticmethod
    def parse(user_metadata: object) -> WriteTag | None:
        """The tag a commit's userMetadata carries, None when it carries none."""
        if not isinstance(user_metadata, str) or not user_metadata.startswith("{"):
            return None
        try:
            data = json.loads(user_metadata)
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        writer, batch = data.get("adlake_writer"), data.get("batch")
        if not isinstance(writer, str) or not isinstance(batch, int):
            return None
        return WriteTag(writer, batch)


# Commits a replay looks back over for its first attempt's commit (newest first).
REPLAY_LOOKBACK = 50
_USER_METADATA_CONF = "spark.databricks.delta.commitInfo.userMetadata"


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


def all_exist(spark: SparkSession, paths: Iterable[str]) -> bool:
    """True when every path exists (one FileSystem call each, no Spark job)."""
    for path in paths:
        fs, hadoop_path = _fs_path(spark, path)
        if not fs.exists(hadoop_path):
            return False
    return True


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
    """The `commitInfo` action of one commit file ({} when the commit has none or is gone)."""
    for action in _commit_actions(spark, location, version) or []:
        if "commitInfo" in action:
            info: dict[str, Any] = action["commitInfo"]
            return info
    return {}


def retry_on_conflict(
    fn: Callable[[], T],
    what: str,
    attempts: int | None = None,
    backoff_seconds: float | None = None,
) -> T:
    """Run `fn`, again (up to `attempts` runs in all) when Delta rejects its commit as conflicting.

    A conflicting transaction commits nothing, so a rerun is safe for writers whose rerun
    cannot store a row twice: insert-if-absent MERGEs and txnAppId/txnVersion appends (also
    after an attempt that did commit and failed later: the MERGE then finds its keys, Delta
    skips the append). Concurrent OPTIMIZE is the usual cause. Waits `backoff_seconds`,
    doubled each time, between attempts; the last conflict is raised. Defaults:
    CONFLICT_ATTEMPTS and CONFLICT_BACKOFF_SECONDS.
    """
    attempts = CONFLICT_ATTEMPTS if attempts is None else attempts
    backoff_seconds = CONFLICT_BACKOFF_SECONDS if backoff_seconds is None else backoff_seconds
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except COMMIT_CONFLICTS as exc:
            if attempt == attempts:
                raise
            wait = backoff_seconds * 2 ** (attempt - 1)
            log.warning(
                "%s: commit conflict (%s), retry %d of %d in %.1fs",
                what,
                type(exc).__name__,
                attempt,
                attempts - 1,
                wait,
            )
            time.sleep(wait)
    raise AssertionError("unreachable: attempts >= 1")


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
    df: DataFrame,
    spec: TableSpec,
    location: str,
    app_id: str,
    version: int,
    *,
    user_metadata: str | None = None,
) -> None:
    """Append in one Delta transaction that Delta skips if (app_id, version) was already committed.

    This is what makes a re-run after a crash write each batch exactly once: the same batch
    always carries the same version, and Delta records the last version per app id in the
    table's own log, atomically with the data. Retried on commit conflicts. Columns the spec
    declares and the table lacks yet are added (mergeSchema): specs only ever add columns.
    A caller that must know whether its own rows went in passes a unique `user_metadata`
    and asks `committed_since`.
    """
    ordered = df.select(*[F.col(f.name).cast(f.dataType) for f in spec.schema.fields])
    writer = (
        ordered.write.format("delta")
        .mode("append")
        .option("txnAppId", app_id)
        .option("txnVersion", version)
        .option("mergeSchema", "true")
    )
    if user_metadata is not None:
        writer = writer.option("userMetadata", user_metadata)
    retry_on_conflict(lambda: writer.save(location), f"append {spec.name}")
    log.info("append %s app_id=%s version=%d", spec.name, app_id, version)


def committed_since(
    spark: SparkSession, location: str, after_version: int | None, user_metadata: str
) -> bool:
    """True when a commit after `after_version` carries `user_metadata` (commit files only).

    An idempotent append that Delta skipped, because its (app id, version) was already
    committed by an earlier attempt or by another writer, leaves no such commit.
    """
    return any(
        commit_info(spark, location, version).get("userMetadata") == user_metadata
        for version in commit_versions(spark, location)
        if after_version is None or version > after_version
    )


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
    *,
    tag: WriteTag | None = None,
) -> MergeCounts:
    """Insert the rows whose keys the table does not hold yet; returns what the MERGE counted.

    Insert-if-absent MERGE on the spec's keys is what makes re-runs and stream replays
    idempotent: the same row arriving twice, in one batch or in two, is stored once.
    The source must hold one row per key (callers deduplicate first).

    `partition_values` bounds the MERGE to the target partitions the batch can touch (the
    event dates of its rows): a literal predicate on the partition column in the ON clause,
    Delta's documented way to prune the target, so a batch's cost follows the batch, not the
    table's history. Keys are then unique per partition value, which holds for silver: a
    key is an event, and an event has one event date.

    Retried on commit conflicts (a concurrent OPTIMIZE): insert-if-absent makes a rerun safe.
    The counts are read back from the MERGE's own commit: the newest MERGE commit after the
    version seen before (with a `tag`: the one carrying it, so a concurrent writer's MERGE
    is never taken for this one).

    `tag` is stored as the commit's userMetadata. A replay of a batch whose first attempt
    committed (a crash before the batch was recorded as done) inserts nothing, so Delta
    commits nothing; it then returns the counts of the first attempt's commit
    (`replayed_from` set), found by `tagged_merge_counts` in the commit files. That lookup
    runs only when nothing was inserted; a MERGE that inserts reads no more than before.
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
            return MergeCounts(0, 0)
        literals = ", ".join(_sql_literal(v) for v in values)
        conditions = [f"t.`{column}` IN ({literals})", f"t.`{column}` = s.`{column}`", *conditions]
    condition = " AND ".join(conditions)
    spark = df.sparkSession
    before = latest_version(spark, location)

    def merge() -> int:
        metrics = (
            DeltaTable.forPath(spark, location)
            .alias("t")
            .merge(source.alias("s"), condition)
            .whenNotMatchedInsertAll()
            .execute()
            .first()
        )
        return int(metrics["num_inserted_rows"]) if metrics is not None else 0

    if tag is None:
        inserted = retry_on_conflict(merge, f"merge {spec.name}")
    else:
        # The commit's userMetadata: a session setting (a MERGE takes no write option), set on
        # the source's session only for this call; a stream's batches have a session of their
        # own, and the silver processor runs one write at a time.
        conf = spark.conf
        previous = conf.get(_USER_METADATA_CONF, None)
        conf.set(_USER_METADATA_CONF, tag.user_metadata())
        try:
            inserted = retry_on_conflict(merge, f"merge {spec.name}")
        finally:
            if previous is None:
                conf.unset(_USER_METADATA_CONF)
            else:
                conf.set(_USER_METADATA_CONF, previous)
    if inserted == 0 and tag is not None:
        replayed = tagged_merge_counts(spark, location, tag)
        if replayed is not None:
            log.info(
                "merge %s: %s batch %d replayed, counts of its commit %d: source=%s inserted=%d",
                spec.name,
                tag.writer,
                tag.batch,
                replayed.replayed_from,
                replayed.source_rows,
                replayed.inserted,
            )
            return replayed
    source_rows = _merge_source_rows(spark, location, before, tag)
    log.info("merge %s source=%s inserted=%d", spec.name, source_rows, inserted)
    return MergeCounts(source_rows, inserted)


def _merge_source_rows(
    spark: SparkSession, location: str, after: int | None, tag: WriteTag | None = None
) -> int | None:
    """numSourceRows of the newest MERGE commit after version `after` (with `tag`: the newest
    carrying it); None when there is none."""
    for version in reversed(commit_versions(spark, location)):
        if after is not None and version <= after:
            break
        info = commit_info(spark, location, version)
        if info.get("operation") != "MERGE":
            continue
        if tag is not None and WriteTag.parse(info.get("userMetadata")) != tag:
            continue
        rows = (info.get("operationMetrics") or {}).get("numSourceRows")
        return None if rows is None else int(rows)
    return None


def tagged_merge_counts(
    spark: SparkSession, location: str, tag: WriteTag, lookback: int | None = None
) -> MergeCounts | None:
    """Counts of the MERGE commit that carries `tag`, among the table's newest commits.

    Bounded: it reads at most `lookback` commit files (default REPLAY_LOOKBACK), newest first,
    and stops at the first commit of the same writer for another batch, since the writer
    commits its batches in order: a replay's first attempt is newer than any earlier batch.
    Commit files only, no Spark job. None when no such commit is found: the batch inserted
    nothing when it first ran either, or its commit is further back than the lookback.
    """
    lookback = REPLAY_LOOKBACK if lookback is None else lookback
    for version in reversed(commit_versions(spark, location)[-lookback:]):
        info = commit_info(spark, location, version)
        found = WriteTag.parse(info.get("userMetadata"))
        if found is None or found.writer != tag.writer:
            continue
        if found.batch != tag.batch or info.get("operation") != "MERGE":
            return None
        counts = info.get("operationMetrics") or {}
        rows = counts.get("numSourceRows")
        return MergeCounts(
            None if rows is None else int(rows),
            int(counts.get("numTargetRowsInserted", 0)),
            replayed_from=version,
        )
    return None


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
