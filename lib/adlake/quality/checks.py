"""The data-quality checks as pure DataFrame functions, and the result types.

Each check turns input tables into *contributions* (check, table, scope, value, total,
newest, money); `aggregate_measures` sums them into the small measure table that the run
collects once. The bronze-vs-silver reconciliation is in `adlake.quality.reconciliation`,
grading in `adlake.quality.grading`; see docs/quality.md.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from functools import reduce
from typing import NamedTuple

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from adlake.schemas import MONEY_SUM
from adlake.settings.gold import LAST_TOUCH
from adlake.settings.quality import (
    AUDIT_IDENTITY,
    CLICKS_WITHOUT_IMPRESSION,
    CTR_BAND,
    CVR_BAND,
    DUPLICATE_RATIO,
    FRESHNESS_INGESTION,
    QUARANTINE_RATIO,
    SPEND_GOLD_VS_SILVER,
    UNATTRIBUTED,
    UNKNOWN_AUCTION,
    WON_WITHOUT_IMPRESSION,
)
from adlake.tables import (
    BATCH_AUDIT,
    COMMITTED,
    GOLD_CAMPAIGN_ATTRIBUTION_DAILY,
    GOLD_CAMPAIGN_DAILY,
    SILVER_BID_REQUESTS,
    SILVER_CLICKS,
    SILVER_CONVERSIONS,
    SILVER_IMPRESSIONS,
    SILVER_JOB,
)

CAMPAIGN_DAILY = GOLD_CAMPAIGN_DAILY.relative_path
CAMPAIGN_ATTRIBUTION_DAILY = GOLD_CAMPAIGN_ATTRIBUTION_DAILY.relative_path

log = logging.getLogger(__name__)

# Internal measure shared by freshness_event_seconds and volume_anomaly (one scan per table).
EVENT_PROFILE = "event_profile"

ALL = "all"
TABLE_MISSING = "table missing"
# 1.4826 x MAD estimates the standard deviation of normally distributed counts.
MAD_SCALE = 1.4826

SILVER_EVENT_TABLES: tuple[str, ...] = tuple(
    spec.relative_path
    for spec in (SILVER_IMPRESSIONS, SILVER_CLICKS, SILVER_CONVERSIONS, SILVER_BID_REQUESTS)
)
# ops/batch_audit's `source` of a silver run is the silver table name.
SILVER_TARGETS: tuple[str, ...] = tuple(rel.split("/", 1)[1] for rel in SILVER_EVENT_TABLES)

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


# ------------------------------------------------------------------------------ results
@dataclass(frozen=True)
class CheckResult:
    """One graded check: a row of `ops/dq_results` without its run_id and run_ts."""

    check: str
    table: str
    scope: str
    observed: float | None
    threshold: float | None
    status: str
    detail: str


class Measure(NamedTuple):
    """A collected row of the measure table (`aggregate_measures`)."""

    check: str
    table: str
    scope: str | None
    value: float | None
    total: float | None
    newest: float | None
    money: Decimal | None


# ------------------------------------------------------------ checks (pure DataFrames)
# Each check returns *contributions*: rows of (check, table, scope, value, total, newest,
# money), one or a few per input row or per join key. `aggregate_measures` sums value, total
# and money and takes the max of newest per (check, table, scope), so the union of every
# check's contributions becomes the small measure table with a single shuffle (plus the
# per-key shuffles of the two checks that match rows across tables).
def contribution(
    check: str,
    table: str | Column,
    scope: str | Column,
    *,
    value: Column | None = None,
    total: Column | None = None,
    newest: Column | None = None,
    money: Column | None = None,
) -> Column:
    def col(c: str | Column | None) -> Column:
        return F.lit(c) if c is None or isinstance(c, str) else c

    return F.struct(
        F.lit(check).alias("check"),
        col(table).alias("table"),
        col(scope).cast("string").alias("scope"),
        col(value).cast("double").alias("value"),
        col(total).cast("double").alias("total"),
        col(newest).cast("double").alias("newest"),
        col(money).cast(MONEY_SUM).alias("money"),
    )


def contribution_rows(df: DataFrame, *contributions: Column) -> DataFrame:
    if len(contributions) == 1:
        return df.select(contributions[0].alias("_c")).select("_c.*")
    return df.select(F.inline(F.array(*contributions)))


def _flag(condition: Column) -> Column:
    """1 when the condition holds, else 0 (null counts as 0)."""
    return F.when(condition, F.lit(1)).otherwise(F.lit(0))


def _since(column: str, since: datetime | None) -> Column:
    """column >= since, compared as epoch microseconds (independent of session time zones)."""
    if since is None:
        return F.lit(True)
    return F.unix_micros(F.col(column)) >= F.lit(micros(since))


def aggregate_measures(contributions: DataFrame) -> DataFrame:
    """The small measure table: per (check, table, scope) the sums of value, total and money
    and the max of newest.
    """
    return contributions.groupBy("check", "table", "scope").agg(
        F.sum("value").alias("value"),
        F.sum("total").alias("total"),
        F.max("newest").alias("newest"),
        F.sum("money").alias("money"),
    )


def event_profile(
    events: Mapping[str, DataFrame], evaluated: int, period_seconds: int, baseline_periods: int
) -> DataFrame:
    """Per silver table and UTC period of event_ts (scope = period number since the epoch):
    rows (value) and newest event_ts in epoch seconds (newest).

    Periods before the baseline collapse into period `evaluated - baseline_periods - 1` and
    those after the evaluated one (the current, still filling one, and any future) into
    `evaluated + 1`, so at most baseline_periods + 3 measures per table come back. Rows
    without event_ts are not counted.
    """
    parts = []
    for table, df in events.items():
        seconds = F.unix_seconds("event_ts")
        # (s - s mod p) is an exact multiple of p, so the division is exact in a double.
        period = ((seconds - F.pmod(seconds, F.lit(period_seconds))) / period_seconds).cast("long")
        bucket = F.least(
            F.greatest(period, F.lit(evaluated - baseline_periods - 1)), F.lit(evaluated + 1)
        )
        parts.append(
            contribution_rows(
                df.where(F.col("event_ts").isNotNull()),
                contribution(
                    EVENT_PROFILE,
                    table,
                    bucket,
                    value=F.lit(1),
                    newest=F.unix_micros("event_ts") / 1e6,
                ),
            )
        )
    return reduce(DataFrame.unionByName, parts)


def ingestion_profile(file_log: DataFrame, since: datetime | None) -> DataFrame:
    """Per bronze source from ops/ingest_file_log's committed rows: newest committed ingestion
    (freshness_ingestion_seconds, all time) and quarantined of all records (quarantine_ratio,
    files logged since `since`).
    """
    committed = file_log.where(F.col("status") == COMMITTED)
    recent = _since("logged_at", since)
    table = F.concat(F.lit("bronze/"), F.col("source"))
    return contribution_rows(
        committed,
        contribution(
            FRESHNESS_INGESTION,
            table,
            F.col("source"),
            newest=F.unix_micros("logged_at") / 1e6,
        ),
        contribution(
            QUARANTINE_RATIO,
            table,
            F.col("source"),
            value=F.when(recent, F.col("quarantined_rows")),
            total=F.when(recent, F.col("bronze_rows") + F.col("quarantined_rows")),
        ),
    )


def audit_checks(batch_audit: DataFrame, since: datetime | None) -> DataFrame:
    """ops/batch_audit rows started since `since`, in one pass.

    quarantine_ratio / duplicate_ratio per silver table: quarantined / duplicates against
    rows_in of the silver job's rows. audit_identity_violations: rows of any job breaking
    rows_in = rows_written + quarantined + duplicates (a null count is a violation too).
    """
    rows = batch_audit.where(_since("started_at", since))
    silver = F.col("job") == SILVER_JOB
    table = F.when(silver, F.concat(F.lit("silver/"), F.col("source")))
    rows_in = F.col("rows_in")
    holds = F.col("rows_in") == (F.col("rows_written") + F.col("quarantined") + F.col("duplicates"))
    return contribution_rows(
        rows,
        contribution(
            QUARANTINE_RATIO, table, F.col("source"), value=F.col("quarantined"), total=rows_in
        ),
        contribution(
            DUPLICATE_RATIO, table, F.col("source"), value=F.col("duplicates"), total=rows_in
        ),
        contribution(
            AUDIT_IDENTITY,
            BATCH_AUDIT.relative_path,
            ALL,
            value=_flag(~F.coalesce(holds, F.lit(False))),
            total=F.lit(1),
        ),
    ).where(F.col("table").isNotNull())  # ratios of other jobs' rows have no silver table


def campaign_rates(campaign_daily: DataFrame, since: date) -> DataFrame:
    """Per campaign over gold/campaign_daily days >= `since`: clicks of impressions (ctr_band)
    and conversions of clicks (cvr_band). Rows without a campaign_id are left out; apply
    `enough_volume` to the aggregated measures.
    """
    recent = campaign_daily.where(
        (F.col("event_date") >= F.lit(since)) & F.col("campaign_id").isNotNull()
    )
    campaign = F.col("campaign_id")
    return contribution_rows(
        recent,
        contribution(
            CTR_BAND, CAMPAIGN_DAILY, campaign, value=F.col("clicks"), total=F.col("impressions")
        ),
        contribution(
            CVR_BAND, CAMPAIGN_DAILY, campaign, value=F.col("conversions"), total=F.col("clicks")
        ),
    )


def enough_volume(min_impressions: int, min_clicks: int) -> Column:
    """Filter of aggregated measures: band measures only with enough impressions / clicks."""
    check, total = F.col("check"), F.coalesce(F.col("total"), F.lit(0.0))
    return ~(
        ((check == CTR_BAND) & (total < min_impressions))
        | ((check == CVR_BAND) & (total < min_clicks))
    )


def clicks_without_impression(clicks: DataFrame, impressions: DataFrame) -> DataFrame:
    """Clicks with no impression of the same user_id and campaign_id at or before them, of all
    clicks: a click matches iff the first such impression is not later than the click.
    """
    keys = ("user_id", "campaign_id")
    touches = impressions.where(F.col("user_id").isNotNull() & F.col("campaign_id").isNotNull())
    both = touches.select(*keys, "event_ts", F.lit(False).alias("_is_click")).unionByName(
        clicks.select(*keys, "event_ts", F.lit(True).alias("_is_click"))
    )
    first_impression = F.min(F.when(~F.col("_is_click"), F.col("event_ts"))).over(
        Window.partitionBy(*keys)
    )
    matched = F.col("_first_impression") <= F.col("event_ts")
    flagged = both.withColumn("_first_impression", first_impression).where(F.col("_is_click"))
    return contribution_rows(
        flagged,
        contribution(
            CLICKS_WITHOUT_IMPRESSION,
            SILVER_CLICKS.relative_path,
            ALL,
            value=_flag(~F.coalesce(matched, F.lit(False))),
            total=F.lit(1),
        ),
    )


def auction_discrepancies(impressions: DataFrame, bid_requests: DataFrame) -> DataFrame:
    """Both auction checks from one shuffle over auction_id (rows with a null one left out).

    impressions_unknown_auction_ratio: impressions whose auction_id is on no bid request, of
    the impressions with an auction_id (direct buys have none).
    won_auctions_without_impression_ratio: the share of bid requests whose auction_id is on
    no impression. The bid feed holds the auctions won (the RTB contract has no win flag; a
    win shows as an impression with the auction_id), and nearly every won auction serves an
    impression, so the limits are small: a rise means impressions of won auctions are lost.
    """
    ids = (
        impressions.where(F.col("auction_id").isNotNull())
        .select("auction_id", F.lit(1).alias("_imp"), F.lit(0).alias("_bid"))
        .unionByName(
            bid_requests.where(F.col("auction_id").isNotNull()).select(
                "auction_id", F.lit(0).alias("_imp"), F.lit(1).alias("_bid")
            )
        )
    )
    per_auction = ids.groupBy("auction_id").agg(
        F.sum("_imp").alias("_imps"), F.sum("_bid").alias("_bids")
    )
    imps, bids = F.col("_imps"), F.col("_bids")
    return contribution_rows(
        per_auction,
        contribution(
            UNKNOWN_AUCTION,
            SILVER_IMPRESSIONS.relative_path,
            ALL,
            value=F.when(bids == 0, imps).otherwise(0),
            total=imps,
        ),
        contribution(
            WON_WITHOUT_IMPRESSION,
            SILVER_BID_REQUESTS.relative_path,
            ALL,
            value=F.when(imps == 0, bids).otherwise(0),
            total=bids,
        ),
    )


def unattributed_conversions(campaign_attribution_daily: DataFrame) -> DataFrame:
    """last_touch rows of gold/campaign_attribution_daily: unattributed of all conversions
    (attributed_conversions sums credits: 1 per attributed conversion under last_touch).
    """
    unattributed = F.coalesce(F.col("unattributed_conversions"), F.lit(0))
    return contribution_rows(
        campaign_attribution_daily.where(F.col("model") == LAST_TOUCH),
        contribution(
            UNATTRIBUTED,
            CAMPAIGN_ATTRIBUTION_DAILY,
            ALL,
            value=unattributed,
            total=unattributed + F.coalesce(F.col("attributed_conversions"), F.lit(0.0)),
        ),
    )


def spend_gold_vs_silver(campaign_daily: DataFrame, impressions: DataFrame) -> DataFrame:
    """gold/campaign_daily spend (scope `gold`) and silver/impressions cost (scope `silver`),
    summed as DECIMAL(38, 6) so the difference is exact.
    """
    return contribution_rows(
        campaign_daily,
        contribution(SPEND_GOLD_VS_SILVER, CAMPAIGN_DAILY, "gold", money=F.col("spend")),
    ).unionByName(
        contribution_rows(
            impressions,
            contribution(SPEND_GOLD_VS_SILVER, CAMPAIGN_DAILY, "silver", money=F.col("cost")),
        )
    )


def as_utc(moment: datetime) -> datetime:
    """An aware UTC datetime; naive values are taken as UTC."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def micros(moment: datetime) -> int:
    return (as_utc(moment) - EPOCH) // timedelta(microseconds=1)
