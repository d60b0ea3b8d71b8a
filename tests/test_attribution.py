"""Gold attribution: hand-computed credits per model, Markov weights, aggregates, properties."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from chispa import assert_approx_df_equality, assert_df_equality
from hypothesis import given, settings
from hypothesis import strategies as st
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    BooleanType,
    DataType,
    DateType,
    DecimalType,
    DoubleType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from adlake.gold.aggregates import (
    bid_funnel_daily,
    bid_funnel_for_dates,
    campaign_attribution_daily,
    campaign_daily,
)
from adlake.gold.markov import (
    MarkovState,
    Terminal,
    channel_weights,
    channel_weights_of_columns,
    markov_channel_weights,
    markov_transition_counts,
    removal_effects,
)
from adlake.gold.models import (
    ATTRIBUTION_SCHEMA,
    UnknownModelError,
    _validated_models,
    attribute_conversions,
)
from adlake.gold.touches import (
    TOUCH_COLUMNS,
    build_touches,
    build_touches_then_and_now,
    converting_touches,
    then_and_now,
)
from adlake.settings.gold import (
    ALL_MODELS,
    FIRST_TOUCH,
    LAST_TOUCH,
    MARKOV,
    POSITION_BASED,
    TIME_DECAY,
    AttributionParams,
    AttributionParamsError,
)

STR = StringType()
TS = TimestampType()
DBL = DoubleType()
LONG = LongType()
MONEY = DecimalType(18, 6)
MONEY_SUM = DecimalType(38, 6)
REFERENCE = Path(__file__).parent / "data" / "markov_reference.json"


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=timezone.utc)


T = utc(2024, 1, 10, 12)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
SECOND = timedelta(seconds=1)


def struct(*fields: tuple[str, DataType]) -> StructType:
    return StructType([StructField(name, data_type, True) for name, data_type in fields])


TOUCH_SCHEMA = struct(
    ("touch_id", STR),
    ("touch_type", STR),
    ("touch_ts", TS),
    ("user_id", STR),
    ("campaign_id", STR),
    ("creative_id", STR),
    ("website", STR),
)
CONVERSION_SCHEMA = struct(
    ("event_id", STR),
    ("event_ts", TS),
    ("user_id", STR),
    ("campaign_id", STR),
    ("creative_id", STR),
    ("conversion_type", STR),
    ("revenue", MONEY),
)
WEIGHTS_SCHEMA = struct(("channel", STR), ("removal_effect", DBL), ("weight", DBL))
CREDIT_SCHEMA = struct(
    ("conversion_id", STR),
    ("model", STR),
    ("touch_id", STR),
    ("touch_type", STR),
    ("website", STR),
    ("credit", DBL),
)
CREDIT_COLUMNS = [f.name for f in CREDIT_SCHEMA.fields]
RULE_MODELS = [m for m in ALL_MODELS if m != MARKOV]


def imp(
    touch_id: str, ts: datetime, user: str, campaign: str, website: str | None
) -> tuple[Any, ...]:
    return (touch_id, "impression", ts, user, campaign, "cr1", website)


def click(
    touch_id: str, ts: datetime, user: str, campaign: str, website: str | None
) -> tuple[Any, ...]:
    return (touch_id, "click", ts, user, campaign, "cr1", website)


def conv(
    event_id: str, ts: datetime, user: str, campaign: str, revenue: str | None = "10"
) -> tuple[Any, ...]:
    return (
        event_id,
        ts,
        user,
        campaign,
        "cr1",
        "purchase",
        None if revenue is None else Decimal(revenue),
    )


def same_credit(
    conversion: str, touch: str, touch_type: str, website: str
) -> list[tuple[Any, ...]]:
    """Every rule model gives the one touch credit 1."""
    return [(conversion, m, touch, touch_type, website, 1.0) for m in RULE_MODELS]


def decay_shares(ages_hours: Sequence[float], half_life_hours: float) -> list[float]:
    weights = [2 ** (-age / half_life_hours) for age in ages_hours]
    return [w / sum(weights) for w in weights]


def assert_credits(actual: DataFrame, rows: Sequence[tuple[Any, ...]]) -> None:
    expected = actual.sparkSession.createDataFrame(list(rows), CREDIT_SCHEMA)
    assert_approx_df_equality(
        actual.select(*CREDIT_COLUMNS),
        expected,
        precision=1e-12,
        ignore_row_order=True,
        ignore_nullable=True,
    )


# ------------------------------------------------------------------------------ scenarios

SCENARIO_TOUCHES = [
    # single touch
    imp("i1", T - HOUR, "u1", "k1", "w1"),
    # click and views: i2a is past the 1-day view window, the 2-day-old click is inside 7 days
    imp("i2a", T - 3 * DAY, "u2", "k1", "w2"),
    click("c2a", T - 2 * DAY, "u2", "k1", "w2"),
    imp("i2b", T - 2 * HOUR, "u2", "k1", "w1"),
    imp("i2c", T - HOUR / 2, "u2", "k1", "w1"),
    # ties: impressions before the click at the same instant, then touch_id order
    click("a3", T - HOUR, "u3", "k1", "w1"),
    imp("i3b", T - HOUR, "u3", "k1", "w1"),
    imp("i3a", T - HOUR, "u3", "k1", "w1"),
    imp("i3d", T - HOUR, "u3b", "k1", "w1"),
    imp("i3c", T - HOUR, "u3b", "k1", "w1"),
    # window bounds are inclusive: exactly 7 days (click), 1 day (view) and 0 s are in
    click("c4out", T - 7 * DAY - SECOND, "u4", "k1", "w2"),
    click("c4in", T - 7 * DAY, "u4", "k1", "w2"),
    imp("i4out", T - DAY - SECOND, "u4", "k1", "w1"),
    imp("i4in", T - DAY, "u4", "k1", "w1"),
    imp("i4at", T, "u4", "k1", "w3"),
    imp("i4after", T + SECOND, "u4", "k1", "w1"),
    # one user, two campaigns
    imp("i5", T - HOUR, "u5", "k1", "w4"),
    click("c5", T - 2 * HOUR, "u5", "k2", "w1"),
    # no eligible touch
    imp("i6", T - 2 * DAY, "u6", "k1", "w1"),
]
SCENARIO_CONVERSIONS = [
    conv("v1", T, "u1", "k1"),
    conv("v2", T, "u2", "k1", "30"),
    conv("v3", T, "u3", "k1"),
    conv("v3b", T, "u3b", "k1"),
    conv("v4", T, "u4", "k1"),
    conv("v5a", T, "u5", "k2"),
    conv("v5b", T + 10 * timedelta(minutes=1), "u5", "k1"),
    conv("v6", T, "u6", "k1", None),
]
# Removal effects given, so Markov shares are hand-computable: w3 and w4 have none (RE 0).
SCENARIO_WEIGHTS = [("w1", 0.5, 1 / 3), ("w2", 1.0, 2 / 3)]


@pytest.fixture(scope="module")
def scenario(spark: SparkSession) -> Iterator[DataFrame]:
    """attribute_conversions on all scenarios, computed once and held as local rows."""
    result = attribute_conversions(
        spark.createDataFrame(SCENARIO_CONVERSIONS, CONVERSION_SCHEMA),
        spark.createDataFrame(SCENARIO_TOUCHES, TOUCH_SCHEMA),
        markov_weights=spark.createDataFrame(SCENARIO_WEIGHTS, WEIGHTS_SCHEMA),
    )
    assert [(f.name, f.dataType) for f in result.schema] == [
        (f.name, f.dataType) for f in ATTRIBUTION_SCHEMA
    ]
    yield spark.createDataFrame(result.collect(), ATTRIBUTION_SCHEMA)


def of(df: DataFrame, *conversion_ids: str) -> DataFrame:
    return df.where(F.col("conversion_id").isin(*conversion_ids))


def test_single_touch_gets_everything(scenario: DataFrame) -> None:
    expected = [
        *same_credit("v1", "i1", "impression", "w1"),
        ("v1", "markov", None, None, "w1", 1.0),
    ]
    assert_credits(of(scenario, "v1"), expected)


def test_full_output_row(scenario: DataFrame) -> None:
    week, day = 7 * 86_400, 86_400
    expected = scenario.sparkSession.createDataFrame(
        [
            (
                "v1",
                T,
                "purchase",
                "u1",
                "k1",
                Decimal("10"),
                "linear",
                "i1",
                "impression",
                T - HOUR,
                "cr1",
                "w1",
                1.0,
                10.0,
                week,
                day,
                week,
            ),
            (
                "v6",
                T,
                "purchase",
                "u6",
                "k1",
                None,
                "linear",
                None,
                "unattributed",
                None,
                None,
                None,
                1.0,
                None,
                week,
                day,
                week,
            ),
        ],
        ATTRIBUTION_SCHEMA,
    )
    actual = of(scenario, "v1", "v6").where("model = 'linear'")
    assert_df_equality(actual, expected, ignore_row_order=True)


def test_click_and_views(scenario: DataFrame) -> None:
    # Eligible, in order: c2a (click, 48 h old), i2b (2 h), i2c (0.5 h); i2a is 3 days old.
    decay = decay_shares([48, 2, 0.5], 168)
    expected = [
        ("v2", "last_touch", "c2a", "click", "w2", 1.0),  # the last click beats later views
        ("v2", "first_touch", "c2a", "click", "w2", 1.0),
        *[("v2", "linear", t, k, w, 1 / 3) for t, k, w in _V2_TOUCHES],
        *[
            ("v2", "time_decay", t, k, w, d)
            for (t, k, w), d in zip(_V2_TOUCHES, decay, strict=True)
        ],
        ("v2", "position_based", "c2a", "click", "w2", 0.4),
        ("v2", "position_based", "i2b", "impression", "w1", 1 - 0.4 - 0.4),
        ("v2", "position_based", "i2c", "impression", "w1", 0.4),
        ("v2", "markov", None, None, "w1", 0.5 / 1.5),
        ("v2", "markov", None, None, "w2", 1.0 / 1.5),
    ]
    assert_credits(of(scenario, "v2"), expected)
    revenue = {
        (r["model"], r["touch_id"], r["website"]): r["attributed_revenue"]
        for r in of(scenario, "v2").collect()
    }
    assert revenue[("linear", "i2b", "w1")] == pytest.approx(10.0, abs=1e-9)
    assert revenue[("markov", None, "w2")] == pytest.approx(20.0, abs=1e-9)


_V2_TOUCHES = [("c2a", "click", "w2"), ("i2b", "impression", "w1"), ("i2c", "impression", "w1")]


def test_ties_put_impressions_before_clicks_then_touch_id(scenario: DataFrame) -> None:
    ordered = [("i3a", "impression"), ("i3b", "impression"), ("a3", "click")]
    expected = [
        ("v3", "last_touch", "a3", "click", "w1", 1.0),
        ("v3", "first_touch", "i3a", "impression", "w1", 1.0),
        *[("v3", "linear", t, k, "w1", 1 / 3) for t, k in ordered],
        *[("v3", "time_decay", t, k, "w1", 1 / 3) for t, k in ordered],
        ("v3", "position_based", "i3a", "impression", "w1", 0.4),
        ("v3", "position_based", "i3b", "impression", "w1", 1 - 0.4 - 0.4),
        ("v3", "position_based", "a3", "click", "w1", 0.4),
        ("v3", "markov", None, None, "w1", 1.0),
        # no click: the last view wins; same instant, so touch_id decides
        ("v3b", "last_touch", "i3d", "impression", "w1", 1.0),
        ("v3b", "first_touch", "i3c", "impression", "w1", 1.0),
        *[
            ("v3b", m, t, "impression", "w1", 0.5)
            for m in ("linear", "time_decay")
            for t in ("i3c", "i3d")
        ],
        ("v3b", "position_based", "i3c", "impression", "w1", 0.5),
        ("v3b", "position_based", "i3d", "impression", "w1", 0.5),
        ("v3b", "markov", None, None, "w1", 1.0),
    ]
    assert_credits(of(scenario, "v3", "v3b"), expected)


def test_window_bounds_are_inclusive(scenario: DataFrame) -> None:
    # In: c4in (exactly 7 days), i4in (exactly 1 day), i4at (0 s). Out: 1 s beyond each window
    # and a view 1 s after the conversion.
    touches = [("c4in", "click", "w2"), ("i4in", "impression", "w1"), ("i4at", "impression", "w3")]
    decay = decay_shares([168, 24, 0], 168)
    expected = [
        ("v4", "last_touch", "c4in", "click", "w2", 1.0),
        ("v4", "first_touch", "c4in", "click", "w2", 1.0),
        *[("v4", "linear", t, k, w, 1 / 3) for t, k, w in touches],
        *[("v4", "time_decay", t, k, w, d) for (t, k, w), d in zip(touches, decay, strict=True)],
        ("v4", "position_based", "c4in", "click", "w2", 0.4),
        ("v4", "position_based", "i4in", "impression", "w1", 1 - 0.4 - 0.4),
        ("v4", "position_based", "i4at", "impression", "w3", 0.4),
        # w3 has no removal effect: no credit and no row
        ("v4", "markov", None, None, "w2", 1.0 / 1.5),
        ("v4", "markov", None, None, "w1", 0.5 / 1.5),
    ]
    assert_credits(of(scenario, "v4"), expected)


def test_two_campaigns_of_one_user_stay_apart(scenario: DataFrame) -> None:
    expected = [
        *same_credit("v5a", "c5", "click", "w1"),
        ("v5a", "markov", None, None, "w1", 1.0),
        *same_credit("v5b", "i5", "impression", "w4"),
        # w4 has no weight: a conversion whose channels all have RE 0 shares equally
        ("v5b", "markov", None, None, "w4", 1.0),
    ]
    assert_credits(of(scenario, "v5a", "v5b"), expected)


def test_no_eligible_touch_is_unattributed(scenario: DataFrame) -> None:
    rows = of(scenario, "v6").collect()
    assert sorted(r["model"] for r in rows) == sorted(ALL_MODELS)
    for r in rows:
        assert (r["touch_id"], r["touch_type"], r["touch_ts"], r["website"]) == (
            None,
            "unattributed",
            None,
            None,
        )
        assert (r["credit"], r["revenue"], r["attributed_revenue"]) == (1.0, None, None)


def test_per_campaign_override(spark: SparkSession) -> None:
    override = AttributionParams(
        click_window=DAY,
        view_window=HOUR,
        half_life=DAY,
        first_touch_weight=0.3,
        last_touch_weight=0.5,
    )
    params = AttributionParams(params_by_campaign={"k9": override})
    minute = timedelta(minutes=1)
    touches = [
        click("c9a", T - 2 * DAY, "u9", "k9", "w1"),  # outside k9's 1-day click window
        click("c9b", T - 10 * HOUR, "u9", "k9", "w1"),
        imp("i9x", T - 2 * HOUR, "u9", "k9", "w1"),  # outside k9's 1-hour view window
        imp("i9a", T - 30 * minute, "u9", "k9", "w1"),
        imp("i9b", T - 20 * minute, "u9", "k9", "w1"),
        click("c8a", T - 2 * DAY, "u9", "k1", "w1"),  # k1 keeps the defaults
    ]
    conversions = [conv("v9", T, "u9", "k9"), conv("v8", T, "u9", "k1")]
    result = attribute_conversions(
        spark.createDataFrame(conversions, CONVERSION_SCHEMA),
        spark.createDataFrame(touches, TOUCH_SCHEMA),
        params,
        models=[LAST_TOUCH, TIME_DECAY, POSITION_BASED],
    )
    order = [("c9b", "click"), ("i9a", "impression"), ("i9b", "impression")]
    decay = decay_shares([10, 0.5, 1 / 3], 24)
    expected = [
        ("v9", "last_touch", "c9b", "click", "w1", 1.0),
        *[("v9", "time_decay", t, k, "w1", d) for (t, k), d in zip(order, decay, strict=True)],
        ("v9", "position_based", "c9b", "click", "w1", 0.3),
        ("v9", "position_based", "i9a", "impression", "w1", 1 - 0.3 - 0.5),
        ("v9", "position_based", "i9b", "impression", "w1", 0.5),
        *[
            ("v8", m, "c8a", "click", "w1", 1.0)
            for m in ("last_touch", "time_decay", "position_based")
        ],
    ]
    local = spark.createDataFrame(result.collect(), ATTRIBUTION_SCHEMA)
    assert_credits(local, expected)
    windows = {
        (
            r["conversion_id"],
            r["click_window_seconds"],
            r["view_window_seconds"],
            r["half_life_seconds"],
        )
        for r in local.collect()
    }
    assert windows == {("v9", 86_400, 3_600, 86_400), ("v8", 604_800, 86_400, 604_800)}


def test_params_validation() -> None:
    with pytest.raises(AttributionParamsError, match="click_window"):
        AttributionParams(click_window=-SECOND)
    with pytest.raises(AttributionParamsError, match="view_window"):
        AttributionParams(view_window=timedelta(milliseconds=1500))
    with pytest.raises(AttributionParamsError, match="half_life"):
        AttributionParams(half_life=timedelta(0))
    with pytest.raises(AttributionParamsError, match="first_touch_weight"):
        AttributionParams(first_touch_weight=0.7, last_touch_weight=0.4)
    with pytest.raises(AttributionParamsError, match="markov_channel"):
        AttributionParams(markov_channel="country")
    with pytest.raises(AttributionParamsError, match=r"params_by_campaign\['k1'\]\.markov"):
        AttributionParams(
            params_by_campaign={"k1": AttributionParams(markov_channel="creative_id")}
        )
    with pytest.raises(UnknownModelError, match="u_shaped"):
        _validated_models(["linear", "u_shaped"])
    assert AttributionParams(first_touch_weight=0.6, last_touch_weight=0.4).last_touch_weight == 0.4


# -------------------------------------------------------------------------------- touches


# Silver columns that build_touches reads.
SILVER_IMPRESSION_SCHEMA = struct(
    ("impression_id", STR),
    ("event_ts", TS),
    ("user_id", STR),
    ("creative_id", STR),
    ("campaign_id", STR),
    ("website", STR),
)
SILVER_CLICK_SCHEMA = StructType(CONVERSION_SCHEMA.fields[:-1])  # all but revenue
SILVER_CREATIVE_SCHEMA = struct(("creative_id", STR), ("campaign_id", STR), ("advertiser_id", STR))


def test_build_touches(spark: SparkSession) -> None:
    impressions = spark.createDataFrame(
        [
            ("i1", T - 3 * HOUR, "u1", "cr1", None, "w1"),  # campaign from the creative
            ("i2", T - HOUR, "u1", "cr1", "k1", "w2"),
            ("i3", T, "u1", "crX", None, "w3"),  # unknown creative: campaign stays null
            ("i4", T, "u1", "cr5", None, "w4"),  # creative listed twice: smallest campaign
        ],
        SILVER_IMPRESSION_SCHEMA,
    )
    clicks = spark.createDataFrame(
        [
            ("c1", T - 2 * HOUR, "u1", "k1", "cr1", "click"),  # after i1 only
            ("c2", T - HOUR, "u1", "k1", "cr1", "click"),  # same instant as i2: i2 counts
            ("c3", T, "u1", "k1", "cr2", "click"),  # no impression of cr2
            ("c4", T, "u2", "k1", "cr1", "click"),  # no impression for u2
        ],
        SILVER_CLICK_SCHEMA,
    )
    creatives = spark.createDataFrame(
        [("cr1", "k1", "a1"), ("cr2", "k1", "a1"), ("cr5", "k5", "a5"), ("cr5", "k4", "a5")],
        SILVER_CREATIVE_SCHEMA,
    )
    expected = spark.createDataFrame(
        [
            ("i1", "impression", T - 3 * HOUR, "u1", "k1", "cr1", "w1"),
            ("i2", "impression", T - HOUR, "u1", "k1", "cr1", "w2"),
            ("i3", "impression", T, "u1", None, "crX", "w3"),
            ("i4", "impression", T, "u1", "k4", "cr5", "w4"),
            ("c1", "click", T - 2 * HOUR, "u1", "k1", "cr1", "w1"),
            ("c2", "click", T - HOUR, "u1", "k1", "cr1", "w2"),
            ("c3", "click", T, "u1", "k1", "cr2", None),
            ("c4", "click", T, "u2", "k1", "cr1", None),
        ],
        TOUCH_SCHEMA,
    )
    actual = build_touches(impressions, clicks, creatives)
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_build_touches_serves_clicks_the_last_impression_in_touch_order(
    spark: SparkSession,
) -> None:
    impressions = spark.createDataFrame(
        [
            ("b", T, "u3", "cr1", "k1", "wB"),  # same instant: touch_id b after a
            ("a", T, "u3", "cr1", "k1", "wA"),
            (None, T - HOUR, "u4", "cr1", "k1", "wN"),  # a null touch_id sorts last
            ("z", T - HOUR, "u4", "cr1", "k1", "wZ"),
            ("p", T - 2 * HOUR, "u5", "cr1", "k1", "wP"),
            ("q", T - HOUR, "u5", "cr1", "k1", None),  # no website: the one before serves
            ("n", T - HOUR, None, "cr1", "k1", "wU"),  # null users match each other
            ("r", None, "u6", "cr1", "k1", "wR"),  # no time: before every click
            ("s", T - HOUR, "u7", None, "k1", "wS"),  # no creative: serves no click
            ("t", T + HOUR, "u8", "cr1", "k1", "wT"),  # after the click
            ("d", T - HOUR, "u9", "cr1", "k1", "wD"),
            ("e", T - HOUR, "u9", "cr1", "k1", "wD"),  # same website twice: one match kept
        ],
        SILVER_IMPRESSION_SCHEMA,
    )
    clicks = spark.createDataFrame(
        [
            (f"c{user}", T, user, "k1", creative, "click")
            for user, creative in [
                ("u3", "cr1"), ("u4", "cr1"), ("u5", "cr1"), (None, "cr1"),
                ("u6", "cr1"), ("u7", None), ("u8", "cr1"), ("u9", "cr1"),
            ]
        ]
        + [("cu9", T, "u9", "k1", "cr1", "click")],  # a duplicate click keeps its row
        SILVER_CLICK_SCHEMA,
    )  # fmt: skip
    creatives = spark.createDataFrame(
        [("cr1", "k1", "a1")],
        SILVER_CREATIVE_SCHEMA,
    )
    touches = build_touches(impressions, clicks, creatives).where(F.col("touch_type") == "click")
    served = sorted((r["touch_id"], r["website"]) for r in touches.collect())
    assert served == [
        ("cNone", "wU"),
        ("cu3", "wB"),
        ("cu4", "wN"),
        ("cu5", "wP"),
        ("cu6", "wR"),
        ("cu7", None),
        ("cu8", None),
        ("cu9", "wD"),
        ("cu9", "wD"),
    ]


def test_touches_then_and_now_from_one_build_of_flagged_rows(spark: SparkSession) -> None:
    """Rows flagged as appended: the touches now are all rows, as `build_touches` builds
    them; the touches then are the rows not appended, their clicks served by the impressions
    not appended only."""
    flagged = [StructField("_appended", BooleanType(), False)]
    impressions = spark.createDataFrame(
        [
            ("i1", T - 3 * HOUR, "u1", "cr1", "k1", "w1", False),
            ("i2", T - HOUR, "u1", "cr1", "k1", "w2", True),  # now serves c1 and c2
            ("i3", T - 2 * HOUR, "u2", "cr1", "k1", "w3", False),
        ],
        StructType(SILVER_IMPRESSION_SCHEMA.fields + flagged),
    )
    clicks = spark.createDataFrame(
        [
            ("c1", T, "u1", "k1", "cr1", "click", False),  # then: w1, now: w2
            ("c2", T, "u1", "k1", "cr1", "click", True),  # appended: not a touch then
            ("c3", T, "u2", "k1", "cr1", "click", False),  # w3 then and now
            ("c4", T, "u3", "k1", "cr1", "click", False),  # no impression: no website
        ],
        StructType(SILVER_CLICK_SCHEMA.fields + flagged),
    )
    creatives = spark.createDataFrame([("cr1", "k1", "a1")], SILVER_CREATIVE_SCHEMA)
    then, now = then_and_now(build_touches_then_and_now(impressions, clicks, creatives))
    assert sorted((r["touch_id"], r["website"]) for r in then.collect()) == [
        ("c1", "w1"), ("c3", "w3"), ("c4", None), ("i1", "w1"), ("i3", "w3"),
    ]  # fmt: skip
    assert then.columns == now.columns == list(TOUCH_COLUMNS)
    built = build_touches(impressions.drop("_appended"), clicks.drop("_appended"), creatives)
    assert_df_equality(now, built, ignore_row_order=True, ignore_nullable=True)
    assert sorted((r["touch_id"], r["website"]) for r in now.collect()) == [
        ("c1", "w2"), ("c2", "w2"), ("c3", "w3"), ("c4", None),
        ("i1", "w1"), ("i2", "w2"), ("i3", "w3"),
    ]  # fmt: skip


def test_converting_touches_keeps_the_pairs_that_have_a_conversion(spark: SparkSession) -> None:
    touches = spark.createDataFrame(
        [
            imp("t1", T - HOUR, "u1", "k1", "w1"),  # u1/k1 converts
            click("t2", T - 2 * HOUR, "u1", "k1", None),
            imp("t3", T - HOUR, "u1", "k2", "w1"),  # u1 converts on k1 only
            imp("t4", T - HOUR, "u2", "k1", "w1"),  # u2 has no conversion
            ("t5", "impression", T - HOUR, None, "k1", "cr1", "w1"),  # null user: no pair
            imp("t6", T + HOUR, "u3", "k3", "w1"),  # after the conversion: still its pair
        ],
        TOUCH_SCHEMA,
    )
    conversions = spark.createDataFrame(
        [
            ("v1", T, "u1", "k1", "cr1", "purchase", None),
            ("v2", T, "u1", "k1", "cr1", "purchase", None),  # the pair twice: rows once
            ("v3", T, None, "k1", "cr1", "purchase", None),
            ("v4", T, "u3", "k3", "cr1", "purchase", None),
        ],
        CONVERSION_SCHEMA,
    )
    kept = converting_touches(touches, conversions)
    assert kept.columns == touches.columns
    assert sorted(r["touch_id"] for r in kept.collect()) == ["t1", "t2", "t6"]


# --------------------------------------------------------------------------------- markov


def test_removal_effects_hand_computed() -> None:
    # Paths: a > b -> conversion, a -> null, b -> conversion.
    # P(conv) = 2/3 * 1/2 + 1/3 = 2/3; without a: 1/3 (RE 0.5); without b: 0 (RE 1).
    start, conversion, null = Terminal.START, Terminal.CONVERSION, Terminal.NULL
    counts: list[tuple[MarkovState, MarkovState, float]] = [
        (start, "a", 2),
        (start, "b", 1),
        ("a", "b", 1),
        ("a", null, 1),
        ("b", conversion, 2),
    ]
    assert removal_effects(counts) == pytest.approx({"a": 0.5, "b": 1.0}, abs=1e-12)
    # A cycle: a > b > a -> conversion, b -> null. Q: a->b 1/2, b->a 1/2; r_a = 1/2.
    # c_a = 1/2 + 1/2 * 1/2 * c_a => c_a = 2/3; c_b = 1/2 * c_a = 1/3; start: a 1/2, b 1/2.
    # P(conv) = 1/2; without a: 0 (RE 1); without b: 1/2 * 1/2 = 1/4 (RE 1/2).
    cyclic: list[tuple[MarkovState, MarkovState, float]] = [
        (start, "a", 1),
        (start, "b", 1),
        ("a", "b", 1),
        ("b", "a", 1),
        ("a", conversion, 1),
        ("b", null, 1),
    ]
    assert removal_effects(cyclic) == pytest.approx({"a": 1.0, "b": 0.5}, abs=1e-12)
    assert removal_effects([(start, "a", 1), ("a", null, 1)]) == {"a": 0.0}


def test_removal_effects_sum_repeated_transitions_and_refuse_impossible_ones() -> None:
    start, conversion, null = Terminal.START, Terminal.CONVERSION, Terminal.NULL
    # The first hand-computed chain above with a > null and start > a split over two rows.
    split: list[tuple[MarkovState, MarkovState, float]] = [
        (start, "a", 1),
        (start, "b", 1),
        ("a", "b", 1),
        ("a", null, 1),
        (start, "a", 1),
        ("b", conversion, 2),
    ]
    assert removal_effects(split) == pytest.approx({"a": 0.5, "b": 1.0}, abs=1e-12)
    with pytest.raises(ValueError, match="impossible transition 'null' -> 'channel'"):
        removal_effects([(start, "a", 1), (null, "a", 1)])
    with pytest.raises(ValueError, match="impossible transition 'channel' -> 'start'"):
        removal_effects([("a", start, 1)])


def test_channel_weights_of_columns_equal_the_rows_version() -> None:
    """The Arrow-collected columns (gold's run) and collected rows give the same weights."""
    rows = [
        ("start", None, "channel", "w2", 2),
        ("channel", "w2", "channel", "w1", 2),
        ("channel", "w1", "conversion", None, 2),
        ("start", None, "channel", "w1", 1),
        ("channel", "w1", "channel", None, 1),
        ("channel", None, "null", None, 1),
    ]
    columns = [list(column) for column in zip(*rows, strict=True)]
    # start: w2 2/3, w1 1/3; w1: conversion 2/3, (null channel) 1/3; P(conv) = 2/3.
    # RE(w1) = 1; RE(w2) = (2/3 * 2/3) / (2/3) = 2/3; the null channel never converts.
    weights = channel_weights_of_columns(*columns)
    assert weights == channel_weights(rows)
    assert [ch for ch, _, _ in weights] == [None, "w1", "w2"]
    assert [x for _, re, w in weights for x in (re, w)] == pytest.approx(
        [0.0, 0.0, 1.0, 0.6, 2 / 3, 0.4], abs=1e-12
    )
    assert channel_weights_of_columns([], [], [], [], []) == []
    with pytest.raises(ValueError, match="impossible transition 'start' -> 'exit'"):
        channel_weights_of_columns(["start"], [None], ["exit"], [None], [1])


def test_markov_paths_and_weights(spark: SparkSession) -> None:
    minute = timedelta(minutes=1)
    touches = spark.createDataFrame(
        [
            imp("m1a", T - 3 * DAY, "m1", "k1", "w1"),  # eligible for nothing: null path
            imp("m1b", T - 2 * HOUR, "m1", "k1", "w2"),
            imp("m1c", T - HOUR, "m1", "k1", "w2"),  # repeat of w2: collapsed
            click("m1d", T - 30 * minute, "m1", "k1", "w1"),
            imp("m1e", T + HOUR, "m1", "k1", "w3"),  # after both conversions: null path
            imp("m1k2", T - HOUR, "m1", "k2", None),  # other campaign, null channel
        ],
        TOUCH_SCHEMA,
    )
    conversions = spark.createDataFrame(
        [
            conv("mv1", T, "m1", "k1"),
            conv("mv2", T + 10 * minute, "m1", "k1"),  # shares m1b..m1d with mv1
            conv("mv3", T, "m2", "k1"),  # no touches: not a path
        ],
        CONVERSION_SCHEMA,
    )
    counts = {tuple(r) for r in markov_transition_counts(touches, conversions).collect()}
    assert counts == {
        ("start", None, "channel", "w2", 2),
        ("channel", "w2", "channel", "w1", 2),
        ("channel", "w1", "conversion", None, 2),
        ("start", None, "channel", "w1", 1),
        ("channel", "w1", "channel", "w3", 1),
        ("channel", "w3", "null", None, 1),
        ("start", None, "channel", None, 1),
        ("channel", None, "null", None, 1),
    }
    # start: w2 1/2, w1 1/4, (null channel) 1/4; w1: conversion 2/3, w3 1/3.
    # P(conv) = 1/2 * 2/3 + 1/4 * 2/3 = 1/2; RE(w1) = 1, RE(w2) = (1/2 * 2/3) / (1/2) = 2/3.
    weights = channel_weights(counts)
    assert [ch for ch, _, _ in weights] == [None, "w1", "w2", "w3"]
    assert [x for _, re, w in weights for x in (re, w)] == pytest.approx(
        [0.0, 0.0, 1.0, 0.6, 2 / 3, 0.4, 0.0, 0.0], abs=1e-12
    )
    # Without precomputed weights attribute_conversions fits the model itself.
    credits = attribute_conversions(conversions, touches, models=[MARKOV])
    assert_credits(
        credits,
        [
            ("mv1", "markov", None, None, "w1", 0.6),
            ("mv1", "markov", None, None, "w2", 0.4),
            ("mv2", "markov", None, None, "w1", 0.6),
            ("mv2", "markov", None, None, "w2", 0.4),
            ("mv3", "markov", None, "unattributed", None, 1.0),
        ],
    )


def _conversion_probability(
    counts: dict[tuple[Any, Any], int], removed: str | None = None
) -> float:
    """P(conversion) by fixed-point iteration, `removed` sending its inflow to null."""
    start, conversion = Terminal.START, Terminal.CONVERSION
    totals: dict[Any, int] = {}
    for (source, _), n in counts.items():
        totals[source] = totals.get(source, 0) + n
    prob: dict[Any, float] = {}
    for _ in range(5_000):
        nxt = {
            state: sum(
                n / totals[state] * (1.0 if target is conversion else prob.get(target, 0.0))
                for (source, target), n in counts.items()
                if source == state and target != removed
            )
            for state in totals
        }
        if all(abs(nxt[k] - prob.get(k, 0.0)) < 1e-14 for k in nxt):
            break
        prob = nxt
    return prob.get(start, 0.0)


_path = st.tuples(
    st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=1, max_size=5), st.booleans()
)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(paths=st.lists(_path, min_size=1, max_size=8))
def test_removal_effects_equal_brute_force_removal(paths: list[tuple[list[str], bool]]) -> None:
    """RE_k = 1 - P(conv without k) / P(conv), removal solved independently by iteration."""
    counts: dict[tuple[Any, Any], int] = {}
    for channels, converted in paths:
        end = Terminal.CONVERSION if converted else Terminal.NULL
        states = [Terminal.START, *channels, end]
        for source, target in pairwise(states):
            if source != target:  # consecutive repeats collapse
                counts[(source, target)] = counts.get((source, target), 0) + 1
    effects = removal_effects((s, t, n) for (s, t), n in counts.items())
    assert set(effects) == {ch for channels, _ in paths for ch in channels}
    p_conv = _conversion_probability(counts)
    for channel, effect in effects.items():
        expected = 1 - _conversion_probability(counts, channel) / p_conv if p_conv else 0.0
        assert effect == pytest.approx(expected, abs=1e-9), channel


