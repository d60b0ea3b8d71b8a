"""Gold Markov attribution: first-order chain over channels, removal effects, credits.

Paths, transitions and the removal effect are specified in docs/gold.md. Counting is a
Spark aggregation; the small chain is solved on the driver with numpy.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from enum import Enum
from typing import Any

import numpy as np
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, StringType, StructField, StructType

from adlake.gold.touches import (
    CONVERSION_COLUMNS,
    conversion_frame,
    conversions_with_touches,
    eligible,
    touch_frame,
    touch_order,
    utc_date,
)
from adlake.settings.gold import DEFAULT_PARAMS, MARKOV, AttributionParams

log = logging.getLogger(__name__)

MARKOV_WEIGHTS_SCHEMA = StructType(
    [
        StructField("channel", StringType(), True),
        StructField("removal_effect", DoubleType(), False),
        StructField("weight", DoubleType(), False),
    ]
)


class MarkovSolveError(ArithmeticError):
    """The transition matrix has no absorbing exit (cannot come from real paths)."""


class Terminal(Enum):
    """The non-channel states of the Markov chain."""

    START = "(start)"
    CONVERSION = "(conversion)"
    NULL = "(null)"


# A state is a terminal or a channel; a channel is a string, or None for touches whose
# channel value is null.
MarkovState = Terminal | str | None

_KIND_START = "start"
_KIND_CHANNEL = "channel"
_KIND_CONVERSION = "conversion"
_KIND_NULL = "null"
_TERMINAL_KINDS = {
    Terminal.START: _KIND_START,
    Terminal.CONVERSION: _KIND_CONVERSION,
    Terminal.NULL: _KIND_NULL,
}


def markov_transition_counts(
    touches: DataFrame, conversions: DataFrame, params: AttributionParams = DEFAULT_PARAMS
) -> DataFrame:
    """Transition counts of all paths (gold/markov_transitions); paths as in docs/gold.md.

    from_kind is 'start' or 'channel', to_kind 'channel', 'conversion' or 'null'; the
    channel columns are set only for kind 'channel' (and may then be null: a null channel).
    One join from touches to the conversions they are eligible for gives both kinds of
    path: matched rows belong to the conversion's path, unmatched touches to the null path
    of their (user_id, campaign_id).
    """
    c = F.col
    conv = conversion_frame(conversions, params)
    touch_rows = touch_frame(touches, for_join=True).join(conv, eligible(), "left")
    matched = c("_conv_key").isNotNull()
    paths = touch_rows.select(
        # A path is a conversion's key (its user and campaign are the touches'), or, for
        # touches eligible for none (key null), their (user_id, campaign_id). The user
        # leads the sort: it tells most rows apart in one comparison.
        "_t_user_id",
        "_t_campaign_id",
        "_conv_key",
        F.when(matched, F.lit(_KIND_CONVERSION)).otherwise(F.lit(_KIND_NULL)).alias("_end"),
        "touch_ts",
        "touch_type",
        "touch_id",
        "creative_id",
        "website",
        c(params.markov_channel).alias("_channel"),
    )
    ordered = Window.partitionBy("_t_user_id", "_t_campaign_id", "_conv_key").orderBy(
        *touch_order()
    )
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

    RE_k = P(k visited | conversion) = h(start, k) * c(k) / c(start) (see docs/gold.md);
    every channel that appears as a source or target gets an entry; all 0 if nothing converts.
    """

    def kind(state: MarkovState) -> tuple[str, str | None]:
        return (
            (_TERMINAL_KINDS[state], None)
            if isinstance(state, Terminal)
            else (_KIND_CHANNEL, state)
        )

    rows = [(*kind(source), *kind(target), float(n)) for source, target, n in transitions]
    return _effects(*_columns(rows))


def _columns(rows: Sequence[tuple[Any, ...]], width: int = 5) -> list[list[Any]]:
    """Rows of `width` values as `width` columns (empty columns for no rows)."""
    return (
        [list(column) for column in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]
    )


