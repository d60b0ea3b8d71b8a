"""The `quality` section: check names (a contract of the alert rules) and their thresholds.

No PySpark here; `adlake.quality` measures and grades. See docs/quality.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from adlake.settings.base import ConfigError, ConfigSection, parse_duration, positive_int

# Check names are a contract of the alert rules.
FRESHNESS_EVENT = "freshness_event_seconds"
FRESHNESS_INGESTION = "freshness_ingestion_seconds"
VOLUME_ANOMALY = "volume_anomaly"
QUARANTINE_RATIO = "quarantine_ratio"
DUPLICATE_RATIO = "duplicate_ratio"
CTR_BAND = "ctr_band"
CVR_BAND = "cvr_band"
CLICKS_WITHOUT_IMPRESSION = "clicks_without_impression_ratio"
WON_WITHOUT_IMPRESSION = "won_auctions_without_impression_ratio"
UNKNOWN_AUCTION = "impressions_unknown_auction_ratio"
UNATTRIBUTED = "unattributed_conversion_ratio"
SPEND_GOLD_VS_SILVER = "spend_gold_vs_silver"
AUDIT_IDENTITY = "audit_identity_violations"
RECONCILIATION = "bronze_silver_reconciliation"
CHECKS: tuple[str, ...] = (
    FRESHNESS_EVENT,
    FRESHNESS_INGESTION,
    VOLUME_ANOMALY,
    QUARANTINE_RATIO,
    DUPLICATE_RATIO,
    CTR_BAND,
    CVR_BAND,
    CLICKS_WITHOUT_IMPRESSION,
    WON_WITHOUT_IMPRESSION,
    UNKNOWN_AUCTION,
    UNATTRIBUTED,
    SPEND_GOLD_VS_SILVER,
    RECONCILIATION,
    AUDIT_IDENTITY,
)

PASS, WARN, FAIL = "pass", "warn", "fail"
PERIOD_SECONDS: dict[str, int] = {"hour": 3_600, "day": 86_400}


# ------------------------------------------------------------------------------ settings
@dataclass(frozen=True)
class Limits:
    """Upper bounds: strictly above `warn` is warn, strictly above `fail` is fail."""

    warn: float
    fail: float


@dataclass(frozen=True)
class Band:
    """Accepted [min, max] of a campaign rate, checked when its denominator >= min_denominator."""

    min: float
    max: float
    min_denominator: int


# Fewer rows than this in a ratio's denominator: pass, 'insufficient volume'.
DEFAULT_RATIO_MIN_ROWS = 100

DEFAULT_RATIO_LIMITS: dict[str, Limits] = {
    QUARANTINE_RATIO: Limits(0.02, 0.10),
    DUPLICATE_RATIO: Limits(0.05, 0.20),
    CLICKS_WITHOUT_IMPRESSION: Limits(0.05, 0.20),
    WON_WITHOUT_IMPRESSION: Limits(0.05, 0.10),
    UNKNOWN_AUCTION: Limits(0.01, 0.05),
    UNATTRIBUTED: Limits(0.30, 0.60),
}


@dataclass(frozen=True)
class QualitySettings:
    """Thresholds of the data-quality checks (config `quality:`); every field has a default."""

    event_freshness: Limits = Limits(3_600, 21_600)
    # Rows the baseline must expect within event_freshness.fail, else the bounds stretch.
    # 20: at the stretched bounds the warn window (1 h of 6 h) still expects 3.3 rows, so a
    # steady Poisson stream crosses it by chance e^-3.3 = 4 % of the time (10 would be 19 %).
    event_min_expected_rows: int = 20
    ingestion_freshness: Limits = Limits(3_600, 21_600)
    volume_period: str = "day"
    baseline_periods: int = 14
    min_periods: int = 3
    volume_z: Limits = Limits(3.5, 5.0)
    volume_relative: Limits = Limits(0.5, 0.8)
    audit_window_seconds: int | None = None
    ratios: Mapping[str, Limits] = field(default_factory=lambda: dict(DEFAULT_RATIO_LIMITS))
    ratio_min_rows: Mapping[str, int] = field(
        default_factory=lambda: dict.fromkeys(DEFAULT_RATIO_LIMITS, DEFAULT_RATIO_MIN_ROWS)
    )
    band_days: int = 7
    ctr: Band = Band(0.001, 0.1, 1_000)
    cvr: Band = Band(0.005, 0.5, 100)
    spend_tolerance: float = 0.01

    @property
    def period_seconds(self) -> int:
        """Length of one volume period."""
        return PERIOD_SECONDS[self.volume_period]


def parse_quality(data: dict[str, Any], prefix: str) -> QualitySettings:
    """Validate the `quality` section; absent keys take the defaults of `QualitySettings`."""
    d = QualitySettings()
    q = ConfigSection(data, prefix)

    f = q.section("freshness", required=False)
    event = _duration_limits(f, "event_warn_after", "event_fail_after", d.event_freshness)
    min_expected = _non_negative_int(f, "min_expected_rows", d.event_min_expected_rows)
    ingestion = _duration_limits(
        f, "ingestion_warn_after", "ingestion_fail_after", d.ingestion_freshness
    )
    f.done()

    v = q.section("volume", required=False)
    period = v.get("period", str, d.volume_period)
    if period not in PERIOD_SECONDS:
        raise ConfigError(v.key("period"), f"expected 'hour' or 'day', got {period!r}")
    baseline = positive_int(v, "baseline_periods", d.baseline_periods)
    min_periods = positive_int(v, "min_periods", d.min_periods)
    if min_periods > baseline:
        raise ConfigError(v.key("min_periods"), f"must not exceed baseline_periods ({baseline})")
    volume_z = _limits(v, "mad_warn_threshold", "mad_threshold", d.volume_z)
    relative = _limits(v, "relative_warn_threshold", "relative_threshold", d.volume_relative)
    v.done()

    window = q.get("audit_window", str, None, nullable=True)
    window_seconds = None
    if window is not None:
        window_seconds = parse_duration(window, q.key("audit_window"))
        if window_seconds <= 0:
            raise ConfigError(q.key("audit_window"), "must be longer than 0 (or null for all)")

    r = q.section("ratios", required=False)
    all_min_rows = _non_negative_int(r, "min_rows", DEFAULT_RATIO_MIN_ROWS)
    ratios: dict[str, Limits] = {}
    min_rows: dict[str, int] = {}
    for name, default in DEFAULT_RATIO_LIMITS.items():
        one = r.section(name, required=False)
        ratios[name] = _limits(one, "warn", "fail", default, fraction=True)
        min_rows[name] = _non_negative_int(one, "min_rows", all_min_rows)
        one.done()
    r.done()

    b = q.section("bands", required=False)
    days = positive_int(b, "days", d.band_days)
    ctr = _band(b.section("ctr", required=False), "min_impressions", d.ctr)
    cvr = _band(b.section("cvr", required=False), "min_clicks", d.cvr)
    b.done()

    tolerance = _non_negative(q, "spend_tolerance", d.spend_tolerance)
    q.done()
    return QualitySettings(
        event_freshness=event,
        event_min_expected_rows=min_expected,
        ingestion_freshness=ingestion,
        volume_period=period,
        baseline_periods=baseline,
        min_periods=min_periods,
        volume_z=volume_z,
        volume_relative=relative,
        audit_window_seconds=window_seconds,
        ratios=ratios,
        ratio_min_rows=min_rows,
        band_days=days,
        ctr=ctr,
        cvr=cvr,
        spend_tolerance=tolerance,
    )


def _non_negative(
    section: ConfigSection, name: str, default: float, fraction: bool = False
) -> float:
    value = float(section.get(name, (int, float), default))
    if not math.isfinite(value) or value < 0 or (fraction and value > 1):
        want = "a fraction in [0, 1]" if fraction else "a non-negative number"
        raise ConfigError(section.key(name), f"must be {want}, got {value}")
    return value


def _non_negative_int(section: ConfigSection, name: str, default: int) -> int:
    value: int = section.get(name, int, default)
    if value < 0:
        raise ConfigError(section.key(name), f"must be a non-negative integer, got {value}")
    return value


def _ordered(section: ConfigSection, warn_name: str, fail_name: str, limits: Limits) -> Limits:
    if limits.warn > limits.fail:
        raise ConfigError(section.key(warn_name), f"must not exceed {fail_name} ({limits.fail:g})")
    return limits


def _limits(
    section: ConfigSection, warn_name: str, fail_name: str, default: Limits, fraction: bool = False
) -> Limits:
    warn = _non_negative(section, warn_name, default.warn, fraction)
    fail = _non_negative(section, fail_name, default.fail, fraction)
    return _ordered(section, warn_name, fail_name, Limits(warn, fail))


def _duration_limits(
    section: ConfigSection, warn_name: str, fail_name: str, default: Limits
) -> Limits:
    values: list[float] = []
    for name, fallback in ((warn_name, default.warn), (fail_name, default.fail)):
        raw = section.get(name, str, None)
        values.append(fallback if raw is None else parse_duration(raw, section.key(name)))
    return _ordered(section, warn_name, fail_name, Limits(values[0], values[1]))


def _band(section: ConfigSection, min_name: str, default: Band) -> Band:
    low = _non_negative(section, "min", default.min)
    high = _non_negative(section, "max", default.max)
    if low > high:
        raise ConfigError(section.key("min"), f"must not exceed max ({high:g})")
    band = Band(low, high, positive_int(section, min_name, default.min_denominator))
    section.done()
    return band
