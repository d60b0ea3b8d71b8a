"""Gold attribution models: per-conversion credits under last/first touch, linear,
time_decay, position_based and markov (`attribute_conversions`).

Specification (eligibility, output grain, Markov credits): docs/gold.md.
"""

from __future__ import annotations

from collections.abc import Sequence

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

from adlake.gold.markov import markov_channel_weights
from adlake.gold.touches import (
    CLICK,
    CONVERSION_COLUMNS,
    MICROS,
    UNATTRIBUTED,
    conversion_frame,
    conversions_with_touches,
    touch_order,
)
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

# The output of `attribute_conversions`; gold/conversion_attribution adds event_date.
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


class UnknownModelError(ValueError):
    """`models` names a model outside ALL_MODELS."""


def _validated_models(models: Sequence[str]) -> tuple[str, ...]:
    unknown = [m for m in models if m not in ALL_MODELS]
    if unknown or not models:
        raise UnknownModelError(
            f"models must be a non-empty subset of {', '.join(ALL_MODELS)}; got {list(models)}"
        )
    return tuple(dict.fromkeys(models))


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
    ordered = per_conv.orderBy(*touch_order())
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
        by_channel = per_conv.orderBy(col(channel).asc_nulls_first(), *touch_order())
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
        / (col("half_life_seconds").cast("double") * MICROS),
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
        *CONVERSION_COLUMNS,
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
    """Credits of every conversion under each model (`ATTRIBUTION_SCHEMA`, docs/gold.md).

    `conversions`: silver conversions (event_id, event_ts, user_id, campaign_id,
    conversion_type, revenue); `touches`: `build_touches` output; `markov_weights`: a
    `markov_channel_weights` result (channel, removal_effect). When the markov model is
    requested without weights they are computed here, which runs one Spark job.
    """
    chosen = _validated_models(models)
    channel = params.markov_channel
    joined = conversions_with_touches(conversion_frame(conversions, params), touches)
    if MARKOV in chosen:
        weights = (
            markov_weights
            if markov_weights is not None
            else markov_channel_weights(touches, conversions, params)
        )
        joined = _with_removal_effects(joined, weights, channel)
    return _credited(joined, chosen, channel)
