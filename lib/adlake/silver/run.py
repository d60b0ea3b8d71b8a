"""Silver runs: bronze Delta tables -> silver tables, quarantine and ops/batch_audit.

See docs/silver.md for how it works.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming.query import StreamingQuery
from pyspark.sql.types import StringType, StructField, StructType

from adlake import clock, deltalog, faults, metrics, schemas, storage
from adlake.config import AppConfig
from adlake.settings import silver as rules_conf
from adlake.silver import dedup, rules
from adlake.silver import standardize as silver
from adlake.silver.batch import (
    AuditRow,
    BatchStats,
    batch_stats,
    existing_duplicates,
    for_writes,
    quarantine_rows,
    record_json_if_rejected,
    with_raw_record,
)
from adlake.streams import stop_on_signals, wait_for_queries, with_trigger
from adlake.tables import (
    BATCH_AUDIT,
    BRONZE_BY_SOURCE,
    SILVER_BY_TARGET,
    SILVER_CREATIVES,
    SILVER_JOB,
    SILVER_QUARANTINE,
    TARGETS_BY_SOURCE,
    checkpoint_location,
)

log = logging.getLogger(__name__)
JOB = SILVER_JOB
SPECS = SILVER_BY_TARGET
CREATIVES_CSV_SCHEMA = StructType(
    [StructField(name, StringType(), True) for name in schemas.CREATIVE_COLUMNS]
)


class ValidationFailedError(RuntimeError):
    """A `fail` rule was violated: the job stops before writing anything for the batch."""


class SilverProcessor:
    """Turns bronze batches into silver rows; one instance per job run."""

    def __init__(self, spark: SparkSession, cfg: AppConfig, mode: str) -> None:
        self.spark = spark
        self.cfg = cfg
        self.mode = mode
        self.run_id = str(uuid.uuid4())
        self.tz = cfg.silver.source_timezone
        self.audit_rows: list[AuditRow] = []
        # Sources' micro-batches run side by side (one stream query each): this lock guards
        # the shared dimensions' first load and the audit list, the other one the quarantine.
        self._lock = threading.Lock()
        self._quarantine_lock = threading.Lock()
        self._creatives: DataFrame | None = None
        self._countries: DataFrame | None = None
        # Newest event time written per target (None: nothing yet); read once from the audit.
        self._newest: dict[str, datetime | None] = {}
        quarantine_rules = tuple(
            r.name for r in cfg.silver.rules if r.action == rules_conf.QUARANTINE
        )
        for target, spec in SPECS.items():
            metrics.prepare(JOB, target, spec.relative_path, quarantine_rules)
        for spec in (*SPECS.values(), SILVER_CREATIVES, SILVER_QUARANTINE, BATCH_AUDIT):
            storage.ensure_table(spark, spec, spec.location(cfg))

    # -- dimensions -----------------------------------------------------------------------
    def refresh_creatives(self) -> DataFrame:
        """Replace silver/creatives from landing/reference/creatives.csv when the file changed.

        The file's path, size and modification time are stored with the replace; a run whose
        reference file is unchanged writes nothing.
        """
        location = SILVER_CREATIVES.location(self.cfg)
        reference = self.cfg.landing_path("reference/creatives.csv")
        listed = storage.list_landing_files(
            self.spark, self.cfg.landing_path("reference"), "creatives.csv"
        )
        version = (
            json.dumps([listed[0].path, listed[0].length, listed[0].modification_ms])
            if listed
            else None
        )
        if version is None:
            log.warning("no %s: keeping the existing creatives dimension", reference)
        elif version != deltalog.last_user_metadata(self.spark, location):
            raw = self.spark.read.csv(
                reference, header=True, schema=CREATIVES_CSV_SCHEMA, mode="PERMISSIVE"
            )
            loaded = raw.select(
                *[
                    silver.canonical_id(F.col(c)).alias(c)
                    for c in ("creative_id", "campaign_id", "advertiser_id")
                ],
                F.trim("creative_name").alias("creative_name"),
                F.trim("ad_format").alias("ad_format"),
                F.col("_metadata.file_path").alias(schemas.SOURCE_FILE),
                F.lit(clock.utc_now()).alias("_loaded_at"),
            ).where(F.col("creative_id").isNotNull())
            storage.replace_table(loaded, SILVER_CREATIVES, location, user_metadata=version)
        self._creatives = storage.read_table(self.spark, location).persist()
        self._countries = silver.country_lookup(self.spark).persist()
        return self._creatives

    # -- per batch ------------------------------------------------------------------------
    def process(
        self, source: str, bronze_rows: DataFrame, batch_id: int, txn_app: str | None = None
    ) -> list[AuditRow]:
        """Standardize, validate, deduplicate and write one bronze batch of `source`.

        `txn_app` names the writer for the audit's idempotent append (a stream's query id, so
        a micro-batch replayed after a crash appends its audit row once); default: this run.
        """
        with self._lock:
            if self._creatives is None or self._countries is None:
                self.refresh_creatives()
        assert self._creatives is not None and self._countries is not None
        started = clock.utc_now()
        prepared = self._standardize(source, with_raw_record(bronze_rows))
        rows: list[AuditRow] = []
        for target, df in prepared:
            rows.append(self._write_target(target, df, batch_id, started, txn_app or self.run_id))
        with self._lock:
            self.audit_rows.extend(rows)
        known = [self._threshold(self._newest.get(t)) for t in TARGETS_BY_SOURCE[source]]
        present = [t for t in known if t is not None]
        metrics.record_watermark(f"silver_{source}", min(present) if present else None)
        return rows

    def _standardize(self, source: str, bronze_rows: DataFrame) -> list[tuple[str, DataFrame]]:
        assert self._creatives is not None and self._countries is not None
        creatives = self._creatives
        if source == "impressions":
            df = (
                bronze_rows.transform(silver.standardize_impressions(self.tz))
                .transform(silver.enrich_with_creatives(creatives))
                .transform(silver.with_country_code(self._countries, silver.COUNTRY_RAW, "country"))
            )
            return [("impressions", df)]
        if source == "clicks_conversions":
            df = bronze_rows.transform(silver.standardize_clicks_conversions(self.tz)).transform(
                silver.enrich_with_creatives(creatives, fill_campaign=False)
            )
            return [
                ("clicks", silver.split_clicks(df)),
                ("conversions", silver.split_conversions(df)),
            ]
        df = (
            bronze_rows.transform(silver.standardize_bid_requests(self.tz))
            .transform(silver.enrich_with_creatives(creatives))
            .transform(silver.with_country_code(self._countries, silver.LOCATION_RAW, "country"))
        )
        return [("bid_requests", df)]

    def _write_target(
        self, target: str, df: DataFrame, batch_id: int, started: datetime, txn_app: str
    ) -> AuditRow:
        spec = SPECS[target]
        id_col, business = dedup.DEDUP_KEYS[target]
        valid = F.size(F.col(rules_conf.RULE_COLUMNS[rules_conf.QUARANTINE])) == 0
        # Evaluated once, into an eager local checkpoint that the aggregation and both MERGEs
        # read: the standardization, rules and in-batch duplicate flag run once, and the
        # counts describe exactly the rows written. A persist() is not enough: Delta's MERGE
        # re-plans its source without the cached data and ran the whole standardization a
        # second time (measured: 29 s more on 1M impressions).
        checked = (
            df.transform(dedup.with_dedup_key(id_col, business))
            .withColumn(id_col, F.col(dedup.DEDUP_KEY))
            .transform(rules.apply_rules(self.cfg.silver.rules, target))
            .transform(record_json_if_rejected(valid))
            .transform(for_writes(spec.schema.fieldNames()))
            .transform(dedup.flag_duplicates_in_batch(among=valid))
            .localCheckpoint()
        )
        threshold = self._threshold(self._newest_written(target))
        stats = batch_stats(checked, self.cfg.silver.rules, target, threshold)
        fail_names = {r.name for r in self.cfg.silver.rules if r.action == rules_conf.FAIL}
        failed = {k: v for k, v in stats.rule_counts.items() if v and k in fail_names}
        if failed:
            raise ValidationFailedError(
                f"{target} batch {batch_id}: rows fail rule(s) with action 'fail': {failed}"
            )
        good = checked.where(valid & ~F.col(dedup.DUPLICATE_IN_BATCH))
        # Both MERGEs carry the batch's tag: a replay after a crash (the rows stored, the
        # batch not recorded as done) gets the counts of the first attempt's commits.
        tag = deltalog.WriteTag(writer_id(target, txn_app), batch_id)
        # An empty side skips its MERGE: no scan of the target, no empty commit. Rows
        # without an event date (possible only when the timestamp rules are turned off)
        # make the MERGE unbounded, since null is in no partition list.
        written = (
            storage.merge_insert_new(
                good,
                spec,
                spec.location(self.cfg),
                partition_values=None if stats.undated_rows else stats.event_dates,
                tag=tag,
            )
            if stats.rows_in > stats.rejected_rows
            else storage.MergeCounts(0, 0)
        )
        faults.crash_point(faults.SILVER_AFTER_MERGE)
        if stats.rejected_rows:
            # Sources share the quarantine table: one MERGE into it at a time, since two
            # concurrent MERGEs conflict (each read what the other appended).
            with self._quarantine_lock:
                quarantined = storage.merge_insert_new(
                    quarantine_rows(checked, target, self.run_id, batch_id, started),
                    SILVER_QUARANTINE,
                    SILVER_QUARANTINE.location(self.cfg),
                    tag=tag,
                )
        else:
            quarantined = storage.MergeCounts(0, 0)
        faults.crash_point(faults.SILVER_AFTER_QUARANTINE)
        valid_rows = stats.rows_in - stats.rejected_rows
        row = AuditRow(
            source=target,
            batch_id=batch_id,
            rows_in=stats.rows_in,
            rows_written=written.inserted,
            quarantined=quarantined.inserted,
            late_rows=stats.late_rows,
            warned_rows=stats.warned_rows,
            unknown_countries=stats.unknown_countries,
            rule_counts=stats.rule_counts,
            duplicates_in_batch=stats.valid_duplicates_in_batch
            + stats.rejected_rows
            - stats.distinct_rejected,
            duplicates_existing=existing_duplicates(
                written, valid_rows - stats.valid_duplicates_in_batch
            )
            + existing_duplicates(quarantined, stats.distinct_rejected),
        )
        if row.unreconciled:
            # Recorded as counted: the audit row breaks the identity, which the quality
            # monitor's audit_identity_violations check (and its alert) reports.
            log.error(
                "silver %s batch %d: reconciliation broken, %d rows unaccounted for "
                "(in=%d written=%d quarantined=%d duplicates in batch=%d existing=%d)",
                target,
                batch_id,
                row.unreconciled,
                row.rows_in,
                row.rows_written,
                row.quarantined,
                row.duplicates_in_batch,
                row.duplicates_existing,
            )
        faults.crash_point(faults.SILVER_BEFORE_AUDIT)
        if stats.rows_in:
            # A MERGE of this attempt that inserted rows proves that no earlier attempt of the
            # batch got as far as its audit row (it would have stored them): the audit append
            # can skip Delta's idempotency check, which costs a state reconstruction.
            fresh = any(c.inserted and c.replayed_from is None for c in (written, quarantined))
            self._write_audit(row, stats, started, txn_app, known_new=fresh)
        faults.crash_point(faults.SILVER_AFTER_AUDIT)
        metrics.record_batch(
            JOB,
            target,
            spec.relative_path,
            read=row.rows_in,
            written=row.rows_written,
            # By reason: this batch's rejected rows under their first failed rule; a batch
            # whose quarantine rows were all stored by earlier batches counts nothing. (A
            # replay counts them: the crashed attempt died before recording any metric.)
            quarantined=stats.first_rule_counts if row.quarantined else {},
            duplicates=row.duplicates,
            late=row.late_rows,
        )
        newest = self._newest.get(target)
        if stats.max_written_ts is not None and (newest is None or stats.max_written_ts > newest):
            self._newest[target] = stats.max_written_ts
        log.info(
            "silver %s batch %d: in=%d written=%d quarantined=%d duplicates=%d "
            "(in batch %d, existing %d) late=%d warned=%d",
            target,
            batch_id,
            row.rows_in,
            row.rows_written,
            row.quarantined,
            row.duplicates,
            row.duplicates_in_batch,
            row.duplicates_existing,
            row.late_rows,
            row.warned_rows,
        )
        return row

    def _newest_written(self, target: str) -> datetime | None:
        """Newest event time written to `target` so far: every target's from the audit in
        one query on first use (one Spark job per run, not one per target), then kept in
        memory as batches are written (no audit read per batch)."""
        with self._lock:
            if not self._newest:
                audit = storage.read_table(self.spark, BATCH_AUDIT.location(self.cfg))
                newest = (
                    audit.where(F.col("job") == JOB)
                    .agg(
                        *[
                            F.max(F.when(F.col("source") == t, F.col("max_event_ts"))).alias(t)
                            for t in SPECS
                        ]
                    )
                    .first()
                )
                assert newest is not None  # a global aggregate always has one row
                self._newest.update(
                    {t: clock.aware(newest[t]) if newest[t] is not None else None for t in SPECS}
                )
        return self._newest[target]

    def _threshold(self, newest: datetime | None) -> datetime | None:
        """Rows older than the newest written event minus `late_after` are late."""
        if newest is None:
            return None
        return newest - timedelta(seconds=self.cfg.silver.late_after_seconds)

    def _write_audit(
        self, row: AuditRow, stats: BatchStats, started: datetime, txn_app: str, known_new: bool
    ) -> None:
        audit = self.spark.createDataFrame(
            [
                (
                    self.run_id,
                    JOB,
                    row.source,
                    self.mode,
                    row.batch_id,
                    row.rows_in,
                    row.rows_written,
                    row.quarantined,
                    row.duplicates,
                    row.late_rows,
                    row.warned_rows,
                    row.unknown_countries,
                    row.rule_counts,
                    stats.run_min,
                    stats.run_max,
                    stats.max_written_ts,
                    started,
                    clock.utc_now(),
                    row.duplicates_in_batch,
                    row.duplicates_existing,
                )
            ],
            BATCH_AUDIT.schema,
        )
        location, writer = BATCH_AUDIT.location(self.cfg), writer_id(row.source, txn_app)
        if not known_new:
            # An earlier attempt may have appended this row blind (its MERGE inserted rows):
            # Delta's check does not see that commit's tag, so look for it first.
            last = deltalog.last_write_of(self.spark, location, writer)
            if last is not None and last >= row.batch_id:
                log.info("silver %s batch %d: audited already", row.source, row.batch_id)
                return
        storage.append_idempotent(
            audit, BATCH_AUDIT, location, writer, row.batch_id, known_new=known_new
        )


def writer_id(target: str, txn_app: str) -> str:
    """The silver writer of `target` for `txn_app`: the audit append's txnAppId and the tag of
    the batch's MERGE commits (`deltalog.WriteTag`)."""
    return f"adlake-silver-{target}-{txn_app}"


