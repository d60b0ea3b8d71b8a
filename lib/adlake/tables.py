"""Every Delta table AdLake writes, declared once: location, schema, keys and partitioning."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyspark.sql.types import StructType

from adlake import schemas

if TYPE_CHECKING:
    from adlake.config import AppConfig

# Job names: the `job` column of ops/batch_audit, metric labels and leases.
BRONZE_JOB = "bronze_ingest"
SILVER_JOB = "silver_transform"
GOLD_JOB = "gold_build"
QUALITY_JOB = "quality_monitor"
MAINTENANCE_JOB = "maintain_tables"

# `status` of ops/ingest_file_log rows.
PLANNED = "planned"
COMMITTED = "committed"
CHANGED = "changed"  # the file was re-landed with a new size or modification time


@dataclass(frozen=True)
class TableSpec:
    """A path-based Delta table; `relative_path` is under `paths.lakehouse` and is a contract."""

    name: str
    relative_path: str
    schema: StructType
    partition_by: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    description: str = ""
    properties: tuple[tuple[str, str], ...] = ()  # Delta table properties set at creation

    def location(self, cfg: AppConfig) -> str:
        """Where this table lives in `cfg`'s lakehouse."""
        return cfg.table_path(self.relative_path)


# Bronze is read by run and file (silver's incremental reads, the reconciliation checks),
# never filtered on its raw string fields: min/max stats on those only cost the write time
# (~5 % of a bronze impressions run at 1M, benchmarks/results/2026-12-01-bronze.md).
BRONZE_PROPERTIES = (
    ("delta.dataSkippingStatsColumns", f"{schemas.RUN_SEQ},{schemas.SOURCE_FILE}"),
)

BRONZE_IMPRESSIONS = TableSpec(
    name="bronze.impressions",
    relative_path="bronze/impressions",
    schema=schemas.BRONZE_IMPRESSIONS_SCHEMA,
    partition_by=(schemas.INGESTION_DATE,),
    description="Raw ad impressions from landing/impressions/*.jsonl[.gz], fields as strings.",
    properties=BRONZE_PROPERTIES,
)
BRONZE_CLICKS_CONVERSIONS = TableSpec(
    name="bronze.clicks_conversions",
    relative_path="bronze/clicks_conversions",
    schema=schemas.BRONZE_CLICKS_CONVERSIONS_SCHEMA,
    partition_by=(schemas.INGESTION_DATE,),
    description="Raw click and conversion rows from landing/clicks_conversions/*.csv.",
    properties=BRONZE_PROPERTIES,
)
BRONZE_BID_REQUESTS = TableSpec(
    name="bronze.bid_requests",
    relative_path="bronze/bid_requests",
    schema=schemas.BRONZE_BID_REQUESTS_SCHEMA,
    partition_by=(schemas.INGESTION_DATE,),
    description="Raw RTB bid requests from landing/bid_requests/*.avro, nesting kept.",
    properties=BRONZE_PROPERTIES,
)
BRONZE_QUARANTINE = TableSpec(
    name="bronze.quarantine",
    relative_path="bronze/quarantine",
    schema=schemas.BRONZE_QUARANTINE_SCHEMA,
    partition_by=(schemas.INGESTION_DATE,),
    description="Records and files bronze could not parse, with a reason; nothing is dropped.",
)
INGEST_FILE_LOG = TableSpec(
    name="ops.ingest_file_log",
    relative_path="ops/ingest_file_log",
    schema=schemas.INGEST_FILE_LOG_SCHEMA,
    keys=("source", "file_path"),
    description="Write-ahead log of landing files: planned, then committed with row counts.",
)

BRONZE_BY_SOURCE: dict[str, TableSpec] = {
    "impressions": BRONZE_IMPRESSIONS,
    "clicks_conversions": BRONZE_CLICKS_CONVERSIONS,
    "bid_requests": BRONZE_BID_REQUESTS,
}

