"""Gold touches: impressions and clicks as touches, touch order, conversions' eligible touches.

Shared by the attribution models (`gold.models`) and the Markov chain (`gold.markov`); the
rules (eligibility windows, touch order) are specified in docs/gold.md.
"""

from __future__ import annotations

from typing import Final

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DecimalType, DoubleType, LongType, StringType, StructField, StructType

from adlake.settings.gold import AttributionParams

IMPRESSION: Final = "impression"
CLICK: Final = "click"
UNATTRIBUTED: Final = "unattributed"

MICROS = 1_000_000

TOUCH_COLUMNS: tuple[str, ...] = (
    "touch_id",
    "touch_type",
    "touch_ts",
    "user_id",
    "campaign_id",
    "creative_id",
    "website",
)

# The silver columns `build_touches` (impressions, clicks) and `conversion_frame` read: an
# incremental build stores its scans with these only (`gold.incremental.flag_appended`).
IMPRESSION_INPUT: tuple[str, ...] = (
    "impression_id", "event_ts", "user_id", "campaign_id", "creative_id", "website",
)  # fmt: skip
CLICK_INPUT: tuple[str, ...] = ("event_id", "event_ts", "user_id", "campaign_id", "creative_id")
CONVERSION_INPUT: tuple[str, ...] = (
    "event_id", "event_ts", "conversion_type", "user_id", "campaign_id", "revenue",
)  # fmt: skip

_PARAM_COLUMNS: tuple[tuple[str, StructField], ...] = (
    ("click_window_seconds", StructField("click_window_seconds", LongType(), False)),
    ("view_window_seconds", StructField("view_window_seconds", LongType(), False)),
    ("half_life_seconds", StructField("half_life_seconds", LongType(), False)),
    ("_first_weight", StructField("_first_weight", DoubleType(), False)),
    ("_last_weight", StructField("_last_weight", DoubleType(), False)),
)


def _param_values(p: AttributionParams) -> tuple[int, int, int, float, float]:
    return (
        p.click_window_seconds,
        p.view_window_seconds,
        p.half_life_seconds,
        float(p.first_touch_weight),
        float(p.last_touch_weight),
    )


# ------------------------------------------------------------------------------ touches


def _creative_campaigns(creatives: DataFrame) -> DataFrame:
    """creative_id -> campaign_id, one row per creative (the smallest campaign, as silver)."""
    return (
        creatives.where(F.col("creative_id").isNotNull())
        .groupBy(F.col("creative_id").alias("_dim_creative_id"))
        .agg(F.min("campaign_id").alias("_dim_campaign_id"))
    )


def fill_campaign(df: DataFrame, creatives: DataFrame) -> DataFrame:
    """campaign_id, or the creative's campaign when null (row count unchanged)."""
    return (
        df.join(
            F.broadcast(_creative_campaigns(creatives)),
            F.col("creative_id") == F.col("_dim_creative_id"),
            "left",
        )
        .withColumn("campaign_id", F.coalesce(F.col("campaign_id"), F.col("_dim_campaign_id")))
        .drop("_dim_creative_id", "_dim_campaign_id")
    )


def _type_rank(touch_type: Column) -> Column:
    """Impressions sort before clicks at the same instant."""
    return F.when(touch_type == IMPRESSION, F.lit(0)).otherwise(F.lit(1))


def touch_order() -> list[Column]:
    return [
        F.col("touch_ts").asc(),
        _type_rank(F.col("touch_type")).asc(),
        F.col("touch_id").asc_nulls_last(),
        F.col("creative_id").asc_nulls_last(),
        F.col("website").asc_nulls_last(),
    ]


def build_touches(impressions: DataFrame, clicks: DataFrame, creatives: DataFrame) -> DataFrame:
    """Impressions and clicks as touches (TOUCH_COLUMNS), one row per input row.

    campaign_id falls back to the creative's campaign when null. Clicks carry no website, so
    a click's website is that of the latest impression of the same user and creative at or
    before the click (null when there is none); Markov attribution by website needs it.
    """
    return _touches(impressions, clicks, creatives, flagged=False).select(*TOUCH_COLUMNS)


# The touches of `build_touches_then_and_now`: whether the row was appended since gold's last
# build, and its website then (a click's website can come from an appended impression).
APPENDED = "_appended"
WEBSITE_THEN = "_website_then"


def build_touches_then_and_now(
    impressions: DataFrame, clicks: DataFrame, creatives: DataFrame
) -> DataFrame:
    """`build_touches` of rows flagged `APPENDED` (bool), plus `APPENDED` and `WEBSITE_THEN`.

    The touches now are all rows; those before the append are the rows not appended, with
    `WEBSITE_THEN` as website: a click's latest impression among the impressions not
    appended. One lookup over the impressions gives both websites (`then_and_now`), where
    building the two sets of touches apart cost two.
    """
    return _touches(impressions, clicks, creatives, flagged=True).select(
        *TOUCH_COLUMNS, APPENDED, WEBSITE_THEN
    )