# -- drivers ----------------------------------------------------------------------------------
def start_stream(
    processor: SilverProcessor, source: str, trigger: str, rate_limited: bool = True
) -> StreamingQuery:
    """A Structured Streaming query over the bronze Delta table, written through `process`.

    Batch runs use the same query and checkpoint with an available-now trigger and without
    the per-trigger file limit, so the two modes never disagree about what was processed.
    """
    cfg = processor.cfg
    bronze_path = BRONZE_BY_SOURCE[source].location(cfg)
    storage.ensure_table(processor.spark, BRONZE_BY_SOURCE[source], bronze_path)
    reader = processor.spark.readStream.format("delta")
    if rate_limited:
        reader = reader.option("maxFilesPerTrigger", cfg.sources[source].max_files_per_trigger)
    stream = reader.load(bronze_path)
    # The query id is stable for a checkpoint: it keys the audit's idempotent appends, so a
    # micro-batch replayed after a crash appends once, and a new checkpoint never collides.
    query_id: list[str] = []
    started = threading.Event()

    def per_batch(batch: DataFrame, batch_id: int) -> None:
        started.wait()
        processor.process(source, batch, batch_id, txn_app=query_id[0])

    writer = (
        stream.writeStream.foreachBatch(per_batch)
        .queryName(f"silver_{source}")
        .option("checkpointLocation", checkpoint_location(cfg, "silver", source))
    )
    query: StreamingQuery = with_trigger(writer, trigger).start()
    query_id.append(str(query.id))
    started.set()
    return query


