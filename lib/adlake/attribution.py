"""Gold attribution: touches, per-conversion credits under six models, Markov weights, aggregates.

All functions are pure DataFrame -> DataFrame transforms built from Spark built-ins (no
Python UDFs), except `markov_channel_weights`: it runs one Spark aggregation, collects only
the channel-by-channel transition counts (at most (channels + 1) x (channels + 2) rows) and
solves the small absorbing Markov chain on the driver with numpy. `attribute_conversions`
calls it only when asked for the markov model without precomputed weights.

Touches and eligibility
    A touch is an impression (touch_id = impression_id) or a click (touch_id = event_id). It
    is eligible for a conversion when user_id and campaign_id are equal, touch_ts <=
    conversion_ts and conversion_ts - touch_ts <= click_window (clicks) or view_window
    (impressions); all bounds inclusive, compared in microseconds. Eligible touches are
    ordered by touch_ts, then impressions before clicks, then touch_id (nulls last), then
    creative_id and website (so the order never depends on partitioning).

Parameters
    `AttributionParams` holds the defaults; `params_by_campaign` maps a campaign_id to a full
    `AttributionParams` that replaces the defaults for that campaign's conversions (windows,
    half-life, position weights). The override table is a small broadcast DataFrame joined
    on the conversion's campaign_id. markov_channel cannot differ per campaign: the Markov
    model is one chain over all campaigns.

Output of `attribute_conversions` (`ATTRIBUTION_SCHEMA`), grain (conversion, model, touch):
    conversion_id, conversion_ts, conversion_type, user_id, campaign_id, revenue, model,
    touch_id, touch_type, touch_ts, creative_id, website, credit, attributed_revenue,
    click_window_seconds, view_window_seconds, half_life_seconds.
    Only touches with credit > 0 get a row (last/first touch give one row per conversion).
    Credits per (conversion, model) sum to 1 (floating point) and are never negative.
    attributed_revenue is DOUBLE = credit x revenue (null when revenue is null): a decimal
    rounded per row would no longer add up to the conversion's revenue.
    A conversion without an eligible touch gets, for every model, one row with touch_type
    'unattributed', touch fields null and credit 1.0.
    Markov rows are per channel, not per touch: touch_id, touch_type and touch_ts are null,
    website (or creative_id, per markov_channel) holds the channel and the other is null.

Markov model (first order, removal effect; matches ChannelAttribution.markov_model order=1)
    Paths. A converting path is one conversion's eligible touches in touch order, ending in
    (conversion); conversions without eligible touches are not paths. A non-converting path
    is, per (user_id, campaign_id), the touches eligible for no conversion, ending in (null).
    A touch eligible for two conversions is in both converting paths. The channel of a touch
    is its website (default) or creative_id; a null value is a channel of its own (null).
    Transitions. Consecutive repeats of a channel are collapsed (A > A > B is A > B, as in
    ChannelAttribution); each path contributes (start) -> first channel, channel -> next
    channel and last channel -> (conversion) | (null), each counted once per path.
    Probabilities are counts divided by the row total of the source state.
    Removal effect of channel k: RE_k = 1 - P(conversion | k removed) / P(conversion), where
    removing k sends every transition into k to (null). In a first-order chain this equals
    P(k is visited | conversion) = h(start, k) * c(k) / c(start), with c the conversion
    (absorption) probability and h(start, k) = N[start, k] / N[k, k] the probability of ever
    hitting k, N = (I - Q)^-1 the fundamental matrix. ChannelAttribution estimates exactly
    this quantity by simulation (pass it a large max_step: by default it drops simulated
    paths longer than the longest observed one, a bias of several percent when paths
    cycle). weight_k = RE_k / sum(RE); weight_k x total conversions is ChannelAttribution's
    `total_conversions` for k. RE = weight = 0 for every channel when no path converts.
    The driver inverts one dense (channels x channels) matrix with numpy (LAPACK):
    O(channels^3) time and 8 x channels^2 bytes, about 1 s and 50 MB for 2,500 channels;
    beyond ~10,000 channels rare channels should be bucketed first.
    Per conversion, credit of channel k = RE_k / sum of RE over the distinct channels of the
    conversion's eligible touches; a channel missing from the weights counts as RE 0, and
    if all of a conversion's channels have RE 0 they share the credit equally.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date
from enum import Enum
from typing import Final

import numpy as np
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import (
    DecimalType,
    DoubleType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from adlake.schemas import MONEY_SUM
from adlake.settings.gold import (
    ALL_MODELS,
    DEFAULT_PARAMS,
    FIRST_TOUCH,
    LAST_TOUCH,
    LINEAR,
    MARKOV,
    POSITION_BASED,
    TIME_DECAY,
    AttributionParams,
)

log = logging.getLogger(__name__)


IMPRESSION: Final = "impression"
CLICK: Final = "click"
UNATTRIBUTED: Final = "unattributed"


# The version of what the gold transforms compute. Gold skips a rebuild when its inputs are
# unchanged, and this is one of them: bump it in any change that alters a gold table's rows
# for the same silver data and parameters, so the next run restates every gold table.
# 2: bid_funnel_daily counts a won auction in its winning bid request's group only.
GOLD_LOGIC_VERSION: Final = "2"

_MICROS = 1_000_000

TOUCH_COLUMNS: tuple[str, ...] = (
    "touch_id",
    "touch_type",
    "touch_ts",
    "user_id",
    "campaign_id",
    "creative_id",
    "website",
)

ATTRIBUTION_SCHEMA = StructType(
    [
        StructField("conversion_id", StringType(), True),
        StructField("conversion_ts", TimestampType(), True),
        StructField("conversion_type", StringType(), True),
        StructField("user_id", StringType(), True),
        StructField("campaign_id", StringType(), True),
        StructField("revenue", DecimalType(18, 6), True),
        StructField("model", StringType(), False),
        StructField("touch_id", StringType(), True),
        StructField("touch_type", StringType(), True),
        StructField("touch_ts", TimestampType(), True),
        StructField("creative_id", StringType(), True),
        StructField("website", StringType(), True),
        StructField("credit", DoubleType(), False),
        StructField("attributed_revenue", DoubleType(), True),
        StructField("click_window_seconds", LongType(), False),
        StructField("view_window_seconds", LongType(), False),
        StructField("half_life_seconds", LongType(), False),
    ]
)

MARKOV_WEIGHTS_SCHEMA = StructType(
    [
        StructField("channel", StringType(), True),
        StructField("removal_effect", DoubleType(), False),
        StructField("weight", DoubleType(), False),
    ]
)


class UnknownModelError(ValueError):
    """`models` names a model outside ALL_MODELS."""


class MarkovSolveError(ArithmeticError):
    """The transition matrix has no absorbing exit (cannot come from real paths)."""


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


def _validated_models(models: Sequence[str]) -> tuple[str, ...]:
    unknown = [m for m in models if m not in ALL_MODELS]
    if unknown or not models:
        raise UnknownModelError(
            f"models must be a non-empty subset of {', '.join(ALL_MODELS)}; got {list(models)}"
        )
    return tuple(dict.fromkeys(models))


# --------------------------------------------------------------------------------- touches


def _creative_campaigns(creatives: DataFrame) -> DataFrame:
    """creative_id -> campaign_id, one row per creative (the smallest campaign, as silver)."""
    return (
        creatives.where(F.col("creative_id").isNotNull())
        .groupBy(F.col("creative_id").alias("_dim_creative_id"))
        .agg(F.min("campaign_id").alias("_dim_campaign_id"))
    )


def _fill_campaign(df: DataFrame, creatives: DataFrame) -> DataFrame:
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


def _touch_order() -> list[Column]:
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
    imp = impressions.select(
        F.col("impression_id").alias("touch_id"),
        F.lit(IMPRESSION).alias("touch_type"),
        F.col("event_ts").alias("touch_ts"),
        "user_id",
        "campaign_id",
        "creative_id",
        "website",
    )
    clk = clicks.select(
        F.col("event_id").alias("touch_id"),
        F.lit(CLICK).alias("touch_type"),
        F.col("event_ts").alias("touch_ts"),
        "user_id",
        "campaign_id",
        "creative_id",
        F.lit(None).cast("string").alias("website"),
    )
    touches = _fill_campaign(imp.unionByName(clk), creatives)
    seen_before = (
        Window.partitionBy("user_id", "creative_id")
        .orderBy(*_touch_order())
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    is_click = F.col("touch_type") == CLICK
    served_on = F.last(
        F.when(F.col("touch_type") == IMPRESSION, F.col("website")), ignorenulls=True
    ).over(seen_before)
    website = F.when(is_click & F.col("creative_id").isNotNull(), served_on).when(
        ~is_click, F.col("website")
    )
    return touches.withColumn("website", website).select(*TOUCH_COLUMNS)


# ---------------------------------------------------------------------------- eligibility

_CONVERSION_COLUMNS: tuple[str, ...] = (
    "conversion_id",
    "conversion_ts",
    "conversion_type",
    "user_id",
    "campaign_id",
    "revenue",
)


def _conversion_frame(conversions: DataFrame, params: AttributionParams) -> DataFrame:
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
    click_from = F.timestamp_micros(conv_us - param["click_window_seconds"] * _MICROS)
    view_from = F.timestamp_micros(conv_us - param["view_window_seconds"] * _MICROS)
    return source.select(
        *[v.alias(k) for k, v in renamed.items()],
        key.alias("_conv_key"),
        *[v.alias(k) for k, v in param.items()],
        click_from.alias("_click_from"),
        view_from.alias("_view_from"),
        F.least(click_from, view_from).alias("_from"),
    )


def _touch_frame(touches: DataFrame, *, for_join: bool = False) -> DataFrame:
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


def _conversions_with_touches(conv: DataFrame, touches: DataFrame) -> DataFrame:
    """Left join of `_conversion_frame` rows to their eligible touches.

    Keyed on (user_id, campaign_id); the time condition is a range predicate on touch_ts.
    `_touch_key` is null for a conversion without eligible touches.
    """
    return conv.join(_touch_frame(touches, for_join=True), _eligible(), "left")


def _eligible() -> Column:
    """Join condition of `_conversion_frame` and `_touch_frame(for_join=True)` rows."""
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


# ------------------------------------------------------------------------------ credits


def _with_removal_effects(joined: DataFrame, weights: DataFrame, channel: str) -> DataFrame:
    """Add `_w_re`, the removal effect of each touch's channel (null when weights lack it)."""
    effects = weights.groupBy(F.col("channel").alias("_w_channel")).agg(
        F.greatest(F.lit(0.0), F.max(F.col("removal_effect").cast("double"))).alias("_w_re")
    )
    return joined.join(F.broadcast(effects), F.col(channel).eqNullSafe(F.col("_w_channel")), "left")