ALL_TABLES: tuple[TableSpec, ...] = (
    BRONZE_IMPRESSIONS,
    BRONZE_CLICKS_CONVERSIONS,
    BRONZE_BID_REQUESTS,
    BRONZE_QUARANTINE,
    INGEST_FILE_LOG,
)

# Silver event tables are filtered by time and campaign (gold's date and window reads, the
# analysts' queries); their ids, lineage and free-text fields never are. Min/max stats on
# every column were ~30 % of the executor samples of a 1M-row silver write (Delta's
# DeltaTaskStatisticsTracker, benchmarks/results/2026-12-01-silver-narrow.md).
SILVER_EVENT_PROPERTIES = (
    ("delta.dataSkippingStatsColumns", "event_ts,event_hour,campaign_id,creative_id"),
)

SILVER_IMPRESSIONS = TableSpec(
    name="silver.impressions",
    relative_path="silver/impressions",
    schema=schemas.SILVER_IMPRESSIONS_SCHEMA,
    partition_by=("event_date",),
    keys=("impression_id",),
    description="Validated, standardized, enriched, deduplicated impressions.",
    properties=SILVER_EVENT_PROPERTIES,
)
SILVER_CLICKS = TableSpec(
    name="silver.clicks",
    relative_path="silver/clicks",
    schema=schemas.SILVER_CLICKS_SCHEMA,
    partition_by=("event_date",),
    keys=("event_id",),
    description="Clicks: the conversion_type = 'click' rows of the CSV source.",
    properties=SILVER_EVENT_PROPERTIES,
)
SILVER_CONVERSIONS = TableSpec(
    name="silver.conversions",
    relative_path="silver/conversions",
    schema=schemas.SILVER_CONVERSIONS_SCHEMA,
    partition_by=("event_date",),
    keys=("event_id",),
    description="Conversions: every other row of the CSV source, with revenue.",
    properties=SILVER_EVENT_PROPERTIES,
)
SILVER_BID_REQUESTS = TableSpec(
    name="silver.bid_requests",
    relative_path="silver/bid_requests",
    schema=schemas.SILVER_BID_REQUESTS_SCHEMA,
    partition_by=("event_date",),
    keys=("request_id",),
    description="Flattened bid requests with ISO alpha-2 country and CPM bid as decimal.",
    properties=SILVER_EVENT_PROPERTIES,
)
SILVER_CREATIVES = TableSpec(
    name="silver.creatives",
    relative_path="silver/creatives",
    schema=schemas.SILVER_CREATIVES_SCHEMA,
    keys=("creative_id",),
    description="creative -> campaign -> advertiser, replaced from landing/reference each run.",
)
SILVER_QUARANTINE = TableSpec(
    name="silver.quarantine",
    relative_path="silver/quarantine",
    schema=schemas.SILVER_QUARANTINE_SCHEMA,
    keys=("_record_key",),
    description="Rows silver rejected: the bronze record as JSON and every rule it failed.",
)
BATCH_AUDIT = TableSpec(
    name="ops.batch_audit",
    relative_path="ops/batch_audit",
    schema=schemas.BATCH_AUDIT_SCHEMA,
    keys=("run_id", "job", "source", "batch_id"),
    description=(
        "One row per job run (or micro-batch) and source; "
        "rows_in = written + quarantined + duplicates."
    ),
)

ALL_TABLES = (
    *ALL_TABLES,
    SILVER_IMPRESSIONS,
    SILVER_CLICKS,
    SILVER_CONVERSIONS,
    SILVER_BID_REQUESTS,
    SILVER_CREATIVES,
    SILVER_QUARANTINE,
    BATCH_AUDIT,
)

DQ_RESULTS = TableSpec(
    name="ops.dq_results",
    relative_path="ops/dq_results",
    schema=schemas.DQ_RESULTS_SCHEMA,
    keys=("run_id", "check", "table", "scope"),
    description="Data-quality check results: one row per check, table and scope per monitor run.",
)

