"""Silver runs: bronze Delta tables -> silver tables, quarantine and ops/batch_audit.

Each bronze batch (a batch run's new bronze rows, or a streaming micro-batch) goes through one
function, `SilverProcessor.process`, so batch and available-now stream runs give identical
silver tables. Writes are insert-if-absent MERGEs on each table's key: a row arriving twice,
in one batch, in two batches or in a replay after a crash, is stored once, and re-running
over the same bronze data changes nothing. Late rows (event time older than the newest event
seen by earlier batches minus `silver.late_after`) are counted, never dropped.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from delta.tables import DeltaTable
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming.query import StreamingQuery
from pyspark.sql.types import StringType, StructField, StructType

from adlake import metrics, schemas, silver, storage
from adlake.config import AppConfig
from adlake.streams import stop_on_signals, wait_for_queries, with_trigger
from adlake.tables import (
    BATCH_AUDIT,
    BRONZE_BY_SOURCE,
    SILVER_BID_REQUESTS,
    SILVER_CLICKS,
    SILVER_CONVERSIONS,
    SILVER_CREATIVES,
    SILVER_IMPRESSIONS,
    SILVER_QUARANTINE,
    TableSpec,
)

log = logging.getLogger(__name__)
JOB = "silver_transform"

# Bronze source -> the silver targets it feeds.
TARGETS_BY_SOURCE: dict[str, tuple[str, ...]] = {
    "impressions": ("impressions",),
    "clicks_conversions": ("clicks", "conversions"),
    "bid_requests": ("bid_requests",),
}
SPECS: dict[str, TableSpec] = {
    "impressions": SILVER_IMPRESSIONS,
    "clicks": SILVER_CLICKS,
    "conversions": SILVER_CONVERSIONS,
    "bid_requests": SILVER_BID_REQUESTS,
}
ID_AND_BUSINESS: dict[str, tuple[str, Sequence[str]]] = {
    "impressions": (silver.IMPRESSION_ID, silver.IMPRESSION_BUSINESS_COLUMNS),
    "clicks": (silver.CLICK_CONVERSION_ID, silver.CLICK_CONVERSION_BUSINESS_COLUMNS),
    "conversions": (silver.CLICK_CONVERSION_ID, silver.CLICK_CONVERSION_BUSINESS_COLUMNS),
    "bid_requests": (silver.BID_REQUEST_ID, silver.BID_REQUEST_BUSINESS_COLUMNS),
}
CREATIVES_CSV_SCHEMA = StructType(
    [StructField(name, StringType(), True) for name in schemas.CREATIVE_COLUMNS]
)
_METADATA = {
    schemas.RESCUED_DATA,
    schemas.SOURCE_FILE,
    schemas.INGESTED_AT,
    schemas.RUN_SEQ,
    schemas.INGESTION_DATE,
}


class ValidationFailedError(RuntimeError):
    """A `fail` rule was violated: the job stops before writing anything for the batch."""


@dataclass(frozen=True)
class AuditRow:
    """What one batch did to one silver table."""

    source: str
    batch_id: int
    rows_in: int
    rows_written: int
    quarantined: int
    late_rows: int
    warned_rows: int
    unknown_countries: int
    rule_counts: dict[str, int]

    @property
    def duplicates(self) -> int:
        return self.rows_in - self.rows_written - self.quarantined


def with_raw_record(df: DataFrame) -> DataFrame:
    """Attach the bronze record (contract fields and rescued data) as JSON, for the quarantine."""
    fields = [F.col(c) for c in df.columns if c not in _METADATA - {schemas.RESCUED_DATA}]
    return df.withColumn(silver.RECORD, F.to_json(F.struct(*fields)))


class SilverProcessor:
    """Turns bronze batches into silver rows; one instance per job run."""

    def __init__(self, spark: SparkSession, cfg: AppConfig, mode: str) -> None:
        self.spark = spark
        self.cfg = cfg
        self.mode = mode
        self.run_id = str(uuid.uuid4())
        self.tz = cfg.silver.source_timezone
        self._lock = threading.Lock()
        self._creatives: DataFrame | None = None
        self._countries: DataFrame | None = None
        self._thresholds: dict[str, datetime | None] = {}
        quarantine_rules = tuple(r.name for r in cfg.silver.rules if r.action == silver.QUARANTINE)
        for target, spec in SPECS.items():
            metrics.prepare(JOB, target, spec.relative_path, quarantine_rules)
        for spec in (*SPECS.values(), SILVER_CREATIVES, SILVER_QUARANTINE, BATCH_AUDIT):
            storage.ensure_table(spark, spec, cfg.table_path(spec.relative_path))

    # -- dimensions -----------------------------------------------------------------------
    def refresh_creatives(self) -> DataFrame:
        """Replace silver/creatives from landing/reference/creatives.csv when the file exists."""
        location = self.cfg.table_path(SILVER_CREATIVES.relative_path)
        reference = self.cfg.landing_path("reference/creatives.csv")
        try:
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
                F.lit(datetime.now(timezone.utc).replace(tzinfo=None)).alias("_loaded_at"),
            ).where(F.col("creative_id").isNotNull())
            storage.replace_table(loaded, SILVER_CREATIVES, location)
        except Exception as exc:  # a missing reference file keeps the last dimension
            if "PATH_NOT_FOUND" not in str(exc) and "does not exist" not in str(exc):
                raise
            log.warning("no %s: keeping the existing creatives dimension", reference)
        self._creatives = storage.read_table(self.spark, location).persist()
        self._countries = silver.country_lookup(self.spark).persist()
        return self._creatives

    # -- per batch ------------------------------------------------------------------------
    def process(self, source: str, bronze_rows: DataFrame, batch_id: int) -> list[AuditRow]:
        """Standardize, validate, deduplicate and write one bronze batch of `source`."""
        with self._lock:
            if self._creatives is None or self._countries is None:
                self.refresh_creatives()
            assert self._creatives is not None and self._countries is not None
            started = datetime.now(timezone.utc).replace(tzinfo=None)
            prepared = self._standardize(source, with_raw_record(bronze_rows))
            rows: list[AuditRow] = []
            for target, df in prepared:
                rows.append(self._write_target(target, df, batch_id, started))
            known = [t for t in (self._thresholds.get(tg) for tg in TARGETS_BY_SOURCE[source]) if t]
            metrics.record_watermark(f"silver_{source}", min(known) if known else None)
            return rows

    def _standardize(self, source: str, bronze_rows: DataFrame) -> list[tuple[str, DataFrame]]:
        assert self._creatives is not None and self._countries is not None
        creatives = self._creatives
        if source == "impressions":
            df = (
                bronze_rows.transform(silver.standardize_impressions(self.tz))
                .transform(silver.enrich_with_creatives(creatives))
                .transform(silver.with_country_code(self._countries, "country_raw", "country"))
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
            .transform(silver.with_country_code(self._countries, "location_raw", "country"))
        )
        return [("bid_requests", df)]

    def _write_target(
        self, target: str, df: DataFrame, batch_id: int, started: datetime
    ) -> AuditRow:
        spec = SPECS[target]
        id_col, business = ID_AND_BUSINESS[target]
        checked = (
            df.transform(silver.with_dedup_key(id_col, business))
            .withColumn(id_col, F.col(silver.DEDUP_KEY))
            .transform(silver.apply_rules(self.cfg.silver.rules, target))
            .persist(StorageLevel.MEMORY_AND_DISK)
        )
        try:
            threshold = self._late_threshold(target)
            stats = self._batch_stats(checked, threshold)
            failed = {k: v for k, v in stats["fail_counts"].items() if v}
            if failed:
                raise ValidationFailedError(
                    f"{target} batch {batch_id}: rows fail rule(s) with action 'fail': {failed}"
                )
            quarantine_rules = F.col(silver.RULE_COLUMNS[silver.QUARANTINE])
            good = checked.where(F.size(quarantine_rules) == 0).transform(
                silver.drop_duplicates_in_batch
            )
            # An empty side skips its MERGE: no scan of the target, no empty commit.
            written = (
                storage.merge_insert_new(good, spec, self.cfg.table_path(spec.relative_path))
                if stats["rows_in"] > stats["rejected_rows"]
                else 0
            )
            bad = (
                checked.where(F.size(quarantine_rules) > 0)
                .select(
                    F.lit(target).alias("source"),
                    F.col(silver.RECORD).alias("record"),
                    quarantine_rules.alias("failed_rules"),
                    F.lit(self.run_id).alias("run_id"),
                    F.lit(batch_id).cast("long").alias("batch_id"),
                    F.lit(started).alias("quarantined_at"),
                    F.col(schemas.SOURCE_FILE),
                    F.sha2(F.concat_ws("\u001f", F.lit(target), F.col(silver.RECORD)), 256).alias(
                        "_record_key"
                    ),
                )
                .dropDuplicates(["_record_key"])
            )
            quarantined = (
                storage.merge_insert_new(
                    bad, SILVER_QUARANTINE, self.cfg.table_path(SILVER_QUARANTINE.relative_path)
                )
                if stats["rejected_rows"]
                else 0
            )
        finally:
            checked.unpersist()
        row = AuditRow(
            source=target,
            batch_id=batch_id,
            rows_in=stats["rows_in"],
            rows_written=written,
            quarantined=quarantined,
            late_rows=stats["late_rows"],
            warned_rows=stats["warned_rows"],
            unknown_countries=stats["unknown_countries"],
            rule_counts=stats["rule_counts"],
        )
        self._write_audit(row, stats, started)
        # By reason: this batch's rejected rows under their first failed rule; a replay whose
        # quarantine rows were already stored (nothing inserted) counts nothing.
        metrics.record_batch(
            JOB,
            target,
            spec.relative_path,
            read=row.rows_in,
            written=written,
            quarantined=stats["first_rule_counts"] if quarantined else {},
            duplicates=row.duplicates,
            late=row.late_rows,
        )
        self._thresholds[target] = stats["threshold"]
        log.info(
            "silver %s batch %d: in=%d written=%d quarantined=%d duplicates=%d late=%d warned=%d",
            target,
            batch_id,
            row.rows_in,
            written,
            quarantined,
            row.duplicates,
            row.late_rows,
            row.warned_rows,
        )
        return row

    def _late_threshold(self, target: str) -> datetime | None:
        """Newest event time written by earlier batches, minus `late_after`: older rows are late."""
        audit = storage.read_table(self.spark, self.cfg.table_path(BATCH_AUDIT.relative_path))
        newest = (
            audit.where((F.col("job") == JOB) & (F.col("source") == target))
            .agg(F.max("max_event_ts"))
            .first()
        )
        if newest is None or newest[0] is None:
            return None
        newest_ts: datetime = newest[0]
        return newest_ts - timedelta(seconds=self.cfg.silver.late_after_seconds)

    def _batch_stats(self, checked: DataFrame, threshold: datetime | None) -> dict:  # type: ignore[type-arg]
        """Counts for the audit in one pass over the cached batch (plus one for rule names)."""
        late = F.col(silver.EVENT_TS) < F.lit(threshold) if threshold else F.lit(False)
        raw_country = next(
            (c for c in ("country_raw", "location_raw") if c in checked.columns), None
        )
        country_unknown = (
            F.col("country").isNull() & F.col(raw_country).isNotNull()
            if raw_country
            else F.lit(False)
        )
        totals = checked.agg(
            F.count(F.lit(1)).alias("rows_in"),
            F.count_if(late).alias("late_rows"),
            F.count_if(F.size(F.col(silver.RULE_COLUMNS[silver.WARN])) > 0).alias("warned_rows"),
            F.count_if(country_unknown).alias("unknown_countries"),
            F.count_if(F.size(F.col(silver.RULE_COLUMNS[silver.QUARANTINE])) > 0).alias("rejected"),
            F.max(silver.EVENT_TS).alias("max_event_ts"),
            F.min(silver.BRONZE_RUN_SEQ).alias("run_min"),
            F.max(silver.BRONZE_RUN_SEQ).alias("run_max"),
        ).first()
        assert totals is not None
        rule_columns = [F.col(silver.RULE_COLUMNS[a]) for a in silver.ACTIONS]
        quarantine_rules = F.col(silver.RULE_COLUMNS[silver.QUARANTINE])
        # Every failed rule (audit rule_counts) and, for the metrics, each quarantined row
        # once under its first failed rule, in one aggregation.
        per_rule = (
            checked.select(F.explode(F.concat(*rule_columns)).alias("rule"), F.lit(0).alias("k"))
            .unionByName(
                checked.where(F.size(quarantine_rules) > 0).select(
                    F.element_at(quarantine_rules, 1).alias("rule"), F.lit(1).alias("k")
                )
            )
            .groupBy("k", "rule")
            .count()
            .collect()
        )
        rule_counts = {r["rule"]: int(r["count"]) for r in per_rule if r["k"] == 0}
        first_rule = {r["rule"]: int(r["count"]) for r in per_rule if r["k"] == 1}
        fail_names = {r.name for r in self.cfg.silver.rules if r.action == silver.FAIL}
        return {
            "rows_in": int(totals["rows_in"]),
            "late_rows": int(totals["late_rows"]),
            "warned_rows": int(totals["warned_rows"]),
            "unknown_countries": int(totals["unknown_countries"]),
            "rejected_rows": int(totals["rejected"]),
            "max_event_ts": totals["max_event_ts"],
            "run_min": totals["run_min"],
            "run_max": totals["run_max"],
            "rule_counts": rule_counts,
            "first_rule_counts": first_rule,
            "threshold": threshold,
            "fail_counts": {n: rule_counts.get(n, 0) for n in fail_names},
        }

    def _write_audit(self, row: AuditRow, stats: dict, started: datetime) -> None:  # type: ignore[type-arg]
        ended = datetime.now(timezone.utc).replace(tzinfo=None)
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
                    stats["run_min"],
                    stats["run_max"],
                    stats["max_event_ts"],
                    started,
                    ended,
                )
            ],
            BATCH_AUDIT.schema,
        )
        storage.merge_insert_new(audit, BATCH_AUDIT, self.cfg.table_path(BATCH_AUDIT.relative_path))


# -- drivers ----------------------------------------------------------------------------------
def processed_bronze_run(spark: SparkSession, cfg: AppConfig, source: str) -> int:
    """The bronze run_seq up to which every silver target of `source` has been processed."""
    audit = storage.read_table(spark, cfg.table_path(BATCH_AUDIT.relative_path))
    done = {
        r["source"]: r["m"]
        for r in audit.where(
            (F.col("job") == JOB) & F.col("source").isin(*TARGETS_BY_SOURCE[source])
        )
        .groupBy("source")
        .agg(F.max("bronze_run_seq_max").alias("m"))
        .collect()
    }
    return min(int(done.get(t) or 0) for t in TARGETS_BY_SOURCE[source])


def run_batch(spark: SparkSession, cfg: AppConfig, sources: Iterable[str]) -> list[AuditRow]:
    """Process the bronze rows of each source that no earlier silver run has processed."""
    processor = SilverProcessor(spark, cfg, "batch")
    processor.refresh_creatives()
    rows: list[AuditRow] = []
    for source in sources:
        bronze_path = cfg.table_path(BRONZE_BY_SOURCE[source].relative_path)
        if not DeltaTable.isDeltaTable(spark, bronze_path):
            log.warning("silver %s: no bronze table at %s yet", source, bronze_path)
            continue
        done = processed_bronze_run(spark, cfg, source)
        new = storage.read_table(spark, bronze_path).where(F.col(schemas.RUN_SEQ) > done)
        rows.extend(processor.process(source, new, batch_id=0))
    return rows


def start_stream(processor: SilverProcessor, source: str, trigger: str) -> StreamingQuery:
    """A Structured Streaming query over the bronze Delta table, written through `process`."""
    cfg = processor.cfg
    bronze_path = cfg.table_path(BRONZE_BY_SOURCE[source].relative_path)
    storage.ensure_table(processor.spark, BRONZE_BY_SOURCE[source], bronze_path)
    stream = (
        processor.spark.readStream.format("delta")
        .option("maxFilesPerTrigger", cfg.sources[source].max_files_per_trigger)
        .load(bronze_path)
    )

    def per_batch(batch: DataFrame, batch_id: int) -> None:
        processor.process(source, batch, batch_id)

    writer = (
        stream.writeStream.foreachBatch(per_batch)
        .queryName(f"silver_{source}")
        .option("checkpointLocation", cfg.checkpoint_path(f"silver/{source}"))
    )
    query: StreamingQuery = with_trigger(writer, trigger).start()
    return query


def run_streams(spark: SparkSession, cfg: AppConfig, sources: Iterable[str], trigger: str) -> None:
    """Run one silver stream per source until done (available-now) or SIGTERM/SIGINT."""
    stop = stop_on_signals()
    listener = metrics.watch_streams(spark, cfg.metrics)
    processor = SilverProcessor(spark, cfg, "stream")
    processor.refresh_creatives()
    queries = [start_stream(processor, source, trigger) for source in sources]
    wait_for_queries(queries, stop, cfg.stream.stop_timeout_seconds)
    if listener is not None:  # let the final progress events reach the gauges
        listener.wait_for_termination_events(len(queries))
