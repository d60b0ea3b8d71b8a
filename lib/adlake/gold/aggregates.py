"""Gold aggregates: campaign_daily, campaign_attribution_daily, the bid funnel, and the
top-campaigns report printed after a pipeline run. Table contracts: docs/gold.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from adlake import storage
from adlake.gold.touches import CLICK, IMPRESSION, UNATTRIBUTED, fill_campaign, utc_date
from adlake.schemas import MONEY_SUM
from adlake.settings.gold import LAST_TOUCH, LINEAR
from adlake.tables import GOLD_CAMPAIGN_ATTRIBUTION_DAILY, GOLD_CAMPAIGN_DAILY

if TYPE_CHECKING:
    from adlake.config import AppConfig


def _ratio(numerator: Column, denominator: Column) -> Column:
    """numerator / denominator as DOUBLE; null when the denominator is 0 or null (ANSI-safe)."""
    return F.try_divide(numerator.cast("double"), denominator.cast("double"))


def campaign_daily(
    impressions: DataFrame, clicks: DataFrame, conversions: DataFrame, creatives: DataFrame
) -> DataFrame:
    """Daily delivery and outcome metrics per campaign, by each event's own UTC date.

    Impressions count for their campaign_id or, when null, their creative's campaign;
    clicks and conversions for their own campaign_id. spend = sum of impression cost,
    revenue = sum of conversion revenue (0 when none; null values are skipped), both
    DECIMAL(38, 6). unique_users = distinct users with any impression, click or conversion.
    advertiser_id is the campaign's (the smallest if creatives disagree). Ratios are DOUBLE
    and null when their denominator is 0: ctr = clicks/impressions, cvr =
    conversions/clicks, cpm = spend/impressions*1000, cpc = spend/clicks, cpa =
    spend/conversions, roas = revenue/spend.
    """
    no_money = F.lit(None).cast(MONEY_SUM)
    imp = fill_campaign(impressions, creatives).select(
        F.lit(IMPRESSION).alias("_kind"),
        "campaign_id",
        utc_date(F.col("event_ts")).alias("event_date"),
        "user_id",
        F.col("cost").cast(MONEY_SUM).alias("_cost"),
        no_money.alias("_revenue"),
    )
    clk = clicks.select(
        F.lit(CLICK).alias("_kind"),
        "campaign_id",
        utc_date(F.col("event_ts")).alias("event_date"),
        "user_id",
        no_money.alias("_cost"),
        no_money.alias("_revenue"),
    )
    cnv = conversions.select(
        F.lit("conversion").alias("_kind"),
        "campaign_id",
        utc_date(F.col("event_ts")).alias("event_date"),
        "user_id",
        no_money.alias("_cost"),
        F.col("revenue").cast(MONEY_SUM).alias("_revenue"),
    )
    zero = F.lit(0).cast(MONEY_SUM)

    def count_of(kind: str) -> Column:
        return F.count(F.when(F.col("_kind") == kind, F.lit(1)))

    daily = (
        imp.unionByName(clk)
        .unionByName(cnv)
        .groupBy("campaign_id", "event_date")
        .agg(
            count_of(IMPRESSION).alias("impressions"),
            count_of(CLICK).alias("clicks"),
            count_of("conversion").alias("conversions"),
            F.coalesce(F.sum("_revenue"), zero).cast(MONEY_SUM).alias("revenue"),
            F.coalesce(F.sum("_cost"), zero).cast(MONEY_SUM).alias("spend"),
            F.count_distinct("user_id").alias("unique_users"),
        )
    )
    advertisers = (
        creatives.where(F.col("campaign_id").isNotNull())
        .groupBy(F.col("campaign_id").alias("_adv_campaign_id"))
        .agg(F.min("advertiser_id").alias("advertiser_id"))
    )
    c = F.col
    return daily.join(
        F.broadcast(advertisers), c("campaign_id") == c("_adv_campaign_id"), "left"
    ).select(
        "campaign_id",
        "advertiser_id",
        "event_date",
        "impressions",
        "clicks",
        "conversions",
        "revenue",
        "spend",
        "unique_users",
        _ratio(c("clicks"), c("impressions")).alias("ctr"),
        _ratio(c("conversions"), c("clicks")).alias("cvr"),
        _ratio(c("spend").cast("double") * 1000, c("impressions")).alias("cpm"),
        _ratio(c("spend"), c("clicks")).alias("cpc"),
        _ratio(c("spend"), c("conversions")).alias("cpa"),
        _ratio(c("revenue"), c("spend")).alias("roas"),
    )


def campaign_attribution_daily(attribution: DataFrame) -> DataFrame:
    """Per campaign, UTC conversion date and model: attributed and unattributed conversions.

    attributed_conversions / attributed_revenue (DOUBLE) sum credit / attributed_revenue
    over rows that are not 'unattributed' (0 when none); unattributed_conversions (LONG)
    counts conversions without an eligible touch.
    """
    unattributed = F.col("touch_type").eqNullSafe(F.lit(UNATTRIBUTED))
    return attribution.groupBy(
        "campaign_id", utc_date(F.col("conversion_ts")).alias("event_date"), "model"
    ).agg(
        F.coalesce(F.sum(F.when(~unattributed, F.col("credit"))), F.lit(0.0)).alias(
            "attributed_conversions"
        ),
        F.coalesce(
            F.sum(F.when(~unattributed, F.col("attributed_revenue").cast("double"))), F.lit(0.0)
        ).alias("attributed_revenue"),
        F.count(F.when(unattributed, F.lit(1))).alias("unattributed_conversions"),
    )


def bid_funnel_daily(bid_requests: DataFrame, impressions: DataFrame) -> DataFrame:
    """Bid requests -> won impressions per (event_date, country, website) of the bid request.

    won_impressions counts impressions whose auction_id is the auction_id of the group's
    winning bid request; spend is their cost (DECIMAL(38, 6), 0 when none); win_rate =
    won_impressions / bid_requests; avg_bid_cpm = mean bid_amount (DOUBLE, a CPM). An
    auction has one winning bid request, so an impression counts in one group only: the
    highest bid_amount, then the earliest event_ts, then the smallest request_id (bid
    requests of one auction may fall in different groups). Impressions matching no bid
    request are not counted anywhere.
    """
    keys = ["event_date", "country", "website"]
    groups = bid_requests.groupBy(*keys).agg(
        F.count(F.lit(1)).alias("bid_requests"),
        F.avg("bid_amount").cast("double").alias("avg_bid_cpm"),
    )
    winner_first = Window.partitionBy("auction_id").orderBy(
        F.col("bid_amount").desc_nulls_last(),
        F.col("event_ts").asc_nulls_last(),
        F.col("request_id").asc_nulls_last(),
    )
    auctions = (
        bid_requests.where(F.col("auction_id").isNotNull())
        .withColumn("_w_rank", F.row_number().over(winner_first))
        .where(F.col("_w_rank") == 1)
        .select(
            F.col("auction_id").alias("_w_auction_id"),
            *[F.col(k).alias(f"_w_{k}") for k in keys],
        )
    )
    won = (
        impressions.where(F.col("auction_id").isNotNull())
        .join(auctions, F.col("auction_id") == F.col("_w_auction_id"))
        .groupBy(*[f"_w_{k}" for k in keys])
        .agg(
            F.count(F.lit(1)).alias("won_impressions"),
            F.sum(F.col("cost").cast(MONEY_SUM)).alias("_won_spend"),
        )
    )
    condition = F.lit(True)
    for k in keys:
        condition = condition & F.col(k).eqNullSafe(F.col(f"_w_{k}"))
    won_count = F.coalesce(F.col("won_impressions"), F.lit(0).cast("long"))
    return groups.join(won, condition, "left").select(
        *keys,
        F.col("bid_requests"),
        won_count.alias("won_impressions"),
        _ratio(won_count, F.col("bid_requests")).alias("win_rate"),
        F.col("avg_bid_cpm"),
        F.coalesce(F.col("_won_spend"), F.lit(0).cast(MONEY_SUM)).cast(MONEY_SUM).alias("spend"),
    )


def bid_funnel_for_dates(
    bid_requests: DataFrame, impressions: DataFrame, dates: Sequence[date]
) -> DataFrame:
    """`bid_funnel_daily` rows of the given event dates only, equal to the full table's.

    Reads the bid requests of those dates, plus the other bid requests and the impressions
    of their auctions only (an auction's winner is decided over all its bid requests,
    whatever their date), so an increment does not rank every auction again.
    """
    on_dates = F.col("event_date").isin(list(dates))
    chosen = bid_requests.where(on_dates)
    auctions = chosen.where(F.col("auction_id").isNotNull()).select("auction_id").distinct()
    elsewhere = bid_requests.where(~on_dates | F.col("event_date").isNull()).join(
        auctions, "auction_id", "left_semi"
    )
    won = impressions.join(auctions, "auction_id", "left_semi")
    return bid_funnel_daily(chosen.unionByName(elsewhere), won).where(on_dates)


# ------------------------------------------------------------------------------- report


def top_campaigns_by_roas(
    spark: SparkSession, cfg: AppConfig, limit: int = 5
) -> list[dict[str, object]]:
    """Campaigns with the best ROAS, with last-touch and linear attributed conversions."""
    daily = storage.read_table(spark, GOLD_CAMPAIGN_DAILY.location(cfg))
    totals = daily.groupBy("campaign_id").agg(
        F.sum("spend").alias("spend"),
        F.sum("revenue").alias("revenue"),
        F.sum("conversions").alias("conversions"),
    )
    attributed = (
        storage.read_table(spark, GOLD_CAMPAIGN_ATTRIBUTION_DAILY.location(cfg))
        .where(F.col("model").isin(LAST_TOUCH, LINEAR))
        .groupBy("campaign_id")
        .pivot("model", [LAST_TOUCH, LINEAR])
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