def _credited(joined: DataFrame, models: Sequence[str], channel: str) -> DataFrame:
    """(conversion, touch) rows -> output rows (conversion, model, touch, credit), credit > 0.

    One pass of windows per conversion. The partition leads with the join keys, so rows
    stay where the (user_id, campaign_id) join put them: no further shuffle. Rows without
    a touch (`_touch_key` null) become 'unattributed' with credit 1 in every model. Few,
    wide projections: building a DataFrame costs one analysis per step.
    """
    col = F.col
    per_conv = Window.partitionBy("user_id", "campaign_id", "_conv_key")
    ordered = per_conv.orderBy(*_touch_order())
    has_touch = col("_touch_key").isNotNull()
    touch_us = F.unix_micros(col("touch_ts"))
    markov = MARKOV in models
    first: dict[str, Column] = {
        "_n": F.count(col("_touch_key")).over(per_conv),
        "_rn": F.row_number().over(ordered),
        "_latest_us": F.max(touch_us).over(per_conv),
    }
    if markov:
        # The first row of each distinct channel (in channel order) stands for the channel.
        by_channel = per_conv.orderBy(col(channel).asc_nulls_first(), *_touch_order())
        first["_channel_head"] = has_touch & (
            (F.row_number().over(by_channel) == 1)
            | ~col(channel).eqNullSafe(F.lag(channel).over(by_channel))
        )
        first["_re"] = F.coalesce(col("_w_re"), F.lit(0.0))
    # 2 ** (-age / half_life), rescaled so the latest touch weighs 1: the normalized shares
    # are the same and the sum is >= 1, so a short half-life cannot underflow it to 0.
    decay = F.pow(
        F.lit(2.0),
        (touch_us - col("_latest_us")).cast("double")
        / (col("half_life_seconds").cast("double") * _MICROS),
    )
    second: dict[str, Column] = {
        "_last_click_rn": F.max(F.when(col("touch_type") == CLICK, col("_rn"))).over(per_conv),
        "_decay": decay,
    }
    if markov:
        head_re = F.when(col("_channel_head"), col("_re"))
        second["_re_sum"] = F.sum(head_re).over(per_conv)
        second["_channels"] = F.count(head_re).over(per_conv).cast("double")
    df = (
        joined.withColumns(first)
        .withColumns(second)
        .withColumn("_decay_sum", F.sum("_decay").over(per_conv))
    )

    n, rn = col("_n"), col("_rn")
    first_w, last_w = col("_first_weight"), col("_last_weight")
    middle_w = F.greatest(F.lit(0.0), F.lit(1.0) - first_w - last_w)
    credit: dict[str, Column] = {
        LAST_TOUCH: F.when(
            col("_last_click_rn").isNotNull(), rn == col("_last_click_rn")
        ).otherwise(rn == n),
        FIRST_TOUCH: rn == 1,
        LINEAR: F.try_divide(F.lit(1.0), n.cast("double")),
        TIME_DECAY: F.try_divide(col("_decay"), col("_decay_sum")),
        POSITION_BASED: F.when(n == 1, F.lit(1.0))
        .when((n == 2) & (rn == 1), F.try_divide(first_w, first_w + last_w))
        .when(n == 2, F.try_divide(last_w, first_w + last_w))
        .when(rn == 1, first_w)
        .when(rn == n, last_w)
        .otherwise(F.try_divide(middle_w, (n - 2).cast("double"))),
    }
    if markov:
        credit[MARKOV] = F.when(
            col("_channel_head"),
            F.when(col("_re_sum") > 0, F.try_divide(col("_re"), col("_re_sum"))).otherwise(
                F.try_divide(F.lit(1.0), col("_channels"))
            ),
        ).otherwise(F.lit(0.0))
    per_model = F.array(
        *[
            F.struct(
                F.lit(m).alias("model"),
                F.when(has_touch, credit[m].cast("double")).otherwise(F.lit(1.0)).alias("credit"),
            )
            for m in models
        ]
    )
    exploded = df.select("*", F.explode(per_model).alias("_mc"))

    # Markov rows describe a channel: no touch fields but the channel column.
    markov_row = has_touch & (col("_mc.model") == MARKOV)

    def touch_field(name: str) -> Column:
        return F.when(~markov_row, col(name)).alias(name)

    def descriptive(name: str) -> Column:
        return col(name) if name == channel else touch_field(name)

    credit_out = col("_mc.credit")
    return exploded.where(credit_out > 0).select(
        *_CONVERSION_COLUMNS,
        col("_mc.model").alias("model"),
        touch_field("touch_id"),
        F.when(~has_touch, F.lit(UNATTRIBUTED))
        .otherwise(touch_field("touch_type"))
        .alias("touch_type"),
        touch_field("touch_ts"),
        descriptive("creative_id"),
        descriptive("website"),
        credit_out.alias("credit"),
        (credit_out * col("revenue").cast("double")).alias("attributed_revenue"),
        "click_window_seconds",
        "view_window_seconds",
        "half_life_seconds",
    )