def then_and_now(touches: DataFrame) -> tuple[DataFrame, DataFrame]:
    """(touches before the append, touches now) of `build_touches_then_and_now` rows."""
    then = touches.where(~F.col(APPENDED)).withColumn("website", F.col(WEBSITE_THEN))
    return then.select(*TOUCH_COLUMNS), touches.select(*TOUCH_COLUMNS)


def _touches(
    impressions: DataFrame, clicks: DataFrame, creatives: DataFrame, *, flagged: bool
) -> DataFrame:
    flags = [APPENDED] if flagged else []
    imp = impressions.select(
        F.col("impression_id").alias("touch_id"),
        F.lit(IMPRESSION).alias("touch_type"),
        F.col("event_ts").alias("touch_ts"),
        "user_id",
        "campaign_id",
        "creative_id",
        "website",
        *flags,
    )
    clk = clicks.select(
        F.col("event_id").alias("touch_id"),
        F.lit(CLICK).alias("touch_type"),
        F.col("event_ts").alias("touch_ts"),
        "user_id",
        "campaign_id",
        "creative_id",
        F.lit(None).cast("string").alias("website"),
        *flags,
    )
    if flagged:
        imp = imp.withColumn(WEBSITE_THEN, F.col("website"))
    return fill_campaign(imp.unionByName(_with_served_website(clk, imp, flagged)), creatives)


def _with_served_website(clicks: DataFrame, impressions: DataFrame, flagged: bool) -> DataFrame:
    """Click touches with the website of the latest impression of their user and creative
    (and, `flagged`, as `WEBSITE_THEN`, of the latest impression not appended).

    In touch order an impression at the click's instant comes before it, so the website
    depends on (user_id, creative_id, touch_ts) only: those keys of the clicks (a small
    broadcast table) are matched against the impressions in one pass, without ordering all
    touches. Nulls sort first in touch order: null user_ids match each other and an
    impression without touch_ts comes before every click. A click without creative_id gets
    no website.
    """
    c = F.col
    keys = (
        clicks.where(c("creative_id").isNotNull())
        .select(
            c("user_id").alias("_k_user_id"),
            c("creative_id").alias("_k_creative_id"),
            c("touch_ts").alias("_k_ts"),
        )
        .distinct()
    )
    # The last in touch order among the impressions with a website: latest touch_ts, then
    # touch_id (nulls last), then website.
    last = F.struct(c("touch_ts"), c("touch_id").isNull(), c("touch_id"), c("website"))
    served_on = {"_served_on": F.max(last).getField("website")}
    if flagged:
        served_on["_served_then"] = F.max(F.when(~c(APPENDED), last)).getField("website")
    served = (
        impressions.where(c("website").isNotNull())
        .join(
            F.broadcast(keys),
            c("user_id").eqNullSafe(c("_k_user_id"))
            & (c("creative_id") == c("_k_creative_id"))
            & (c("touch_ts").isNull() | (c("touch_ts") <= c("_k_ts"))),
        )
        .groupBy("_k_user_id", "_k_creative_id", "_k_ts")
        .agg(*[agg.alias(name) for name, agg in served_on.items()])
    )
    matched = (
        c("user_id").eqNullSafe(c("_k_user_id"))
        & (c("creative_id") == c("_k_creative_id"))
        & c("touch_ts").eqNullSafe(c("_k_ts"))
    )
    websites = [c("_served_on").alias("website")]
    if flagged:
        websites.append(c("_served_then").alias(WEBSITE_THEN))
    return clicks.join(served, matched, "left").select(
        *[c(n) for n in clicks.columns if n != "website"], *websites
    )


# ---------------------------------------------------------------------------- eligibility

CONVERSION_COLUMNS: tuple[str, ...] = (
    "conversion_id",
    "conversion_ts",
    "conversion_type",
    "user_id",
    "campaign_id",
    "revenue",
)


