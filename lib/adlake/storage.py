"""The one write path per table kind: creation, idempotent append, bounded MERGE, replace.

Also conflict retries and landing-file listing. What a table's log says (exists, versions,
commit metadata) is read by `adlake.deltalog`.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from typing import TypeVar

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

from adlake import deltalog
from adlake.tables import TableSpec

log = logging.getLogger(__name__)


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
    version), because this run of it found every row stored by that one (see `deltalog.WriteTag`).
    """

    source_rows: int | None
    inserted: int
    replayed_from: int | None = None


_USER_METADATA_CONF = "spark.databricks.delta.commitInfo.userMetadata"


@dataclass(frozen=True)
class LandingFile:
    """One listed landing file."""

    path: str
    length: int
    modification_ms: int


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
    if deltalog.is_table(spark, location):
        deltalog.known_tables.add(location)
        return
    builder = (
        DeltaTable.createIfNotExists(spark)
        .location(location)
        .addColumns(spec.schema)
        .partitionedBy(*spec.partition_by)
    )
    for key, value in spec.properties:
        builder = builder.property(key, value)
    builder.execute()
    deltalog.known_tables.add(location)


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
    known_new: bool = False,
) -> None:
    """Append in one Delta transaction that Delta skips if (app_id, version) was already committed.

    This is what makes a re-run after a crash write each batch exactly once: the same batch
    always carries the same version, and Delta records the last version per app id in the
    table's own log, atomically with the data. Retried on commit conflicts. Columns the spec
    declares and the table lacks yet are added (mergeSchema): specs only ever add columns.
    A caller that must know whether its own rows went in passes a unique `user_metadata`
    and asks `deltalog.committed_since`.

    Delta's check reconstructs the table's whole state in Spark jobs (`txnVersion` reads
    the snapshot's transactions): about 0.7-1 s per append on 2 cores, growing with the
    table. A caller whose own protocol already proves the table does not hold (app_id,
    version) passes `known_new`: a blind append then, its commit tagged with
    `deltalog.WriteTag(app_id, version)` as userMetadata instead of Delta's txn action.
    Delta's check does not see such tags: a writer that appends both ways must look for its
    tags itself before a checked append (`deltalog.last_write_of`).
    """
    ordered = df.select(*[F.col(f.name).cast(f.dataType) for f in spec.schema.fields])
    writer = ordered.write.format("delta").mode("append").option("mergeSchema", "true")
    if known_new:
        if user_metadata is not None:
            raise ValueError("a known_new append carries its WriteTag as userMetadata")
        user_metadata = deltalog.WriteTag(app_id, version).user_metadata()
    else:
        writer = writer.option("txnAppId", app_id).option("txnVersion", version)
    if user_metadata is not None:
        writer = writer.option("userMetadata", user_metadata)
    retry_on_conflict(lambda: writer.save(location), f"append {spec.name}")
    log.info("append %s app_id=%s version=%d", spec.name, app_id, version)


def list_landing_files(spark: SparkSession, directory: str, path_glob: str) -> list[LandingFile]:
    """Files directly under `directory` whose name matches `path_glob`, sorted by path.

    One Hadoop FileSystem glob (local disk, HDFS, S3A alike): no Spark job, no file read.
    Paths are fully qualified (`file:/...`), the form Spark's `_metadata.file_path` gives.
    """
    fs, path = deltalog.fs_path(spark, directory.rstrip("/") + "/" + path_glob)
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
    tag: deltalog.WriteTag | None = None,
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
    before = deltalog.latest_version(spark, location)

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
        # the source's session only for this call; each stream query has a session of its
        # own (sources run side by side) and runs one batch, so one write, at a time.
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
    spark: SparkSession, location: str, after: int | None, tag: deltalog.WriteTag | None = None
) -> int | None:
    """numSourceRows of the newest MERGE commit after version `after` (with `tag`: the newest
    carrying it); None when there is none."""
    for version in deltalog.versions_newest_first(spark, location):
        if after is not None and version <= after:
            break
        info = deltalog.commit_info(spark, location, version)
        if info.get("operation") != "MERGE":
            continue
        if tag is not None and deltalog.WriteTag.parse(info.get("userMetadata")) != tag:
            continue
        rows = (info.get("operationMetrics") or {}).get("numSourceRows")
        return None if rows is None else int(rows)
    return None


# Commits a replay looks back over for its first attempt's commit (newest first).
REPLAY_LOOKBACK = 50


def tagged_merge_counts(
    spark: SparkSession, location: str, tag: deltalog.WriteTag, lookback: int | None = None
) -> MergeCounts | None:
    """Counts of the MERGE commit that carries `tag`, among the table's newest commits.

    Bounded: it reads at most `lookback` commit files (default REPLAY_LOOKBACK), newest first,
    and stops at the first commit of the same writer for another batch, since the writer
    commits its batches in order: a replay's first attempt is newer than any earlier batch.
    Commit files only, no Spark job. None when no such commit is found: the batch inserted
    nothing when it first ran either, or its commit is further back than the lookback.
    """
    lookback = REPLAY_LOOKBACK if lookback is None else lookback
    for version in itertools.islice(deltalog.versions_newest_first(spark, location), lookback):
        info = deltalog.commit_info(spark, location, version)
        found = deltalog.WriteTag.parse(info.get("userMetadata"))
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
    `deltalog.last_user_metadata` reads it back without a Spark job.
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
    userMetadata so the next run can tell that nothing changed (`deltalog.derived_commit`).
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