def attribute_conversions(
    conversions: DataFrame,
    touches: DataFrame,
    params: AttributionParams = DEFAULT_PARAMS,
    models: Sequence[str] = ALL_MODELS,
    markov_weights: DataFrame | None = None,
) -> DataFrame:
    """Credits of every conversion under each model (`ATTRIBUTION_SCHEMA`, see module doc).

    `conversions`: silver conversions (event_id, event_ts, user_id, campaign_id,
    conversion_type, revenue); `touches`: `build_touches` output; `markov_weights`: a
    `markov_channel_weights` result (channel, removal_effect). When the markov model is
    requested without weights they are computed here, which runs one Spark job.
    """
    chosen = _validated_models(models)
    channel = params.markov_channel
    joined = _conversions_with_touches(_conversion_frame(conversions, params), touches)
    if MARKOV in chosen:
        weights = (
            markov_weights
            if markov_weights is not None
            else markov_channel_weights(touches, conversions, params)
        )
        joined = _with_removal_effects(joined, weights, channel)
    return _credited(joined, chosen, channel)


# ------------------------------------------------------------------------------- markov


class Terminal(Enum):
    """The non-channel states of the Markov chain."""

    START = "(start)"
    CONVERSION = "(conversion)"
    NULL = "(null)"


# A state is a terminal or a channel; a channel is a string, or None for touches whose
# channel value is null.
MarkovState = Terminal | str | None