def _reference() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(REFERENCE.read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="module")
def reference_weights(spark: SparkSession) -> dict[str | None, tuple[float, float]]:
    """markov_channel_weights on the reference paths: one user per path occurrence."""
    touches: list[tuple[Any, ...]] = []
    conversions: list[tuple[Any, ...]] = []
    for p, path in enumerate(_reference()["paths"]):
        channels = path["channels"]
        for n in range(path["conversions"] + path["nulls"]):
            user = f"p{p}n{n}"
            for i, channel in enumerate(channels):
                at = T - (len(channels) - i) * timedelta(minutes=10)
                touches.append(imp(f"{user}t{i}", at, user, "k1", channel))
            if n < path["conversions"]:
                conversions.append(conv(f"{user}v", T, user, "k1"))
    weights = markov_channel_weights(
        spark.createDataFrame(touches, TOUCH_SCHEMA),
        spark.createDataFrame(conversions, CONVERSION_SCHEMA),
    )
    return {r["channel"]: (r["removal_effect"], r["weight"]) for r in weights.collect()}


def _assert_matches_channel_attribution(
    ours: dict[str | None, tuple[float, float]],
    removal: dict[str, float],
    total_conversions: dict[str, float],
    conversions: int,
) -> None:
    assert set(ours) == set(removal) == set(total_conversions)
    for channel, (re, weight) in ours.items():
        assert channel is not None
        assert re == pytest.approx(removal[channel], rel=0.01), channel
        assert weight * conversions == pytest.approx(total_conversions[channel], rel=0.01), channel