def conversion_frame(conversions: DataFrame, params: AttributionParams) -> DataFrame:
    """Conversions renamed, keyed, parameterized and with their window starts, in one select.

    `_conv_key` identifies a conversion also when event_id is null; `_click_from` /
    `_view_from` are the earliest touch_ts a click / an impression may have.
    """
    c = F.col
    renamed: dict[str, Column] = {
        "conversion_id": c("event_id"),
        "conversion_ts": c("event_ts"),
        "conversion_type": c("conversion_type"),
        "user_id": c("user_id"),
        "campaign_id": c("campaign_id"),
        "revenue": c("revenue").cast(DecimalType(18, 6)),
    }
    content = F.sha2(F.to_json(F.struct(*[v.alias(k) for k, v in renamed.items()])), 256)
    key = F.coalesce(F.concat(F.lit("id:"), c("event_id")), F.concat(F.lit("h:"), content))
    values = dict(zip([n for n, _ in _PARAM_COLUMNS], _param_values(params), strict=True))
    param: dict[str, Column] = {
        name: F.lit(values[name]).cast(sf.dataType) for name, sf in _PARAM_COLUMNS
    }
    source = conversions
    if params.params_by_campaign:
        # A small broadcast table of overrides joined on the conversion's campaign.
        schema = StructType(
            [StructField("_o_campaign_id", StringType(), False)]
            + [StructField(f"_o{name}", sf.dataType, False) for name, sf in _PARAM_COLUMNS]
        )
        rows = [(k, *_param_values(p)) for k, p in sorted(params.params_by_campaign.items())]
        overrides = conversions.sparkSession.createDataFrame(rows, schema)
        source = conversions.join(
            F.broadcast(overrides), c("campaign_id") == c("_o_campaign_id"), "left"
        )
        param = {name: F.coalesce(c(f"_o{name}"), value) for name, value in param.items()}
    conv_us = F.unix_micros(c("event_ts"))
    click_from = F.timestamp_micros(conv_us - param["click_window_seconds"] * MICROS)
    view_from = F.timestamp_micros(conv_us - param["view_window_seconds"] * MICROS)
    return source.select(
        *[v.alias(k) for k, v in renamed.items()],
        key.alias("_conv_key"),
        *[v.alias(k) for k, v in param.items()],
        click_from.alias("_click_from"),
        view_from.alias("_view_from"),
        F.least(click_from, view_from).alias("_from"),
    )


def touch_frame(touches: DataFrame, *, for_join: bool = False) -> DataFrame:
    """Touches with `_touch_key`, unique per touch (impression and click ids may collide).

    `for_join` renames user_id and campaign_id to _t_user_id and _t_campaign_id.
    """
    content = F.sha2(F.to_json(F.struct(*[F.col(c) for c in TOUCH_COLUMNS])), 256)
    key = F.concat(
        F.col("touch_type"),
        F.lit(":"),
        F.coalesce(F.col("touch_id"), F.concat(F.lit("h:"), content)),
    )
    prefix = "_t_" if for_join else ""
    return touches.select(
        *[
            F.col(c).alias(f"{prefix}{c}") if c in ("user_id", "campaign_id") else F.col(c)
            for c in TOUCH_COLUMNS
        ],
        key.alias("_touch_key"),
    )


def conversions_with_touches(conv: DataFrame, touches: DataFrame) -> DataFrame:
    """Left join of `conversion_frame` rows to their eligible touches.

    Keyed on (user_id, campaign_id); the time condition is a range predicate on touch_ts.
    `_touch_key` is null for a conversion without eligible touches.
    """
    return conv.join(
        touch_frame(converting_touches(touches, conv), for_join=True), eligible(), "left"
    )


def converting_touches(touches: DataFrame, conversions: DataFrame) -> DataFrame:
    """The touches of (user_id, campaign_id) pairs that have a conversion (touch columns).

    Only those can be eligible for a conversion. A broadcast semi-join on the conversions'
    pairs: few pairs convert, so a keyed join after it moves a small share of all touches.
    """
    c = F.col
    pairs = conversions.select(
        c("user_id").alias("_p_user_id"), c("campaign_id").alias("_p_campaign_id")
    ).distinct()
    return touches.join(
        F.broadcast(pairs),
        (c("user_id") == c("_p_user_id")) & (c("campaign_id") == c("_p_campaign_id")),
        "left_semi",
    )


def eligible() -> Column:
    """Join condition of `conversion_frame` and `touch_frame(for_join=True)` rows."""
    c = F.col
    window_start = F.when(c("touch_type") == CLICK, c("_click_from")).when(
        c("touch_type") == IMPRESSION, c("_view_from")
    )
    return (
        (c("user_id") == c("_t_user_id"))
        & (c("campaign_id") == c("_t_campaign_id"))
        & (c("touch_ts") <= c("conversion_ts"))
        & (c("touch_ts") >= c("_from"))
        & (c("touch_ts") >= window_start)
    )


def utc_date(ts: Column) -> Column:
    """The UTC calendar date of an instant, whatever the session time zone."""
    return F.date_from_unix_date(F.floor(F.unix_seconds(ts) / 86_400).cast("int"))