MARKOV_TRANSITIONS_SCHEMA = StructType(
    [
        StructField("from_kind", StringType(), False),
        StructField("from_channel", StringType(), True),
        StructField("to_kind", StringType(), False),
        StructField("to_channel", StringType(), True),
        StructField("transitions", LongType(), False),
    ]
)
_KIND_START = "start"
_KIND_CHANNEL = "channel"
_KIND_CONVERSION = "conversion"
_KIND_NULL = "null"


def markov_transition_counts(
    touches: DataFrame, conversions: DataFrame, params: AttributionParams = DEFAULT_PARAMS
) -> DataFrame:
    """Transition counts of all paths (MARKOV_TRANSITIONS_SCHEMA); paths as in the module doc.

    from_kind is 'start' or 'channel', to_kind 'channel', 'conversion' or 'null'; the
    channel columns are set only for kind 'channel' (and may then be null: a null channel).
    One join from touches to the conversions they are eligible for gives both kinds of
    path: matched rows belong to the conversion's path, unmatched touches to the null path
    of their (user_id, campaign_id).
    """
    c = F.col
    conv = _conversion_frame(conversions, params)
    touch_rows = _touch_frame(touches, for_join=True).join(conv, _eligible(), "left")
    matched = c("_conv_key").isNotNull()
    null_path = F.concat(
        F.lit("u|"),
        F.to_json(F.struct(c("_t_user_id").alias("u"), c("_t_campaign_id").alias("c"))),
    )
    paths = touch_rows.select(
        F.when(matched, F.concat(F.lit("c|"), c("_conv_key"))).otherwise(null_path).alias("_path"),
        F.when(matched, F.lit(_KIND_CONVERSION)).otherwise(F.lit(_KIND_NULL)).alias("_end"),
        "touch_ts",
        "touch_type",
        "touch_id",
        "creative_id",
        "website",
        c(params.markov_channel).alias("_channel"),
    )
    ordered = Window.partitionBy("_path").orderBy(*_touch_order())
    repeat = (F.row_number().over(ordered) > 1) & c("_channel").eqNullSafe(
        F.lag("_channel").over(ordered)
    )
    steps = (
        paths.withColumn("_repeat", repeat)
        .where(~c("_repeat"))
        .select(
            "_end",
            "_channel",
            (F.row_number().over(ordered) == 1).alias("_first"),
            F.lead("_channel").over(ordered).alias("_next"),
            F.lead(F.lit(1)).over(ordered).isNotNull().alias("_has_next"),
        )
    )
    start = F.struct(
        F.lit(_KIND_START).alias("from_kind"),
        F.lit(None).cast("string").alias("from_channel"),
        F.lit(_KIND_CHANNEL).alias("to_kind"),
        c("_channel").alias("to_channel"),
    )
    move = F.struct(
        F.lit(_KIND_CHANNEL).alias("from_kind"),
        c("_channel").alias("from_channel"),
        F.when(c("_has_next"), F.lit(_KIND_CHANNEL)).otherwise(c("_end")).alias("to_kind"),
        F.when(c("_has_next"), c("_next")).alias("to_channel"),
    )
    transitions = F.explode(F.array(F.when(c("_first"), start), move)).alias("_t")
    return (
        steps.select(transitions)
        .where(c("_t").isNotNull())
        .groupBy("_t.from_kind", "_t.from_channel", "_t.to_kind", "_t.to_channel")
        .agg(F.count(F.lit(1)).alias("transitions"))
    )