def test_markov_matches_channel_attribution_reference(
    reference_weights: dict[str | None, tuple[float, float]],
) -> None:
    ref = _reference()
    conversions = sum(p["conversions"] for p in ref["paths"])
    _assert_matches_channel_attribution(
        reference_weights, ref["removal_effects"], ref["total_conversions"], conversions
    )


def test_markov_matches_channel_attribution_live(
    reference_weights: dict[str | None, tuple[float, float]],
) -> None:
    """Same check against the package itself when it is installed (not a project dependency)."""
    ca = pytest.importorskip("ChannelAttribution", exc_type=ImportError)
    pd = pytest.importorskip("pandas")
    paths = _reference()["paths"]
    data = pd.DataFrame(
        {
            "path": [" > ".join(p["channels"]) for p in paths],
            "total_conversions": [p["conversions"] for p in paths],
            "total_null": [p["nulls"] for p in paths],
        }
    )
    res = ca.markov_model(
        data,
        "path",
        "total_conversions",
        var_null="total_null",
        order=1,
        out_more=True,
        nsim_start=1e7,
        max_step=1000,
        nfold=1,
        seed=42,
        verbose=False,
        flg_pro=False,
    )
    removal = dict(
        zip(
            res["removal_effects"]["channel_name"],
            res["removal_effects"]["removal_effect"],
            strict=True,
        )
    )
    totals = dict(
        zip(res["result"]["channel_name"], res["result"]["total_conversions"], strict=True)
    )
    conversions = sum(p["conversions"] for p in paths)
    _assert_matches_channel_attribution(reference_weights, removal, totals, conversions)