def run_batch(spark: SparkSession, cfg: AppConfig, sources: Iterable[str]) -> list[AuditRow]:
    """Process the bronze rows of each source that no earlier silver run (of either mode) has.

    One available-now query per source on the stream's own checkpoint; returns the audit rows
    of the micro-batches it ran (none when bronze holds nothing new).
    """
    processor = SilverProcessor(spark, cfg, "batch")
    order = list(sources)
    queries = []
    for source in order:
        bronze_path = BRONZE_BY_SOURCE[source].location(cfg)
        if not deltalog.is_table(spark, bronze_path):
            log.warning("silver %s: no bronze table at %s yet", source, bronze_path)
            continue
        queries.append(start_stream(processor, source, "available-now", rate_limited=False))
    # Side by side, as streams run: a small batch is mostly fixed cost, which overlaps.
    wait_for_queries(queries, threading.Event(), cfg.stream.stop_timeout_seconds)
    targets = [t for source in order for t in TARGETS_BY_SOURCE[source]]
    return sorted(processor.audit_rows, key=lambda r: (targets.index(r.source), r.batch_id))


def run_streams(spark: SparkSession, cfg: AppConfig, sources: Iterable[str], trigger: str) -> None:
    """Run one silver stream per source until done (available-now) or SIGTERM/SIGINT."""
    stop = stop_on_signals()
    listener = metrics.watch_streams(spark, cfg.metrics)
    processor = SilverProcessor(spark, cfg, "stream")
    queries = [start_stream(processor, source, trigger) for source in sources]
    wait_for_queries(queries, stop, cfg.stream.stop_timeout_seconds)
    if listener is not None:  # let the final progress events reach the gauges
        listener.wait_for_termination_events(len(queries))