def _fundamental(q: np.ndarray) -> np.ndarray:
    """N = (I - Q)^-1 of the transient channel states (LAPACK through numpy)."""
    a = np.eye(q.shape[0]) - q
    try:
        inverse = np.linalg.inv(a)
    except np.linalg.LinAlgError as exc:
        raise MarkovSolveError(
            "transition matrix is singular: a set of channels never exits"
        ) from exc
    if not np.all(np.isfinite(inverse)):
        raise MarkovSolveError("transition matrix is singular: a set of channels never exits")
    return inverse


def _channel_sort_key(channel: str | None) -> tuple[bool, str]:
    return (channel is not None, channel or "")


def removal_effects(
    transitions: Iterable[tuple[MarkovState, MarkovState, float]],
) -> dict[str | None, float]:
    """Removal effect of every channel of a first-order chain given (from, to, count) rows.

    RE_k = P(k visited | conversion) = h(start, k) * c(k) / c(start) (see the module doc);
    every channel that appears as a source or target gets an entry; all 0 if nothing converts.
    """
    counts: dict[MarkovState, dict[MarkovState, float]] = defaultdict(lambda: defaultdict(float))
    channel_set: set[str | None] = set()
    for source, target, count in transitions:
        if source in (Terminal.CONVERSION, Terminal.NULL) or target is Terminal.START:
            raise ValueError(f"impossible transition {source!r} -> {target!r}")
        counts[source][target] += float(count)
        for state in (source, target):
            if not isinstance(state, Terminal):
                channel_set.add(state)
    channels = sorted(channel_set, key=_channel_sort_key)
    index = {ch: i for i, ch in enumerate(channels)}
    n = len(channels)

    q = np.zeros((n, n))
    r = np.zeros(n)
    q_start = np.zeros(n)
    r_start = 0.0
    for source, row in counts.items():
        total = sum(row.values())
        if total <= 0:
            continue
        i = None if isinstance(source, Terminal) else index[source]  # None: (start)
        for target, count in row.items():
            p = count / total
            if isinstance(target, Terminal):
                if target is not Terminal.CONVERSION:
                    continue
                if i is None:
                    r_start = p
                else:
                    r[i] = p
            elif i is None:
                q_start[index[target]] += p
            else:
                q[i, index[target]] += p
    if n == 0:
        return {}
    fundamental = _fundamental(q)
    conv_prob = fundamental @ r  # c(k): conversion probability starting in channel k
    start_visits = q_start @ fundamental  # expected visits to k from (start)
    p_conversion = r_start + float(q_start @ conv_prob)
    if p_conversion <= 0:
        return dict.fromkeys(channels, 0.0)
    hit = start_visits / np.diag(fundamental)
    effects = np.clip(hit * conv_prob / p_conversion, 0.0, 1.0)
    return {ch: float(effects[k]) for k, ch in enumerate(channels)}