# ------------------------------------------------------------------------------- property

EVENTS_SCHEMA = struct(
    ("kind", STR),
    ("id", STR),
    ("ts", TS),
    ("user_id", STR),
    ("campaign_id", STR),
    ("website", STR),
    ("revenue", MONEY),
)
_touch = st.tuples(
    st.sampled_from(["impression", "click"]),
    st.integers(min_value=-9 * 24, max_value=24).map(lambda h: T + h * HOUR),
    st.sampled_from(["u1", "u2", "u3"]),
    st.sampled_from(["k1", "k2"]),
    st.sampled_from(["w1", "w2", "w3", None]),
)
_conversion = st.tuples(
    st.integers(min_value=0, max_value=48).map(lambda h: T + h * HOUR),
    st.sampled_from(["u1", "u2", "u3"]),
    st.sampled_from(["k1", "k2"]),
    st.sampled_from([None, Decimal("12.5")]),
)


@pytest.fixture(scope="module")
def property_weights(spark: SparkSession) -> DataFrame:
    """Fixed Markov weights (w3 and the null channel have none) so each example is one job."""
    return spark.createDataFrame([("w1", 0.5, 0.25), ("w2", 1.5, 0.75)], WEIGHTS_SCHEMA)


@settings(
    # Each example is one Spark job (~2-4 s on a loaded 2-core machine), so few examples,
    # each holding several users and campaigns: independent random paths side by side.
    max_examples=10,
    deadline=None,
    derandomize=True,
)
@given(
    touches=st.lists(_touch, min_size=0, max_size=12),
    conversions=st.lists(_conversion, min_size=1, max_size=5),
)
def test_credits_are_a_distribution(
    spark: SparkSession,
    property_weights: DataFrame,
    touches: list[tuple[Any, ...]],
    conversions: list[tuple[Any, ...]],
) -> None:
    rows = [
        (kind, f"t{i}", ts, user, campaign, website, None)
        for i, (kind, ts, user, campaign, website) in enumerate(touches)
    ] + [
        ("conversion", f"v{i}", ts, user, campaign, None, revenue)
        for i, (ts, user, campaign, revenue) in enumerate(conversions)
    ]
    events = spark.createDataFrame(rows, EVENTS_SCHEMA)
    touch_df = events.where("kind <> 'conversion'").select(
        F.col("id").alias("touch_id"),
        F.col("kind").alias("touch_type"),
        F.col("ts").alias("touch_ts"),
        "user_id",
        "campaign_id",
        F.lit("cr1").alias("creative_id"),
        "website",
    )
    conversion_df = events.where("kind = 'conversion'").select(
        F.col("id").alias("event_id"),
        F.col("ts").alias("event_ts"),
        "user_id",
        "campaign_id",
        F.lit("cr1").alias("creative_id"),
        F.lit("purchase").alias("conversion_type"),
        "revenue",
    )
    summary = (
        attribute_conversions(conversion_df, touch_df, markov_weights=property_weights)
        .groupBy("conversion_id", "model")
        .agg(
            F.sum("credit").alias("total"),
            F.min("credit").alias("lowest"),
            F.count(F.when(F.col("touch_type") == "unattributed", 1)).alias("unattributed"),
            F.count(F.lit(1)).alias("n"),
        )
        .collect()
    )
    assert {(r["conversion_id"], r["model"]) for r in summary} == {
        (f"v{i}", m) for i in range(len(conversions)) for m in ALL_MODELS
    }
    for r in summary:
        assert abs(r["total"] - 1.0) <= 1e-9, r
        assert r["lowest"] >= 0.0, r
        assert r["unattributed"] == 0 or r["n"] == 1, r
        if r["model"] in (LAST_TOUCH, FIRST_TOUCH):
            assert r["n"] == 1, r


