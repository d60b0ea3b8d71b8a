"""Gold runs: silver tables -> attribution and campaign aggregates for analysts.

Every gold table is recomputed from the current silver tables and replaced in one Delta
transaction, so running gold twice changes nothing and a late impression or click restates
the conversions it affects on the next run.
"""

from __future__ import annotations

import logging

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from adlake import attribution, storage
from adlake.config import AppConfig
from adlake.tables import (
    SILVER_BID_REQUESTS,
    SILVER_CLICKS,
    SILVER_CONVERSIONS,
    SILVER_CREATIVES,
    SILVER_IMPRESSIONS,
)

log = logging.getLogger(__name__)

CONVERSION_ATTRIBUTION = "gold/conversion_attribution"
CAMPAIGN_DAILY = "gold/campaign_daily"
CAMPAIGN_ATTRIBUTION_DAILY = "gold/campaign_attribution_daily"
BID_FUNNEL_DAILY = "gold/bid_funnel_daily"
GOLD_TABLES = (CONVERSION_ATTRIBUTION, CAMPAIGN_DAILY, CAMPAIGN_ATTRIBUTION_DAILY, BID_FUNNEL_DAILY)


def _silver(spark: SparkSession, cfg: AppConfig, relative: str) -> DataFrame:
    return storage.read_table(spark, cfg.table_path(relative))


def build_gold(spark: SparkSession, cfg: AppConfig, tables: str = "all") -> dict[str, int]:
    """Recompute gold tables (`attribution`, `aggregates` or `all`); returns rows per table."""
    impressions = _silver(spark, cfg, SILVER_IMPRESSIONS.relative_path)
    clicks = _silver(spark, cfg, SILVER_CLICKS.relative_path)
    conversions = _silver(spark, cfg, SILVER_CONVERSIONS.relative_path)
    creatives = _silver(spark, cfg, SILVER_CREATIVES.relative_path)
    written: dict[str, int] = {}
    if tables in ("attribution", "all"):
        touches = attribution.build_touches(impressions, clicks, creatives)
        weights = attribution.markov_channel_weights(touches, conversions)
        credited = attribution.attribute_conversions(conversions, touches, markov_weights=weights)
        credited = credited.withColumn(
            "event_date",
            F.date_from_unix_date(F.floor(F.unix_seconds("conversion_ts") / 86_400).cast("int")),
        )
        _replace(credited, CONVERSION_ATTRIBUTION, cfg, ("event_date",), written)
        by_day = attribution.campaign_attribution_daily(
            storage.read_table(spark, cfg.table_path(CONVERSION_ATTRIBUTION))
        )
        _replace(by_day, CAMPAIGN_ATTRIBUTION_DAILY, cfg, ("event_date",), written)
    if tables in ("aggregates", "all"):
        daily = attribution.campaign_daily(impressions, clicks, conversions, creatives)
        _replace(daily, CAMPAIGN_DAILY, cfg, ("event_date",), written)
        funnel = attribution.bid_funnel_daily(
            _silver(spark, cfg, SILVER_BID_REQUESTS.relative_path), impressions
        )
        _replace(funnel, BID_FUNNEL_DAILY, cfg, ("event_date",), written)
    return written


def _replace(
    df: DataFrame,
    relative: str,
    cfg: AppConfig,
    partition_by: tuple[str, ...],
    written: dict[str, int],
) -> None:
    location = cfg.table_path(relative)
    storage.overwrite_derived(df, relative, location, partition_by)
    written[relative] = storage.read_table(df.sparkSession, location).count()
    log.info("gold %s: %d rows", relative, written[relative])


def top_campaigns_by_roas(
    spark: SparkSession, cfg: AppConfig, limit: int = 5
) -> list[dict[str, object]]:
    """Campaigns with the best ROAS, with last-touch and linear attributed conversions."""
    daily = storage.read_table(spark, cfg.table_path(CAMPAIGN_DAILY))
    totals = daily.groupBy("campaign_id").agg(
        F.sum("spend").alias("spend"),
        F.sum("revenue").alias("revenue"),
        F.sum("conversions").alias("conversions"),
    )
    attributed = (
        storage.read_table(spark, cfg.table_path(CAMPAIGN_ATTRIBUTION_DAILY))
        .where(F.col("model").isin(attribution.LAST_TOUCH, attribution.LINEAR))
        .groupBy("campaign_id")
        .pivot("model", [attribution.LAST_TOUCH, attribution.LINEAR])
        .agg(F.sum("attributed_conversions"))
    )
    rows = (
        totals.join(attributed, "campaign_id", "left")
        .withColumn(
            "roas", F.try_divide(F.col("revenue").cast("double"), F.col("spend").cast("double"))
        )
        .orderBy(F.col("roas").desc_nulls_last(), "campaign_id")
        .limit(limit)
        .collect()
    )
    return [r.asDict() for r in rows]