def _state(kind: str, channel: str | None) -> MarkovState:
    terminals = {
        _KIND_START: Terminal.START,
        _KIND_CONVERSION: Terminal.CONVERSION,
        _KIND_NULL: Terminal.NULL,
    }
    return terminals.get(kind, channel)


def channel_weights(
    counts: Iterable[tuple[str, str | None, str, str | None, int]],
) -> list[tuple[str | None, float, float]]:
    """(channel, removal_effect, weight) rows from collected `markov_transition_counts` rows.

    weight = removal_effect / sum of removal effects (0 for all when nothing converts);
    rows sorted by channel, the null channel first.
    """
    effects = removal_effects(
        (_state(from_kind, from_ch), _state(to_kind, to_ch), float(n))
        for from_kind, from_ch, to_kind, to_ch, n in counts
    )
    total = sum(effects.values())
    return [
        (ch, re, re / total if total > 0 else 0.0)
        for ch, re in sorted(effects.items(), key=lambda kv: _channel_sort_key(kv[0]))
    ]


def markov_channel_weights(
    touches: DataFrame, conversions: DataFrame, params: AttributionParams = DEFAULT_PARAMS
) -> DataFrame:
    """(channel, removal_effect, weight) of the first-order Markov model over all paths.

    Counting is a Spark aggregation (`markov_transition_counts`); only the counts, at most
    (channels + 1) x (channels + 2) rows, are collected and the chain is solved on the driver.
    """
    counts = [
        (r["from_kind"], r["from_channel"], r["to_kind"], r["to_channel"], r["transitions"])
        for r in markov_transition_counts(touches, conversions, params).collect()
    ]
    rows = channel_weights(counts)
    log.info(
        "markov weights: %d channels from %d distinct transitions (channel=%s)",
        len(rows),
        len(counts),
        params.markov_channel,
    )
    return touches.sparkSession.createDataFrame(rows, MARKOV_WEIGHTS_SCHEMA)