# ----------------------------------------------------------------------------- aggregates

D1, D2 = date(2024, 1, 10), date(2024, 1, 11)


def test_campaign_daily_with_zero_denominators(spark: SparkSession) -> None:
    impressions = spark.createDataFrame(
        [
            ("i1", utc(2024, 1, 10, 8), "u1", "cr1", "k1", Decimal("0.002")),
            ("i2", utc(2024, 1, 10, 23, 59, 59), "u2", "cr1", "k1", Decimal("0.003")),
            ("i3", utc(2024, 1, 10, 9), "u1", "cr1", None, None),  # k1 via creative, no cost
        ],
        struct(
            ("impression_id", STR),
            ("event_ts", TS),
            ("user_id", STR),
            ("creative_id", STR),
            ("campaign_id", STR),
            ("cost", MONEY),
        ),
    )
    clicks = spark.createDataFrame(
        [
            ("c1", utc(2024, 1, 10, 9), "u1", "k1", "cr1"),
            ("c2", utc(2024, 1, 11, 0, 0, 0), "u3", "k1", "cr1"),  # next UTC day
        ],
        struct(
            ("event_id", STR),
            ("event_ts", TS),
            ("user_id", STR),
            ("campaign_id", STR),
            ("creative_id", STR),
        ),
    )
    conversions = spark.createDataFrame(
        [
            ("v1", utc(2024, 1, 10, 10), "u1", "k1", Decimal("1.5")),
            ("v2", utc(2024, 1, 10, 11), "u2", "k1", None),
            ("v3", utc(2024, 1, 10, 12), "u4", "k2", Decimal("2")),  # k2: no impressions/clicks
        ],
        struct(
            ("event_id", STR),
            ("event_ts", TS),
            ("user_id", STR),
            ("campaign_id", STR),
            ("revenue", MONEY),
        ),
    )
    creatives = spark.createDataFrame(
        [("cr1", "k1", "a1"), ("cr2", "k2", "a2")],
        struct(("creative_id", STR), ("campaign_id", STR), ("advertiser_id", STR)),
    )
    schema = struct(
        ("campaign_id", STR),
        ("advertiser_id", STR),
        ("event_date", DateType()),
        ("impressions", LONG),
        ("clicks", LONG),
        ("conversions", LONG),
        ("revenue", MONEY_SUM),
        ("spend", MONEY_SUM),
        ("unique_users", LONG),
        ("ctr", DBL),
        ("cvr", DBL),
        ("cpm", DBL),
        ("cpc", DBL),
        ("cpa", DBL),
        ("roas", DBL),
    )
    d = Decimal
    expected = spark.createDataFrame(
        [
            (
                "k1",
                "a1",
                D1,
                3,
                1,
                2,
                d("1.5"),
                d("0.005"),
                2,
                1 / 3,
                2.0,
                5 / 3,
                0.005,
                0.0025,
                300.0,
            ),
            ("k1", "a1", D2, 0, 1, 0, d("0"), d("0"), 1, None, 0.0, None, 0.0, None, None),
            ("k2", "a2", D1, 0, 0, 1, d("2"), d("0"), 1, None, None, None, None, 0.0, None),
        ],
        schema,
    )
    actual = campaign_daily(impressions, clicks, conversions, creatives)
    assert_approx_df_equality(
        actual, expected, precision=1e-12, ignore_row_order=True, ignore_nullable=True
    )