def _effects(
    from_kind: Sequence[str],
    from_channel: Sequence[str | None],
    to_kind: Sequence[str],
    to_channel: Sequence[str | None],
    count: Sequence[float],
) -> dict[str | None, float]:
    """`removal_effects` of transitions given as columns (`markov_transition_counts`'s)."""
    fk, tk = np.asarray(from_kind, dtype=object), np.asarray(to_kind, dtype=object)
    impossible = ~np.isin(fk, [_KIND_START, _KIND_CHANNEL]) | ~np.isin(
        tk, [_KIND_CHANNEL, _KIND_CONVERSION, _KIND_NULL]
    )
    if impossible.any():
        at = int(np.argmax(impossible))
        raise ValueError(f"impossible transition {from_kind[at]!r} -> {to_kind[at]!r}")
    from_is, to_is = fk == _KIND_CHANNEL, tk == _KIND_CHANNEL
    channels = sorted(
        {ch for ch, is_channel in zip(from_channel, from_is, strict=True) if is_channel}
        | {ch for ch, is_channel in zip(to_channel, to_is, strict=True) if is_channel},
        key=_channel_sort_key,
    )
    n = len(channels)
    index = {ch: i for i, ch in enumerate(channels)}

    def indexes(channel: Sequence[str | None], is_channel: np.ndarray, other: Any) -> np.ndarray:
        at = [index[ch] if yes else -1 for ch, yes in zip(channel, is_channel, strict=True)]
        return np.where(is_channel, np.array(at, dtype=np.int64), other)

    # (start) is the count matrix's row n; (conversion), (null) its columns n, n + 1.
    source = indexes(from_channel, from_is, n)
    target = indexes(to_channel, to_is, np.where(tk == _KIND_CONVERSION, n, n + 1))
    effects = _solve(source, target, np.asarray(count, dtype=np.float64), n)
    return {ch: float(effects[k]) for k, ch in enumerate(channels)}


def _solve(source: np.ndarray, target: np.ndarray, count: np.ndarray, n: int) -> np.ndarray:
    """Removal effects of channels 0..n-1 from transitions source -> target (counts).

    Sources are channels or n, (start); targets channels, n (conversion) or n + 1 (null).
    Counts are summed per (source, target) before each is divided by its source's total,
    so whole counts give probabilities independent of the rows' order.
    """
    if n == 0:
        return np.zeros(0)
    counts = np.zeros((n + 1, n + 2))
    np.add.at(counts, (source, target), count)
    totals = counts.sum(axis=1, keepdims=True)
    probs = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    q, r = probs[:n, :n], probs[:n, n]
    q_start, r_start = probs[n, :n], float(probs[n, n])
    fundamental = _fundamental(q)
    conv_prob = fundamental @ r  # c(k): conversion probability starting in channel k
    start_visits = q_start @ fundamental  # expected visits to k from (start)
    p_conversion = r_start + float(q_start @ conv_prob)
    if p_conversion <= 0:
        return np.zeros(n)
    hit = start_visits / np.diag(fundamental)
    return np.asarray(np.clip(hit * conv_prob / p_conversion, 0.0, 1.0))


def channel_weights(
    counts: Iterable[tuple[str, str | None, str, str | None, int]],
) -> list[tuple[str | None, float, float]]:
    """(channel, removal_effect, weight) rows from collected `markov_transition_counts` rows.

    weight = removal_effect / sum of removal effects (0 for all when nothing converts);
    rows sorted by channel, the null channel first.
    """
    rows = list(counts)
    return channel_weights_of_columns(*_columns(rows))


def channel_weights_of_columns(
    from_kind: Sequence[str],
    from_channel: Sequence[str | None],
    to_kind: Sequence[str],
    to_channel: Sequence[str | None],
    transitions: Sequence[float],
) -> list[tuple[str | None, float, float]]:
    """`channel_weights` of counts given column by column (as an Arrow collect gives them:
    no Python row object per transition, ~170k at 1M impressions)."""
    effects = _effects(from_kind, from_channel, to_kind, to_channel, transitions)
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
    joined = conversions_with_touches(conversion_frame(conversions, params), touches)
    return (
        joined.where(F.col("_touch_key").isNotNull())
        .select(
            F.col("_conv_key").alias("conversion_key"),
            *CONVERSION_COLUMNS,
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
            *CONVERSION_COLUMNS,
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