def conversion_channels(
    conversions: DataFrame, touches: DataFrame, params: AttributionParams = DEFAULT_PARAMS
) -> DataFrame:
    """The distinct Markov channels of each conversion's eligible touches.

    One row per (conversion, channel) with the conversion's output columns, its key
    (`conversion_key`, as `_conv_key`), window parameters and `channel` (website or
    creative_id, per markov_channel). Conversions without eligible touches have no row.
    With `markov_credits` it restates the markov rows of conversions whose touches did not
    change when the global weights do, without reading their touches again.
    """
    joined = _conversions_with_touches(_conversion_frame(conversions, params), touches)
    return (
        joined.where(F.col("_touch_key").isNotNull())
        .select(
            F.col("_conv_key").alias("conversion_key"),
            *_CONVERSION_COLUMNS,
            "click_window_seconds",
            "view_window_seconds",
            "half_life_seconds",
            F.col(params.markov_channel).alias("channel"),
            utc_date(F.col("conversion_ts")).alias("event_date"),
        )
        .distinct()
    )


def markov_credits(channels: DataFrame, weights: DataFrame, channel: str) -> DataFrame:
    """The markov rows of `attribute_conversions` from `conversion_channels` rows and weights.

    Same credits as the markov model there (RE_k over the sum of RE of the conversion's
    channels, equal shares when all are 0; only credit > 0), same columns
    (ATTRIBUTION_SCHEMA) plus event_date, the UTC conversion date.
    """
    col = F.col
    effects = weights.groupBy(col("channel").alias("_w_channel")).agg(
        F.greatest(F.lit(0.0), F.max(col("removal_effect").cast("double"))).alias("_w_re")
    )
    per_conv = Window.partitionBy("user_id", "campaign_id", "conversion_key")
    re = F.coalesce(col("_w_re"), F.lit(0.0))
    credit = F.when(col("_re_sum") > 0, F.try_divide(col("_re"), col("_re_sum"))).otherwise(
        F.try_divide(F.lit(1.0), col("_channels"))
    )
    return (
        channels.join(F.broadcast(effects), col("channel").eqNullSafe(col("_w_channel")), "left")
        .withColumn("_re", re)
        .withColumns(
            {
                "_re_sum": F.sum("_re").over(per_conv),
                "_channels": F.count(F.lit(1)).over(per_conv).cast("double"),
            }
        )
        .withColumn("credit", credit.cast("double"))
        .where(col("credit") > 0)
        .select(
            *_CONVERSION_COLUMNS,
            F.lit(MARKOV).alias("model"),
            F.lit(None).cast("string").alias("touch_id"),
            F.lit(None).cast("string").alias("touch_type"),
            F.lit(None).cast("timestamp").alias("touch_ts"),
            (col("channel") if channel == "creative_id" else F.lit(None).cast("string")).alias(
                "creative_id"
            ),
            (col("channel") if channel == "website" else F.lit(None).cast("string")).alias(
                "website"
            ),
            "credit",
            (col("credit") * col("revenue").cast("double")).alias("attributed_revenue"),
            "click_window_seconds",
            "view_window_seconds",
            "half_life_seconds",
            utc_date(col("conversion_ts")).alias("event_date"),
        )
    )


# ----------------------------------------------------------------------------- aggregates


def utc_date(ts: Column) -> Column:
    """The UTC calendar date of an instant, whatever the session time zone."""
    return F.date_from_unix_date(F.floor(F.unix_seconds(ts) / 86_400).cast("int"))


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
    imp = _fill_campaign(impressions, creatives).select(
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