def test_campaign_attribution_daily(spark: SparkSession) -> None:
    def row(
        conversion: str,
        ts: datetime,
        model: str,
        touch_type: str | None,
        credit: float,
        revenue: str | None,
    ) -> tuple[Any, ...]:
        money = None if revenue is None else Decimal(revenue)
        attributed = None if money is None else credit * float(money)
        return (
            conversion,
            ts,
            "purchase",
            "u1",
            "k1",
            money,
            model,
            None,
            touch_type,
            None,
            None,
            None,
            credit,
            attributed,
            604_800,
            86_400,
            604_800,
        )

    late = utc(2024, 1, 10, 23, 30)
    attribution = spark.createDataFrame(
        [
            row("v1", late, "linear", "impression", 0.5, "10"),
            row("v1", late, "linear", "click", 0.5, "10"),
            row("v2", T, "linear", "unattributed", 1.0, "4"),
            row("v3", T, "markov", None, 1.0, None),  # a channel row, no revenue
            row("v4", utc(2024, 1, 11), "linear", "unattributed", 1.0, None),
        ],
        ATTRIBUTION_SCHEMA,
    )
    expected = spark.createDataFrame(
        [
            ("k1", D1, "linear", 1.0, 10.0, 1),
            ("k1", D1, "markov", 1.0, 0.0, 0),
            ("k1", D2, "linear", 0.0, 0.0, 1),
        ],
        struct(
            ("campaign_id", STR),
            ("event_date", DateType()),
            ("model", STR),
            ("attributed_conversions", DBL),
            ("attributed_revenue", DBL),
            ("unattributed_conversions", LONG),
        ),
    )
    actual = campaign_attribution_daily(attribution)
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_bid_funnel_daily(spark: SparkSession) -> None:
    def bid(
        request: str, auction: str, country: str, website: str | None, amount: str
    ) -> tuple[Any, ...]:
        return (request, auction, T, D1, "u1", country, Decimal(amount), "cr1", "k1", website)

    bid_requests = spark.createDataFrame(
        [
            bid("b1", "a1", "US", "w1", "2"),
            bid("b2", "a2", "US", "w1", "4"),
            bid("b3", "a3", "US", "w1", "3"),
            bid("b4", "a3", "US", "w1", "1"),  # a second bid in auction a3
            bid("b5", "a5", "DE", None, "1"),
            bid("b6", "a6", "FR", "w2", "5"),  # lost: win rate 0
        ],
        struct(
            ("request_id", STR),
            ("auction_id", STR),
            ("event_ts", TS),
            ("event_date", DateType()),
            ("user_id", STR),
            ("country", STR),
            ("bid_amount", MONEY),
            ("creative_id", STR),
            ("campaign_id", STR),
            ("website", STR),
        ),
    )
    impressions = spark.createDataFrame(
        [
            ("i1", "a1", Decimal("0.002")),
            ("i3", "a3", Decimal("0.003")),  # one impression, counted once
            ("i5", "a5", Decimal("0.001")),
            ("i9", "a9", Decimal("0.1")),  # no bid request of ours
            ("i0", None, Decimal("0.1")),
        ],
        struct(("impression_id", STR), ("auction_id", STR), ("cost", MONEY)),
    )
    expected = spark.createDataFrame(
        [
            (D1, "US", "w1", 4, 2, 0.5, 2.5, Decimal("0.005")),
            (D1, "DE", None, 1, 1, 1.0, 1.0, Decimal("0.001")),
            (D1, "FR", "w2", 1, 0, 0.0, 5.0, Decimal("0")),
        ],
        struct(
            ("event_date", DateType()),
            ("country", STR),
            ("website", STR),
            ("bid_requests", LONG),
            ("won_impressions", LONG),
            ("win_rate", DBL),
            ("avg_bid_cpm", DBL),
            ("spend", MONEY_SUM),
        ),
    )
    actual = bid_funnel_daily(bid_requests, impressions)
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_bid_funnel_counts_each_won_auction_once_across_groups(spark: SparkSession) -> None:
    """An auction with bid requests in two groups is won in one: its highest bid's, then the
    earliest, then the smallest request_id."""

    def bid(
        request: str, auction: str, ts: datetime, country: str, website: str, amount: str
    ) -> tuple[Any, ...]:
        return (request, auction, ts, D1, "u1", country, Decimal(amount), "cr1", "k1", website)

    bid_requests = spark.createDataFrame(
        [
            bid("r1", "a1", T, "US", "w1", "2"),
            bid("r2", "a1", T + SECOND, "DE", "w3", "3"),  # a1's highest bid: a1 won here
            bid("r3", "a2", T, "US", "w1", "1"),  # equal bid and time: smaller request_id
            bid("r4", "a2", T, "FR", "w2", "1"),
            bid("r5", "a3", T + SECOND, "US", "w1", "4"),
            bid("r6", "a3", T, "FR", "w2", "4"),  # equal bid, earlier: a3 won here
        ],
        struct(
            ("request_id", STR),
            ("auction_id", STR),
            ("event_ts", TS),
            ("event_date", DateType()),
            ("user_id", STR),
            ("country", STR),
            ("bid_amount", MONEY),
            ("creative_id", STR),
            ("campaign_id", STR),
            ("website", STR),
        ),
    )
    impressions = spark.createDataFrame(
        [
            ("i1", "a1", Decimal("0.5")),
            ("i2", "a2", Decimal("0.25")),
            ("i3", "a3", Decimal("0.125")),
        ],
        struct(("impression_id", STR), ("auction_id", STR), ("cost", MONEY)),
    )
    expected = spark.createDataFrame(
        [
            (D1, "US", "w1", 3, 1, 1 / 3, 2.3333333333, Decimal("0.25")),  # decimal mean, 10 places
            (D1, "DE", "w3", 1, 1, 1.0, 3.0, Decimal("0.5")),
            (D1, "FR", "w2", 2, 1, 0.5, 2.5, Decimal("0.125")),
        ],
        struct(
            ("event_date", DateType()),
            ("country", STR),
            ("website", STR),
            ("bid_requests", LONG),
            ("won_impressions", LONG),
            ("win_rate", DBL),
            ("avg_bid_cpm", DBL),
            ("spend", MONEY_SUM),
        ),
    )
    actual = bid_funnel_daily(bid_requests, impressions)
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_bid_funnel_for_dates_equals_the_full_funnel_on_those_dates(spark: SparkSession) -> None:
    """An auction whose bid requests span two dates is ranked over all of them, whichever
    dates are recomputed; other dates' rows are not produced."""
    d0 = D1 - timedelta(days=1)

    def bid(request: str, auction: str | None, day: date, amount: str) -> tuple[Any, ...]:
        ts = datetime(day.year, day.month, day.day, 23, 59, tzinfo=timezone.utc)
        return (request, auction, ts, day, "u1", "US", Decimal(amount), "cr1", "k1", "w1")

    bid_requests = spark.createDataFrame(
        [
            bid("r1", "a1", D1, "2"),
            bid("r2", "a1", D2, "3"),  # a1 is won on D2, though it started on D1
            bid("r3", "a2", D1, "1"),
            bid("r4", None, D1, "1"),  # no auction: a request all the same
            bid("r5", "a3", d0, "5"),
            bid("r6", "a4", D2, "1"),
        ],
        struct(
            ("request_id", STR), ("auction_id", STR), ("event_ts", TS),
            ("event_date", DateType()), ("user_id", STR), ("country", STR),
            ("bid_amount", MONEY), ("creative_id", STR), ("campaign_id", STR), ("website", STR),
        ),
    )  # fmt: skip
    impressions = spark.createDataFrame(
        [("i1", "a1", Decimal("0.5")), ("i2", "a2", Decimal("0.25")), ("i3", "a3", Decimal("1"))],
        struct(("impression_id", STR), ("auction_id", STR), ("cost", MONEY)),
    )
    full = bid_funnel_daily(bid_requests, impressions)
    for dates in ([D1], [D2], [D1, D2], [d0]):
        actual = bid_funnel_for_dates(bid_requests, impressions, dates)
        expected = full.where(F.col("event_date").isin(dates))
        assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)
    d1 = bid_funnel_for_dates(bid_requests, impressions, [D1]).collect()
    assert [(r["bid_requests"], r["won_impressions"], r["spend"]) for r in d1] == [
        (3, 1, Decimal("0.25"))
    ]