ALL_TABLES = (*ALL_TABLES, DQ_RESULTS)

# Bronze source -> the silver targets it feeds, and each target's table.
TARGETS_BY_SOURCE: dict[str, tuple[str, ...]] = {
    "impressions": ("impressions",),
    "clicks_conversions": ("clicks", "conversions"),
    "bid_requests": ("bid_requests",),
}
SILVER_BY_TARGET: dict[str, TableSpec] = {
    "impressions": SILVER_IMPRESSIONS,
    "clicks": SILVER_CLICKS,
    "conversions": SILVER_CONVERSIONS,
    "bid_requests": SILVER_BID_REQUESTS,
}

GOLD_CONVERSION_ATTRIBUTION = TableSpec(
    name="gold.conversion_attribution",
    relative_path="gold/conversion_attribution",
    schema=schemas.GOLD_CONVERSION_ATTRIBUTION_SCHEMA,
    partition_by=("event_date",),
    keys=("conversion_id", "model", "touch_id"),
    description="One row per conversion, model and credited touch.",
)
GOLD_CAMPAIGN_DAILY = TableSpec(
    name="gold.campaign_daily",
    relative_path="gold/campaign_daily",
    schema=schemas.GOLD_CAMPAIGN_DAILY_SCHEMA,
    partition_by=("event_date",),
    keys=("campaign_id", "event_date"),
    description="Delivery, spend, revenue and ratios per campaign and UTC day.",
)
GOLD_CAMPAIGN_ATTRIBUTION_DAILY = TableSpec(
    name="gold.campaign_attribution_daily",
    relative_path="gold/campaign_attribution_daily",
    schema=schemas.GOLD_CAMPAIGN_ATTRIBUTION_DAILY_SCHEMA,
    partition_by=("event_date",),
    keys=("campaign_id", "event_date", "model"),
    description="Attributed conversions per campaign, day and model.",
)
GOLD_BID_FUNNEL_DAILY = TableSpec(
    name="gold.bid_funnel_daily",
    relative_path="gold/bid_funnel_daily",
    schema=schemas.GOLD_BID_FUNNEL_DAILY_SCHEMA,
    partition_by=("event_date",),
    keys=("event_date", "country", "website"),
    description="Bid requests and won impressions per day, country and website.",
)
# State of incremental gold: kept so an increment need not rescan all of silver.
GOLD_MARKOV_TRANSITIONS = TableSpec(
    name="gold.markov_transitions",
    relative_path="gold/markov_transitions",
    schema=schemas.GOLD_MARKOV_TRANSITIONS_SCHEMA,
    keys=("from_kind", "from_channel", "to_kind", "to_channel"),
    description="Markov transition counts over every user's paths.",
)
GOLD_CONVERSION_CHANNELS = TableSpec(
    name="gold.conversion_channels",
    relative_path="gold/conversion_channels",
    schema=schemas.GOLD_CONVERSION_CHANNELS_SCHEMA,
    partition_by=("event_date",),
    keys=("conversion_key", "channel"),
    description="The channels on each conversion's path, for restating Markov credit.",
)
GOLD_TABLES: tuple[TableSpec, ...] = (
    GOLD_CONVERSION_ATTRIBUTION,
    GOLD_CAMPAIGN_DAILY,
    GOLD_CAMPAIGN_ATTRIBUTION_DAILY,
    GOLD_BID_FUNNEL_DAILY,
)
GOLD_STATE_TABLES: tuple[TableSpec, ...] = (GOLD_MARKOV_TRANSITIONS, GOLD_CONVERSION_CHANNELS)

ALL_TABLES = (*ALL_TABLES, *GOLD_TABLES, *GOLD_STATE_TABLES)


def checkpoint_location(cfg: AppConfig, layer: str, source: str) -> str:
    """A stream's checkpoint: `<checkpoints>/<layer>/<source>`."""
    return cfg.checkpoint_path(f"{layer}/{source}")
