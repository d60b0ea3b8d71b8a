"""Gold runs: silver tables -> attribution and campaign aggregates for analysts.

Every gold table is recomputed from the current silver tables and replaced in one Delta
transaction, so a late impression or click restates the conversions it affects on the next
run and nothing is ever appended twice. Each replace records the versions of the silver
tables it read, the attribution parameters and `attribution.GOLD_LOGIC_VERSION` (the
version of the transforms) in the commit's userMetadata; when those are unchanged the table
is skipped, so running gold twice on the same silver data with the same code writes nothing
(not even a new table version), and a release that changes the logic restates gold.

Full recomputation rather than per-conversion replacement is deliberate: Markov weights are
global, so any new path changes every conversion's markov credits anyway.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

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
    TableSpec,
)

log = logging.getLogger(__name__)

CONVERSION_ATTRIBUTION = "gold/conversion_attribution"
CAMPAIGN_DAILY = "gold/campaign_daily"
CAMPAIGN_ATTRIBUTION_DAILY = "gold/campaign_attribution_daily"
BID_FUNNEL_DAILY = "gold/bid_funnel_daily"
GOLD_TABLES = (CONVERSION_ATTRIBUTION, CAMPAIGN_DAILY, CAMPAIGN_ATTRIBUTION_DAILY, BID_FUNNEL_DAILY)


def build_gold(spark: SparkSession, cfg: AppConfig, tables: str = "all") -> dict[str, int]:
    """Recompute gold tables (`attribution`, `aggregates` or `all`); returns rows per table.

    Silver is read at versions pinned up front, and those versions are what each gold
    commit records: a silver write landing during the build is picked up by the next run
    instead of being recorded as already seen.
    """
    pinned = {
        spec.relative_path: storage.table_version(spark, cfg.table_path(spec.relative_path))
        for spec in (
            SILVER_IMPRESSIONS,
            SILVER_CLICKS,
            SILVER_CONVERSIONS,
            SILVER_CREATIVES,
            SILVER_BID_REQUESTS,
        )
    }

    def silver(spec: TableSpec) -> DataFrame:
        version = pinned[spec.relative_path]
        reader = spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        return reader.load(cfg.table_path(spec.relative_path))

    def fingerprint(specs: tuple[TableSpec, ...], params: str = "") -> str:
        versions = {s.relative_path: pinned[s.relative_path] for s in specs}
        return json.dumps(
            {"inputs": versions, "params": params, "logic": attribution.GOLD_LOGIC_VERSION},
            sort_keys=True,
        )

    impressions, clicks = silver(SILVER_IMPRESSIONS), silver(SILVER_CLICKS)
    conversions, creatives = silver(SILVER_CONVERSIONS), silver(SILVER_CREATIVES)
    params = cfg.attribution
    written: dict[str, int] = {}
    silver_inputs = (SILVER_IMPRESSIONS, SILVER_CLICKS, SILVER_CONVERSIONS, SILVER_CREATIVES)
    if tables in ("attribution", "all"):
        stamp = fingerprint(silver_inputs, repr(params))
        if _unchanged(spark, cfg, CONVERSION_ATTRIBUTION, stamp, written):
            log.info("gold attribution: silver unchanged since the last run, skipped")
        else:
            touches = attribution.build_touches(impressions, clicks, creatives)
            weights = attribution.markov_channel_weights(touches, conversions, params)
            credited = attribution.attribute_conversions(
                conversions, touches, params, markov_weights=weights
            ).withColumn("event_date", attribution.utc_date(F.col("conversion_ts")))
            _replace(credited, CONVERSION_ATTRIBUTION, cfg, stamp, written)
        # A function of the attribution table just written: same inputs, same stamp.
        by_day_stamp = json.dumps({"derived_from": stamp}, sort_keys=True)
        if not _unchanged(spark, cfg, CAMPAIGN_ATTRIBUTION_DAILY, by_day_stamp, written):
            by_day = attribution.campaign_attribution_daily(
                storage.read_table(spark, cfg.table_path(CONVERSION_ATTRIBUTION))
            )
            _replace(by_day, CAMPAIGN_ATTRIBUTION_DAILY, cfg, by_day_stamp, written)
    if tables in ("aggregates", "all"):
        stamp = fingerprint(silver_inputs)
        if not _unchanged(spark, cfg, CAMPAIGN_DAILY, stamp, written):
            daily = attribution.campaign_daily(impressions, clicks, conversions, creatives)
            _replace(daily, CAMPAIGN_DAILY, cfg, stamp, written)
        stamp = fingerprint((SILVER_BID_REQUESTS, SILVER_IMPRESSIONS))
        if not _unchanged(spark, cfg, BID_FUNNEL_DAILY, stamp, written):
            funnel = attribution.bid_funnel_daily(silver(SILVER_BID_REQUESTS), impressions)
            _replace(funnel, BID_FUNNEL_DAILY, cfg, stamp, written)
    return written


def _unchanged(
    spark: SparkSession, cfg: AppConfig, relative: str, stamp: str, written: dict[str, int]
) -> bool:
    """True (and the row count noted) when the table was last built from exactly `stamp`."""
    fingerprint, rows = storage.derived_commit(spark, cfg.table_path(relative))
    if fingerprint != stamp:
        return False
    written[relative] = rows
    log.info("gold %s: inputs unchanged, kept (%d rows)", relative, written[relative])
    return True


def _replace(
    df: DataFrame, relative: str, cfg: AppConfig, stamp: str, written: dict[str, int]
) -> None:
    location = cfg.table_path(relative)
    storage.overwrite_derived(df, relative, location, ("event_date",), stamp)
    written[relative] = storage.derived_commit(df.sparkSession, location)[1]
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


def format_money(amount: object) -> str:
    """Currency for people: 2 decimals rounded half-up, thousands separated; '-' when null.

    Only printed summaries round: the tables keep DECIMAL(18, 6) (or (38, 6) for sums).
    """
    if amount is None:
        return "-"
    cents = Decimal(str(amount)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return f"{cents:,}"


def format_top_campaigns(rows: Sequence[Mapping[str, Any]]) -> str:
    """One line per row of `top_campaigns_by_roas`, for the terminal."""
    if not rows:
        return "  (no campaigns yet)"
    lines = []
    for row in rows:
        roas = "-" if row["roas"] is None else f"{row['roas']:.2f}"
        lines.append(
            f"  campaign {row['campaign_id']!s:>6}  roas {roas:>7}"
            f"  spend {format_money(row['spend']):>12}"
            f"  revenue {format_money(row['revenue']):>12}"
            f"  last_touch {row['last_touch'] or 0:8.2f}  linear {row['linear'] or 0:8.2f}"
        )
    return "\n".join(lines)
