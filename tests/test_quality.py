"""Data-quality checks on a tiny hand-built lakehouse: exact observed values and statuses."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    DateType,
    DecimalType,
    DoubleType,
    LongType,
    StringType,
    StructField,
    StructType,
)

from adlake import storage
from adlake.config import AppConfig, ConfigError
from adlake.ops.summary import closing_reports
from adlake.quality.checks import EVENT_PROFILE, CheckResult, Measure
from adlake.quality.grading import (
    evaluated_period,
    event_freshness_limits,
    grade_freshness,
    grade_measures,
    grade_ratio,
    grade_volume,
    period_label,
)
from adlake.quality.run import format_results, run_checks, write_results
from adlake.settings.quality import Limits, QualitySettings, parse_quality
from adlake.tables import (
    BATCH_AUDIT,
    DQ_RESULTS,
    GOLD_CAMPAIGN_ATTRIBUTION_DAILY,
    GOLD_CAMPAIGN_DAILY,
    INGEST_FILE_LOG,
    SILVER_BID_REQUESTS,
    SILVER_CLICKS,
    SILVER_CONVERSIONS,
    SILVER_IMPRESSIONS,
)
from tests.conftest import config_for, write_config

CAMPAIGN_DAILY = GOLD_CAMPAIGN_DAILY.relative_path
CAMPAIGN_ATTRIBUTION_DAILY = GOLD_CAMPAIGN_ATTRIBUTION_DAILY.relative_path

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)
# The hand-built lakehouse holds a few dozen rows per table, below the minimum-volume
# defaults (20 rows expected within the freshness fail bound, 100 rows under a ratio), so
# its fixtures grade with that rule off to show each check's arithmetic on round values;
# test_minimum_volume_on_the_shared_lakehouse grades the same tables with the defaults.
RULE_OFF = {"quality.freshness.min_expected_rows": 0, "quality.ratios.min_rows": 0}
MONEY = DecimalType(38, 6)
CAMPAIGN_DAILY_SCHEMA = StructType(
    [
        StructField("campaign_id", StringType()),
        StructField("advertiser_id", StringType()),
        StructField("event_date", DateType()),
        *[StructField(c, LongType()) for c in ("impressions", "clicks", "conversions")],
        StructField("revenue", MONEY),
        StructField("spend", MONEY),
        StructField("unique_users", LongType()),
        *[StructField(c, DoubleType()) for c in ("ctr", "cvr", "cpm", "cpc", "cpa", "roas")],
    ]
)
ATTRIBUTION_DAILY_SCHEMA = StructType(
    [
        StructField("campaign_id", StringType()),
        StructField("event_date", DateType()),
        StructField("model", StringType(), False),
        StructField("attributed_conversions", DoubleType()),
        StructField("attributed_revenue", DoubleType()),
        StructField("unattributed_conversions", LongType()),
    ]
)


def _at(day: int, hour: int = 12, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=timezone.utc)


def _row(schema: StructType, **values: Any) -> tuple[Any, ...]:
    unknown = set(values) - set(schema.names)
    assert not unknown, unknown
    return tuple(values.get(name) for name in schema.names)


def _save(
    spark: SparkSession, cfg: AppConfig, relative: str, schema: StructType, rows: list[Any]
) -> None:
    spark.createDataFrame(rows, schema).write.format("delta").save(cfg.table_path(relative))


def _event(schema: StructType, ts: datetime, **values: Any) -> tuple[Any, ...]:
    return _row(schema, event_ts=ts, event_date=ts.date(), event_hour=ts.hour, **values)


def _impressions() -> list[tuple[Any, ...]]:
    """101 impressions: 7 baseline days around 10, a spike of 30 on Nov 26, one on Nov 27.

    Auctions: the first 76 are on a bid request, the next 4 on none, the last 21 direct buys.
    """
    per_day = {19: 10, 20: 12, 21: 10, 22: 8, 23: 10, 24: 11, 25: 9, 26: 30}
    stamps = [_at(day, 1 + j % 20) for day, n in per_day.items() for j in range(n)]
    stamps.append(_at(27, 10))
    rows = []
    for k, ts in enumerate(stamps):
        auction = f"a{k}" if k < 76 else f"x{k}" if k < 80 else None
        rows.append(
            _event(
                SILVER_IMPRESSIONS.schema, ts, impression_id=f"i{k}", user_id=f"u{k % 5}",
                campaign_id=f"c{k % 2 + 1}", auction_id=auction, cost=Decimal("0.5"),
            )
        )  # fmt: skip
    return rows


def _clicks() -> list[tuple[Any, ...]]:
    """4 clicks a day on Nov 21-25 and 1 on Nov 26; 4 have no impression before them."""
    stamps = [_at(day, 1 + j) for day in range(21, 26) for j in range(4)] + [_at(26, 20)]
    rows = []
    for j, ts in enumerate(stamps):
        user = "u9" if j < 3 else f"u{j % 5}"  # u9 has no impressions
        campaign = "c3" if j == 3 else f"c{j % 2 + 1}"  # and no impression is in c3
        rows.append(
            _event(SILVER_CLICKS.schema, ts, event_id=f"k{j}", user_id=user, campaign_id=campaign)
        )
    return rows


def _audit(job: str, source: str, rows_in: int, written: int, q: int, d: int) -> tuple[Any, ...]:
    return _row(
        BATCH_AUDIT.schema, run_id="r1", job=job, source=source, mode="batch", batch_id=0,
        rows_in=rows_in, rows_written=written, quarantined=q, duplicates=d, started_at=_at(27, 9),
    )  # fmt: skip


def _file(source: str, status: str, bronze: int | None, bad: int | None, at: datetime) -> Any:
    return (
        source,
        1,
        f"file:/landing/{source}/{status}-{at:%H%M}",
        status,
        "batch",
        bronze,
        bad,
        at,
        None,
        None,
    )


def _daily(campaign: str | None, day: int, imps: int, clicks: int, convs: int, spend: str) -> Any:
    return _row(
        CAMPAIGN_DAILY_SCHEMA, campaign_id=campaign, event_date=date(2026, 11, day),
        impressions=imps, clicks=clicks, conversions=convs, spend=Decimal(spend),
    )  # fmt: skip


def build_lakehouse(spark: SparkSession, cfg: AppConfig) -> None:
    """Every input table of the checks, with values chosen for round expected results.

    The tables are independent, so they are written from a few threads: most of a tiny
    Delta write is driver-side commit latency, which overlaps.
    """
    tables: list[tuple[str, StructType, list[Any]]] = []
    tables.append((SILVER_IMPRESSIONS.relative_path, SILVER_IMPRESSIONS.schema, _impressions()))
    tables.append((SILVER_CLICKS.relative_path, SILVER_CLICKS.schema, _clicks()))
    conversions = [
        _event(SILVER_CONVERSIONS.schema, ts, event_id=f"v{j}", user_id="u1", campaign_id="c2")
        for j, ts in enumerate([_at(25, 10), _at(27, 11, 30)])
    ]
    tables.append((SILVER_CONVERSIONS.relative_path, SILVER_CONVERSIONS.schema, conversions))
    auctions = [f"a{k}" for k in range(76)] + [f"lost{k}" for k in range(24)]
    bids = [
        _event(SILVER_BID_REQUESTS.schema, _at(26), request_id=f"r-{a}", auction_id=a)
        for a in auctions
    ]
    tables.append((SILVER_BID_REQUESTS.relative_path, SILVER_BID_REQUESTS.schema, bids))
    files = [
        _file("impressions", "planned", None, None, _at(27, 11)),
        _file("impressions", "committed", 95, 5, _at(27, 11)),
        _file("impressions", "planned", None, None, _at(27, 11, 50)),  # not committed yet
        _file("clicks_conversions", "committed", 100, 0, _at(27, 4)),
        _file("bid_requests", "planned", None, None, _at(27, 11)),
    ]
    tables.append((INGEST_FILE_LOG.relative_path, INGEST_FILE_LOG.schema, files))
    audit = [
        _audit("silver_transform", "impressions", 100, 90, 5, 5),
        _audit("silver_transform", "clicks", 20, 18, 0, 1),  # 18 + 0 + 1 != 20
        _audit("silver_transform", "bid_requests", 10, 10, 0, 0),
        _audit("gold_build", "campaign_daily", 5, 5, 0, 0),  # another job: no ratios
    ]
    tables.append((BATCH_AUDIT.relative_path, BATCH_AUDIT.schema, audit))
    daily = [
        _daily("c1", 26, 1000, 10, 1, "20"),
        _daily("c2", 24, 1000, 200, 2, "10"),
        _daily("c2", 25, 1000, 300, 3, "10"),
        _daily("c3", 10, 5000, 0, 0, "5"),  # before the 7-day window
        _daily("c4", 26, 500, 0, 0, "0.25"),  # too few impressions
        _daily("c5", 24, 3000, 1, 0, "5"),
        _daily(None, 26, 2000, 50, 0, "0"),
    ]
    tables.append((GOLD_CAMPAIGN_DAILY.relative_path, CAMPAIGN_DAILY_SCHEMA, daily))
    attribution = [
        ("c1", date(2026, 11, 26), "last_touch", 2.0, 20.0, 1),
        ("c2", date(2026, 11, 25), "last_touch", 0.0, 0.0, 0),
        ("c1", date(2026, 11, 26), "linear", 3.0, 30.0, 5),  # other models are not counted
    ]
    tables.append(
        (GOLD_CAMPAIGN_ATTRIBUTION_DAILY.relative_path, ATTRIBUTION_DAILY_SCHEMA, attribution)
    )
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda t: _save(spark, cfg, *t), tables))


@pytest.fixture(scope="module")
def lake(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> AppConfig:
    root = tmp_path_factory.mktemp("quality")
    cfg = config_for(root, **RULE_OFF)
    build_lakehouse(spark, cfg)
    return cfg


@pytest.fixture(scope="module")
def results(spark: SparkSession, lake: AppConfig) -> list[CheckResult]:
    return run_checks(spark, lake, NOW)


def _table(results: list[CheckResult]) -> list[tuple[Any, ...]]:
    return [(r.check, r.table, r.scope, r.observed, r.threshold, r.status) for r in results]


def _assert_rows(actual: list[tuple[Any, ...]], expected: list[tuple[Any, ...]]) -> None:
    assert [a[:3] for a in actual] == [e[:3] for e in expected]
    for a, e in zip(actual, expected, strict=True):
        for got, want in zip(a[3:], e[3:], strict=True):
            assert got == (
                want if want is None or isinstance(want, str) else pytest.approx(want)
            ), a


DAY = "2026-11-26"
EXPECTED = [
    ("freshness_event_seconds", "silver/bid_requests", "all", 86400, 21600, "fail"),
    ("freshness_event_seconds", "silver/clicks", "all", 57600, 21600, "fail"),
    ("freshness_event_seconds", "silver/conversions", "all", 1800, 3600, "pass"),
    ("freshness_event_seconds", "silver/impressions", "all", 7200, 3600, "warn"),
    ("freshness_ingestion_seconds", "bronze/bid_requests", "bid_requests", None, 3600, "warn"),
    (
        "freshness_ingestion_seconds",
        "bronze/clicks_conversions",
        "clicks_conversions",
        28800,
        21600,
        "fail",
    ),
    ("freshness_ingestion_seconds", "bronze/impressions", "impressions", 3600, 3600, "pass"),
    ("volume_anomaly", "silver/bid_requests", DAY, None, 3.5, "pass"),
    ("volume_anomaly", "silver/clicks", DAY, 0.75, 0.5, "warn"),
    ("volume_anomaly", "silver/conversions", DAY, None, 3.5, "pass"),
    ("volume_anomaly", "silver/impressions", DAY, 20 / 1.4826, 5.0, "fail"),
    ("quarantine_ratio", "bronze/bid_requests", "bid_requests", 0.0, 0.02, "pass"),
    ("quarantine_ratio", "bronze/clicks_conversions", "clicks_conversions", 0.0, 0.02, "pass"),
    ("quarantine_ratio", "bronze/impressions", "impressions", 0.05, 0.02, "warn"),
    ("quarantine_ratio", "silver/bid_requests", "bid_requests", 0.0, 0.02, "pass"),
    ("quarantine_ratio", "silver/clicks", "clicks", 0.0, 0.02, "pass"),
    ("quarantine_ratio", "silver/conversions", "conversions", 0.0, 0.02, "pass"),
    ("quarantine_ratio", "silver/impressions", "impressions", 0.05, 0.02, "warn"),
    ("duplicate_ratio", "silver/bid_requests", "bid_requests", 0.0, 0.05, "pass"),
    ("duplicate_ratio", "silver/clicks", "clicks", 0.05, 0.05, "pass"),
    ("duplicate_ratio", "silver/conversions", "conversions", 0.0, 0.05, "pass"),
    ("duplicate_ratio", "silver/impressions", "impressions", 0.05, 0.05, "pass"),
    ("ctr_band", "gold/campaign_daily", "c1", 0.01, 0.001, "pass"),
    ("ctr_band", "gold/campaign_daily", "c2", 0.25, 0.1, "fail"),
    ("ctr_band", "gold/campaign_daily", "c5", 1 / 3000, 0.001, "fail"),
    ("cvr_band", "gold/campaign_daily", "c2", 0.01, 0.005, "pass"),
    ("clicks_without_impression_ratio", "silver/clicks", "all", 4 / 21, 0.05, "warn"),
    # 24 % of this lakehouse's won auctions have no impression: far above the 10 % fail bound.
    ("won_auctions_without_impression_ratio", "silver/bid_requests", "all", 0.24, 0.1, "fail"),
    ("impressions_unknown_auction_ratio", "silver/impressions", "all", 0.05, 0.01, "warn"),
    ("unattributed_conversion_ratio", "gold/campaign_attribution_daily", "all", 1 / 3, 0.3, "warn"),
    ("spend_gold_vs_silver", "gold/campaign_daily", "all", 0.25, 0.01, "fail"),
    ("bronze_silver_reconciliation", "bronze/bid_requests", "bid_requests", None, None, "warn"),
    (
        "bronze_silver_reconciliation",
        "bronze/clicks_conversions",
        "clicks_conversions",
        None,
        None,
        "warn",
    ),
    ("bronze_silver_reconciliation", "bronze/impressions", "impressions", None, None, "warn"),
    ("audit_identity_violations", "ops/batch_audit", "all", 1, 0, "fail"),
]


def test_every_check_on_the_shared_lakehouse(results: list[CheckResult]) -> None:
    _assert_rows(_table(results), EXPECTED)


def test_details_say_what_was_seen(results: list[CheckResult]) -> None:
    detail = {(r.check, r.table, r.scope): r.detail for r in results}
    assert detail[("volume_anomaly", "silver/impressions", DAY)] == (
        "spike: 30 rows vs median 10 of 7 days (robust z, MAD 1)"
    )
    assert detail[("volume_anomaly", "silver/clicks", DAY)] == (
        "drop: 1 rows vs median 4 of 5 days (MAD 0: relative deviation)"
    )
    assert detail[("volume_anomaly", "silver/bid_requests", DAY)] == (
        "insufficient history: 0 of 3 days"
    )
    assert detail[("volume_anomaly", "silver/conversions", DAY)] == (
        "insufficient history: 1 of 3 days"
    )
    assert detail[("freshness_event_seconds", "silver/impressions", "all")] == (
        "newest 2026-11-27T10:00:00Z"
    )
    assert detail[("freshness_ingestion_seconds", "bronze/bid_requests", "bid_requests")] == (
        "no committed files"
    )
    assert detail[("quarantine_ratio", "silver/conversions", "conversions")] == "0 of 0"
    assert detail[("ctr_band", "gold/campaign_daily", "c5")] == "below min [0.001, 0.1]: 1 of 3000"
    assert detail[("spend_gold_vs_silver", "gold/campaign_daily", "all")] == (
        "gold spend 50.25 vs silver cost 50.5"
    )
    assert detail[("audit_identity_violations", "ops/batch_audit", "all")].startswith(
        "1 of 4 audit rows break"
    )


def test_minimum_volume_on_the_shared_lakehouse(spark: SparkSession, lake: AppConfig) -> None:
    """The same tables graded with the default minimum volume: only the sparse rows change."""
    defaults = config_for(Path(lake.paths.lakehouse).parent)
    assert defaults.quality == QualitySettings()
    results = run_checks(spark, defaults, NOW)
    changed = [
        # clicks: 20 rows in 5 days of history expect 1 within 6 h: limits x20.
        ("freshness_event_seconds", "silver/clicks", "all", 57600, 72000, "pass"),
        # impressions: 70 rows in 7 days expect 2.5 within 6 h: limits x8. Bid requests
        # (no history before the graded day) and conversions (1 day) keep the 1 h / 6 h.
        ("freshness_event_seconds", "silver/impressions", "all", 7200, 28800, "pass"),
        # Denominators below 100 pass ungraded; those of exactly 100 are graded as before.
        ("quarantine_ratio", "bronze/bid_requests", "bid_requests", None, 0.02, "pass"),
        ("quarantine_ratio", "silver/bid_requests", "bid_requests", None, 0.02, "pass"),
        ("quarantine_ratio", "silver/clicks", "clicks", None, 0.02, "pass"),
        ("quarantine_ratio", "silver/conversions", "conversions", None, 0.02, "pass"),
        ("duplicate_ratio", "silver/bid_requests", "bid_requests", None, 0.05, "pass"),
        ("duplicate_ratio", "silver/clicks", "clicks", None, 0.05, "pass"),
        ("duplicate_ratio", "silver/conversions", "conversions", None, 0.05, "pass"),
        ("clicks_without_impression_ratio", "silver/clicks", "all", None, 0.05, "pass"),
        ("impressions_unknown_auction_ratio", "silver/impressions", "all", None, 0.01, "pass"),
        (
            "unattributed_conversion_ratio",
            "gold/campaign_attribution_daily",
            "all",
            None,
            0.3,
            "pass",
        ),
    ]
    by_key = {row[:3]: row for row in changed}
    assert len(by_key) == len(changed) and set(by_key) <= {row[:3] for row in EXPECTED}
    _assert_rows(_table(results), [by_key.get(row[:3], row) for row in EXPECTED])
    detail = {(r.check, r.table, r.scope): r.detail for r in results}
    assert detail[("freshness_event_seconds", "silver/clicks", "all")] == (
        "newest 2026-11-26T20:00:00Z; sparse: ~4 rows/day, limits x20"
    )
    assert detail[("freshness_event_seconds", "silver/impressions", "all")] == (
        "newest 2026-11-27T10:00:00Z; sparse: ~10 rows/day, limits x8"
    )
    assert detail[("freshness_event_seconds", "silver/bid_requests", "all")] == (
        "newest 2026-11-26T12:00:00Z"
    )
    assert detail[("clicks_without_impression_ratio", "silver/clicks", "all")] == (
        "insufficient volume (21 rows < 100): 4 of 21"
    )
    assert detail[("quarantine_ratio", "bronze/impressions", "impressions")] == "5 of 100"


def test_grade_volume_baseline_rules() -> None:
    settings = QualitySettings(volume_period="hour", baseline_periods=4, min_periods=3)
    # Rows older than the baseline (bucket 5): all 4 baseline periods count, empty ones as 0.
    drop = grade_volume("silver/clicks", {5: 7, 7: 10, 8: 12, 9: 10, 10: 1}, 10, settings)
    assert drop.scope == period_label(10, 3600) == "1970-01-01T10:00Z"
    # baseline [0, 10, 12, 10]: median 10, MAD 1 -> z = 9 / 1.4826
    assert (drop.status, drop.threshold) == ("fail", 5.0)
    assert drop.observed == pytest.approx(9 / 1.4826)
    assert drop.detail == "drop: 1 rows vs median 10 of 4 hours (robust z, MAD 1)"
    steady = grade_volume("silver/clicks", {7: 3, 8: 3, 9: 3, 10: 3}, 10, settings)
    assert (steady.observed, steady.status, steady.threshold) == (0.0, "pass", 0.5)
    assert steady.detail.startswith("steady: 3 rows vs median 3 of 3 hours")
    # Baseline of zeros (median 0, MAD 0): the deviation is relative to max(median, 1).
    spike = grade_volume("silver/clicks", {5: 1, 10: 2}, 10, settings)
    assert (spike.observed, spike.status, spike.threshold) == (2.0, "fail", 0.8)


# -- minimum volume --------------------------------------------------------------------------
# Defaults: daily periods, 14 of baseline, min_periods 3, 1 h / 6 h, 20 rows expected. With
# period 100 evaluated, the baseline is periods 86..99 (1 209 600 s).
BASELINE = range(86, 100)


def test_event_freshness_limits_keep_normal_volume_as_configured() -> None:
    settings = QualitySettings()
    # 80 rows a day expect exactly 20 within the 6 h fail bound: not fewer, so unchanged.
    # The evaluated period (100) and later ones (101) are not part of the rate.
    steady = {**dict.fromkeys(BASELINE, 80), 100: 5, 101: 900}
    assert event_freshness_limits(steady, 100, settings) == (Limits(3600, 21600), None)
    busy = dict.fromkeys(BASELINE, 10_000)
    assert event_freshness_limits(busy, 100, settings) == (Limits(3600, 21600), None)
    # One row fewer (1119 in 14 days) expects 19.98: stretched by 20 / 19.98 = 1120 / 1119.
    limits, note = event_freshness_limits({**steady, 99: 79}, 100, settings)
    assert limits.warn == pytest.approx(3600 * 1120 / 1119, rel=1e-12)
    assert limits.fail == pytest.approx(21600 * 1120 / 1119, rel=1e-12)
    assert note == "sparse: ~80 rows/day, limits x1"


def test_event_freshness_limits_stretch_for_sparse_tables() -> None:
    settings = QualitySettings()
    # 26 clicks in 14 days expect 26 * 21600 / 1209600 = 0.464 rows within 6 h: x560/13.
    clicks = dict(zip(BASELINE, [2, 1, 3, 2, 1, 2, 2, 1, 3, 2, 2, 1, 2, 2], strict=True))
    limits, note = event_freshness_limits(clicks, 100, settings)
    assert limits.warn == pytest.approx(3600 * 560 / 13, rel=1e-12)  # 43.1 h
    assert limits.fail == pytest.approx(21600 * 560 / 13, rel=1e-12)  # 10.8 days
    assert note == "sparse: ~1.9 rows/day, limits x43.1"
    now = 1_000_000.0
    key = ("freshness_event_seconds", "silver/clicks", "all")
    fresh = grade_freshness(*key, now - 97_200, now, limits, note)
    assert (fresh.observed, fresh.status) == (97_200, "pass")
    assert fresh.threshold == pytest.approx(3600 * 560 / 13, rel=1e-12)
    assert fresh.detail == "newest 1970-01-11T10:46:40Z; sparse: ~1.9 rows/day, limits x43.1"
    late = grade_freshness(*key, 0.0, now, limits)
    assert (late.status, late.threshold) == ("fail", pytest.approx(21600 * 560 / 13))
    assert late.detail == "newest 1970-01-01T00:00:00Z"
    # A baseline without rows (older rows exist) counts as 1 row in 14 days: x1120.
    silent = event_freshness_limits({85: 3}, 100, settings)
    assert silent == (
        Limits(4_032_000, 24_192_000),
        "sparse: no rows in 14 days (taken as 1), limits x1120",
    )
    # Hourly periods: 3 rows in the 3 hours of history expect 6 within 6 h: x20/6.
    hourly = QualitySettings(volume_period="hour", baseline_periods=4, min_periods=3)
    limits, note = event_freshness_limits({7: 1, 9: 2}, 10, hourly)
    assert (limits.warn, limits.fail) == (pytest.approx(12_000), pytest.approx(72_000))
    assert note == "sparse: ~1 rows/hour, limits x3.3"


def test_event_freshness_limits_need_history_and_a_minimum() -> None:
    settings = QualitySettings()
    # Less history than min_periods (2 of 3 days): no rate yet, limits as configured.
    assert event_freshness_limits({98: 1, 99: 1}, 100, settings) == (Limits(3600, 21600), None)
    assert event_freshness_limits({}, 100, settings) == (Limits(3600, 21600), None)
    # min_expected_rows 0 turns the rule off; so does a fail bound of 0 (nothing to stretch).
    sparse = dict.fromkeys(BASELINE, 1)
    off = QualitySettings(event_min_expected_rows=0)
    assert event_freshness_limits(sparse, 100, off) == (Limits(3600, 21600), None)
    zero = QualitySettings(event_freshness=Limits(0, 0))
    assert event_freshness_limits(sparse, 100, zero) == (Limits(0, 0), None)
    # A lower minimum stretches less: 14 rows expect 0.25 within 6 h; 5 / 0.25 = x20.
    five = QualitySettings(event_min_expected_rows=5)
    assert event_freshness_limits(sparse, 100, five) == (
        Limits(72_000, 432_000),
        "sparse: ~1 rows/day, limits x20",
    )


def test_grade_ratio_minimum_denominator() -> None:
    limits = Limits(0.02, 0.10)
    args = ("quarantine_ratio", "bronze/clicks_conversions", "clicks_conversions")
    assert grade_ratio(*args, 1, 30, limits, 100) == CheckResult(
        *args, None, 0.02, "pass", "insufficient volume (30 rows < 100): 1 of 30"
    )
    assert grade_ratio(*args, 50, 99, limits, 100) == CheckResult(
        *args, None, 0.02, "pass", "insufficient volume (99 rows < 100): 50 of 99"
    )
    assert grade_ratio(*args, 0, 0, limits, 100) == CheckResult(
        *args, None, 0.02, "pass", "insufficient volume (0 rows < 100): 0 of 0"
    )
    # From min_rows on, the ratio is graded as before.
    assert grade_ratio(*args, 3, 100, limits, 100) == CheckResult(
        *args, 0.03, 0.02, "warn", "3 of 100"
    )
    assert grade_ratio(*args, 11, 100, limits, 100) == CheckResult(
        *args, 0.11, 0.10, "fail", "11 of 100"
    )
    # min_rows 0 (the argument's default): every denominator is graded, 0 of 0 passes as 0.
    assert grade_ratio(*args, 1, 30, limits) == CheckResult(*args, 1 / 30, 0.02, "warn", "1 of 30")
    assert grade_ratio(*args, 0, 0, limits, 0) == CheckResult(*args, 0.0, 0.02, "pass", "0 of 0")


def test_grade_measures_applies_the_minimum_volume_per_check() -> None:
    settings = parse_quality(
        {"ratios": {"min_rows": 50, "duplicate_ratio": {"min_rows": 0}}}, "quality"
    )
    evaluated = evaluated_period(NOW, 86_400)
    newest = NOW.timestamp() - 27 * 3600
    daily = [2, 1, 3, 2, 1, 2, 2, 1, 3, 2, 2, 1, 2, 2]  # 26 rows
    profile = [
        Measure(EVENT_PROFILE, "silver/clicks", str(evaluated - 14 + i), n, None, newest - i, None)
        for i, n in enumerate(daily)
    ] + [Measure(EVENT_PROFILE, "silver/clicks", str(evaluated), 2, None, newest, None)]
    ratios = [
        Measure("quarantine_ratio", "silver/clicks", "clicks", 1, 30, None, None),
        Measure("duplicate_ratio", "silver/clicks", "clicks", 1, 30, None, None),
    ]
    present = {t: t in ("silver/clicks", "ops/batch_audit") for t in _ALL_INPUTS}
    results = grade_measures(profile + ratios, settings, NOW, present)
    got = {(r.check, r.table, r.scope): r for r in results}
    fresh = got[("freshness_event_seconds", "silver/clicks", "all")]
    assert (fresh.observed, fresh.status) == (27 * 3600, "pass")
    assert fresh.threshold == pytest.approx(3600 * 560 / 13)
    assert fresh.detail == "newest 2026-11-26T09:00:00Z; sparse: ~1.9 rows/day, limits x43.1"
    volume = got[("volume_anomaly", "silver/clicks", DAY)]
    assert (volume.status, volume.detail) == (
        "pass",
        "steady: 2 rows vs median 2 of 14 days (MAD 0: relative deviation)",
    )
    quarantine = got[("quarantine_ratio", "silver/clicks", "clicks")]
    assert (quarantine.observed, quarantine.status, quarantine.detail) == (
        None,
        "pass",
        "insufficient volume (30 rows < 50): 1 of 30",
    )
    duplicates = got[("duplicate_ratio", "silver/clicks", "clicks")]
    assert (duplicates.observed, duplicates.status) == (pytest.approx(1 / 30), "pass")
    assert got[("duplicate_ratio", "silver/impressions", "impressions")].detail == "0 of 0"
    assert got[("quarantine_ratio", "silver/impressions", "impressions")].detail == (
        "insufficient volume (0 rows < 50): 0 of 0"
    )


_ALL_INPUTS = (
    SILVER_IMPRESSIONS.relative_path,
    SILVER_CLICKS.relative_path,
    SILVER_CONVERSIONS.relative_path,
    SILVER_BID_REQUESTS.relative_path,
    INGEST_FILE_LOG.relative_path,
    BATCH_AUDIT.relative_path,
    CAMPAIGN_DAILY,
    CAMPAIGN_ATTRIBUTION_DAILY,
    "silver/quarantine",
    "bronze/impressions",
    "bronze/clicks_conversions",
    "bronze/bid_requests",
)


def test_missing_tables_warn_without_failing(spark: SparkSession, tmp_path: Path) -> None:
    results = run_checks(spark, config_for(tmp_path), NOW)
    assert {r.status for r in results} == {"warn"}
    assert all(r.observed is None and r.threshold is None for r in results)
    by_key = {(r.check, r.table, r.scope): r.detail for r in results}
    assert len(by_key) == len(results) == 33
    assert by_key[("freshness_event_seconds", "silver/clicks", "all")] == "table missing"
    assert by_key[("ctr_band", "gold/campaign_daily", "all")] == "table missing"
    assert by_key[("audit_identity_violations", "ops/batch_audit", "all")] == "table missing"
    assert by_key[("quarantine_ratio", "silver/clicks", "clicks")] == (
        "table missing: ops/batch_audit"
    )
    assert by_key[("freshness_ingestion_seconds", "bronze/impressions", "impressions")] == (
        "table missing: ops/ingest_file_log"
    )
    assert by_key[("clicks_without_impression_ratio", "silver/clicks", "all")] == "table missing"
    assert by_key[("spend_gold_vs_silver", "gold/campaign_daily", "all")] == "table missing"


def test_closing_reports_count_the_dq_rows_of_their_own_quality_run(
    spark: SparkSession, tmp_path: Path
) -> None:
    """The pipeline's closing reports run side by side, yet the table summary counts
    ops/dq_results after the quality run has appended its rows."""
    cfg = config_for(tmp_path)
    reports = closing_reports(spark, cfg, ["quality"])
    assert [title.split(" (")[0] for title, _ in reports] == [
        "Data-quality checks",
        "AdLake tables",
        "Quarantined rows",
    ]
    checks, tables, quarantined = (text for _, text in reports)
    assert len(checks.splitlines()) == 1 + 33  # header + every check of an empty lakehouse
    counted = {line.split()[0]: line.split()[1] for line in tables.splitlines()[1:]}
    assert counted["ops.dq_results"] == "33"
    assert {name: rows for name, rows in counted.items() if rows != "-"} == {"ops.dq_results": "33"}
    assert quarantined == "nothing quarantined"


def _job() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "jobs" / "quality_monitor.py"
    spec = importlib.util.spec_from_file_location("quality_monitor_job", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class JobRun:
    cfg: AppConfig
    exit_code: int
    stdout: list[str]


@pytest.fixture(scope="module")
def job_run(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> JobRun:
    """The job, run once on a lakehouse of empty silver impressions and clicks and an audit
    table with one broken row; everything else is not built yet.
    """
    root = tmp_path_factory.mktemp("quality_job")
    cfg = config_for(root, **RULE_OFF)
    for spec in (SILVER_IMPRESSIONS, SILVER_CLICKS):
        storage.ensure_table(spark, spec, spec.location(cfg))
    audit = [
        _audit("silver_transform", "clicks", 20, 18, 1, 1),
        _audit("silver_transform", "clicks", 5, 5, 0, 1),  # 5 + 0 + 1 != 5
    ]
    _save(spark, cfg, BATCH_AUDIT.relative_path, BATCH_AUDIT.schema, audit)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        config = write_config(root, **RULE_OFF)
        code = _job().main(["--config", str(config), "--log-level", "WARNING"])
    return JobRun(cfg, code, out.getvalue().splitlines())


def test_job_prints_results_and_exits_0_despite_failures(job_run: JobRun) -> None:
    assert job_run.exit_code == 0
    header, *rows = job_run.stdout
    assert header.split() == ["check", "table", "scope", "observed", "threshold", "status"]
    assert len(rows) == 33
    assert rows[-1].split() == [
        "audit_identity_violations",
        "ops/batch_audit",
        "all",
        "1",
        "0",
        "fail",
    ]
    with pytest.raises(SystemExit) as exc:
        _job().main(["--config", "x.yaml", "--mode", "stream", "--interval", "soon"])
    assert exc.value.code == 2


class _StopAfter(threading.Event):
    """Stands in for the SIGTERM event: set after `runs` loop iterations, waits not at all."""

    def __init__(self, runs: int) -> None:
        super().__init__()
        self.runs = runs
        self.waits: list[float | None] = []

    def is_set(self) -> bool:
        return len(self.waits) >= self.runs

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        return self.is_set()


def test_stream_mode_runs_every_interval_until_stopped(
    spark: SparkSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = _job()
    stop = _StopAfter(runs=2)
    monkeypatch.setattr(job, "stop_on_signals", lambda: stop)
    config = str(write_config(tmp_path))
    with contextlib.redirect_stdout(io.StringIO()):
        code = job.main(["--config", config, "--mode", "stream", "--interval", "1 hour"])
    assert code == 0
    assert len(stop.waits) == 2 and all(0 < (w or 0) <= 3600 for w in stop.waits)
    stored = storage.read_table(spark, config_for(tmp_path).table_path("ops/dq_results"))
    assert stored.select("run_id").distinct().count() == 2  # every run is a new observation


def test_empty_and_missing_tables_as_stored(spark: SparkSession, job_run: JobRun) -> None:
    stored = storage.read_table(spark, job_run.cfg.table_path("ops/dq_results"))
    assert stored.schema == DQ_RESULTS.schema
    got = {
        (r["check"], r["table"], r["scope"]): (r["observed"], r["status"], r["detail"])
        for r in stored.collect()
    }
    assert len(got) == 33
    assert got[("freshness_event_seconds", "silver/clicks", "all")] == (None, "warn", "no rows")
    # The job ran on the real clock: the graded day is the last complete one before its run.
    run_seconds = stored.select(F.max(F.unix_seconds("run_ts"))).first()[0]
    run_at = datetime.fromtimestamp(run_seconds, timezone.utc)
    graded = period_label(evaluated_period(run_at, 86_400), 86_400)
    assert got[("volume_anomaly", "silver/impressions", graded)][1:] == (
        "pass",
        "insufficient history: 0 of 3 days",
    )
    assert got[("freshness_event_seconds", "silver/conversions", "all")][1:] == (
        "warn",
        "table missing",
    )
    for key in [
        ("clicks_without_impression_ratio", "silver/clicks", "all"),
        ("quarantine_ratio", "silver/impressions", "impressions"),
        ("duplicate_ratio", "silver/conversions", "conversions"),
    ]:
        assert got[key] == (0.0, "pass", "0 of 0"), key
    assert got[("quarantine_ratio", "silver/clicks", "clicks")] == (0.04, "warn", "1 of 25")
    assert got[("duplicate_ratio", "silver/clicks", "clicks")] == (0.08, "warn", "2 of 25")
    assert got[("impressions_unknown_auction_ratio", "silver/impressions", "all")][1:] == (
        "warn",
        "table missing: silver/bid_requests",
    )
    assert got[("spend_gold_vs_silver", "gold/campaign_daily", "all")][1:] == (
        "warn",
        "table missing",
    )


def test_write_results_is_idempotent_per_run(spark: SparkSession, job_run: JobRun) -> None:
    cfg = job_run.cfg
    location = cfg.table_path("ops/dq_results")
    (run_id,) = [
        r[0] for r in storage.read_table(spark, location).select("run_id").distinct().collect()
    ]
    rows = [
        CheckResult("spend_gold_vs_silver", "gold/campaign_daily", "all", 0.25, 0.01, "fail", "x"),
        CheckResult("ctr_band", "gold/campaign_daily", "all", None, None, "warn", "table missing"),
    ]
    write_results(spark, cfg, run_id, NOW, rows)  # a retried write of a committed run: skipped
    assert write_results(spark, cfg, "run-2", NOW, rows) == 2  # the next run: new observations
    table = storage.read_table(spark, location)
    got = sorted(
        (r["run_id"], r["ts"], r["check"], r["observed"], r["status"])
        for r in table.where(F.col("run_id") != run_id)
        .select("*", F.unix_seconds("run_ts").alias("ts"))
        .collect()
    )
    ts = int(NOW.timestamp())
    assert got == [
        ("run-2", ts, "ctr_band", None, "warn"),
        ("run-2", ts, "spend_gold_vs_silver", 0.25, "fail"),
    ]
    assert table.where(F.col("run_id") == run_id).count() == 33


def test_parse_quality_defaults_and_values(tmp_path: Path) -> None:
    assert parse_quality({}, "quality") == QualitySettings()
    assert config_for(tmp_path).quality == QualitySettings()  # conf/local.yaml shows the defaults
    settings = parse_quality(
        {
            "freshness": {"event_warn_after": "30 minutes", "ingestion_fail_after": "1 day"},
            "volume": {"period": "hour", "baseline_periods": 24, "mad_threshold": 8},
            "audit_window": "7 days",
            "ratios": {"quarantine_ratio": {"fail": 0.5}},
            "bands": {"days": 3, "ctr": {"min": 0, "min_impressions": 10}},
            "spend_tolerance": 1,
        },
        "quality",
    )
    assert settings.event_freshness == Limits(1800, 21600)
    assert settings.ingestion_freshness == Limits(3600, 86400)
    assert (settings.volume_period, settings.period_seconds) == ("hour", 3600)
    assert (settings.baseline_periods, settings.volume_z) == (24, Limits(3.5, 8.0))
    assert settings.audit_window_seconds == 7 * 86400
    assert settings.ratios["quarantine_ratio"] == Limits(0.02, 0.5)
    assert settings.ratios["duplicate_ratio"] == Limits(0.05, 0.2)
    assert (settings.band_days, settings.ctr.min, settings.ctr.min_denominator) == (3, 0.0, 10)
    assert settings.spend_tolerance == 1.0


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"volume": {"mad_threshold": "high"}}, "quality.volume.mad_threshold"),
        ({"volume": {"mad_threshold": -1}}, "quality.volume.mad_threshold"),
        ({"volume": {"period": "week"}}, "quality.volume.period"),
        ({"volume": {"min_periods": 20}}, "quality.volume.min_periods"),
        ({"volume": {"baseline_periods": 0}}, "quality.volume.baseline_periods"),
        ({"freshness": {"event_fail_after": "soon"}}, "quality.freshness.event_fail_after"),
        ({"freshness": {"event_warn_after": "1 day"}}, "quality.freshness.event_warn_after"),
        ({"ratios": {"duplicate_ratio": {"fail": 5}}}, "quality.ratios.duplicate_ratio.fail"),
        ({"ratios": {"dupes": {"fail": 0.1}}}, "quality.ratios.dupes"),
        ({"bands": {"cvr": {"min": 0.9, "max": 0.1}}}, "quality.bands.cvr.min"),
        ({"bands": {"ctr": {"min_clicks": 5}}}, "quality.bands.ctr.min_clicks"),
        ({"audit_window": "0s"}, "quality.audit_window"),
        ({"spend_tolerance": True}, "quality.spend_tolerance"),
        ({"volumes": {}}, "quality.volumes"),
    ]
    for section, key in cases:
        with pytest.raises(ConfigError) as exc:
            parse_quality(section, "quality")
        assert exc.value.key == key, section
    # Through the whole config, as the jobs load it.
    with pytest.raises(ConfigError) as exc:
        config_for(tmp_path, **{"quality.volume.mad_threshold": "x"})
    assert exc.value.key == "quality.volume.mad_threshold"


def test_format_results_is_a_fixed_width_table() -> None:
    text = format_results(
        [
            CheckResult("volume_anomaly", "silver/clicks", DAY, 0.75, 0.5, "warn", "drop"),
            CheckResult("ctr_band", "gold/campaign_daily", "all", None, None, "warn", "missing"),
        ]
    )
    assert text.splitlines() == [
        "check           table                scope       observed  threshold  status",
        "volume_anomaly  silver/clicks        2026-11-26      0.75        0.5  warn",
        "ctr_band        gold/campaign_daily  all                -          -  warn",
    ]


def test_parse_minimum_volume_keys() -> None:
    defaults = QualitySettings()
    assert defaults.event_min_expected_rows == 20
    ratio_checks = [r[0] for r in EXPECTED if r[0].endswith("_ratio")]
    assert dict(defaults.ratio_min_rows) == dict.fromkeys(ratio_checks, 100)
    assert len(defaults.ratio_min_rows) == 6
    settings = parse_quality(
        {
            "freshness": {"min_expected_rows": 0},
            "ratios": {
                "min_rows": 30,
                "unattributed_conversion_ratio": {"min_rows": 10},
                "quarantine_ratio": {"warn": 0.01, "min_rows": 0},
            },
        },
        "quality",
    )
    assert settings.event_min_expected_rows == 0
    assert settings.event_freshness == Limits(3600, 21600)
    assert settings.ratio_min_rows["unattributed_conversion_ratio"] == 10
    assert settings.ratio_min_rows["quarantine_ratio"] == 0
    assert settings.ratio_min_rows["duplicate_ratio"] == 30  # the section's min_rows
    assert settings.ratios["quarantine_ratio"] == Limits(0.01, 0.10)
