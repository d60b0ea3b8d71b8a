"""Grading in plain Python: measured values against the configured limits, as CheckResults.

Statuses and minimum-volume rules are specified in docs/quality.md.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from adlake.config import SOURCES
from adlake.quality.checks import (
    ALL,
    CAMPAIGN_ATTRIBUTION_DAILY,
    CAMPAIGN_DAILY,
    EPOCH,
    EVENT_PROFILE,
    MAD_SCALE,
    SILVER_EVENT_TABLES,
    SILVER_TARGETS,
    CheckResult,
    Measure,
    as_utc,
)
from adlake.settings.quality import (
    AUDIT_IDENTITY,
    CLICKS_WITHOUT_IMPRESSION,
    CTR_BAND,
    CVR_BAND,
    DUPLICATE_RATIO,
    FAIL,
    FRESHNESS_EVENT,
    FRESHNESS_INGESTION,
    PASS,
    QUARANTINE_RATIO,
    RECONCILIATION,
    SPEND_GOLD_VS_SILVER,
    UNATTRIBUTED,
    UNKNOWN_AUCTION,
    VOLUME_ANOMALY,
    WARN,
    WON_WITHOUT_IMPRESSION,
    Band,
    Limits,
    QualitySettings,
)
from adlake.tables import (
    BATCH_AUDIT,
    BRONZE_BY_SOURCE,
    INGEST_FILE_LOG,
    SILVER_BID_REQUESTS,
    SILVER_CLICKS,
    SILVER_IMPRESSIONS,
)

log = logging.getLogger(__name__)


# -------------------------------------------------------------- grading (pure Python)
def _upper(observed: float, limits: Limits) -> tuple[str, float]:
    if observed > limits.fail:
        return FAIL, limits.fail
    if observed > limits.warn:
        return WARN, limits.warn
    return PASS, limits.warn


def _num(value: float | Decimal) -> str:
    value = float(value)
    return str(int(value)) if value.is_integer() else f"{value:.6g}"


def grade_ratio(
    check: str,
    table: str,
    scope: str,
    part: float,
    whole: float,
    limits: Limits,
    min_rows: int = 0,
) -> CheckResult:
    """part / whole against upper limits.

    A whole below `min_rows` is too small to grade (one bad row of 30 is 3 %): `pass` with
    observed null, the warn bound as threshold and detail 'insufficient volume'. With
    min_rows 0, a zero whole is observed 0 and passes.
    """
    counts = f"{_num(part)} of {_num(whole)}"
    if whole < min_rows:
        detail = f"insufficient volume ({_num(whole)} rows < {min_rows}): {counts}"
        return CheckResult(check, table, scope, None, limits.warn, PASS, detail)
    observed = part / whole if whole else 0.0
    status, threshold = _upper(observed, limits)
    return CheckResult(check, table, scope, observed, threshold, status, counts)


def grade_freshness(
    check: str,
    table: str,
    scope: str,
    newest: float | None,
    now: float,
    limits: Limits,
    note: str | None = None,
) -> CheckResult:
    """now - newest (epoch seconds) against upper limits; nothing yet is a warning.

    `note` (how `event_freshness_limits` stretched the limits) is appended to the detail.
    """
    if newest is None:
        empty = "no committed files" if check == FRESHNESS_INGESTION else "no rows"
        return CheckResult(check, table, scope, None, limits.warn, WARN, empty)
    observed = now - newest
    status, threshold = _upper(observed, limits)
    newest_at = datetime.fromtimestamp(newest, timezone.utc)
    detail = f"newest {newest_at:%Y-%m-%dT%H:%M:%SZ}" + (f"; {note}" if note else "")
    return CheckResult(check, table, scope, observed, threshold, status, detail)


def period_label(period: int, period_seconds: int) -> str:
    """A period number since the epoch as its UTC start: `2026-11-26` or `2026-11-26T13:00Z`."""
    start = EPOCH + timedelta(seconds=period * period_seconds)
    return f"{start:%Y-%m-%d}" if period_seconds == 86_400 else f"{start:%Y-%m-%dT%H:00Z}"


def evaluated_period(now: datetime, period_seconds: int) -> int:
    """The last complete period at `now`: the current one is still filling and would read as
    a drop, so it is never graded.
    """
    return int((as_utc(now) - EPOCH) // timedelta(seconds=period_seconds)) - 1


def _baseline(counts: Mapping[int, int], evaluated: int, settings: QualitySettings) -> list[int]:
    """Rows of the baseline periods of `grade_volume` (oldest first)."""
    first = evaluated - settings.baseline_periods
    if counts.get(first - 1):
        start = first
    else:
        with_rows = [p for p, n in counts.items() if first <= p < evaluated and n]
        start = min(with_rows, default=evaluated)
    return [counts.get(p, 0) for p in range(start, evaluated)]


def event_freshness_limits(
    counts: Mapping[int, int], evaluated: int, settings: QualitySettings
) -> tuple[Limits, str | None]:
    """The event freshness limits of a table with the volume profile `counts` (as for
    `grade_volume`), and a note for the detail when they were stretched.

    The expected rate is the baseline's mean, max(rows, 1) / its length: a baseline without
    rows counts as one row, so a table silent for the whole baseline is still bounded. When
    that rate expects fewer than N = event_min_expected_rows rows within the fail bound,
    both bounds are multiplied by N / expected: the fail bound becomes the time N rows are
    expected to take, and the warn bound keeps its share of it. The limits stay as
    configured when N or more rows are expected (normal volume), with less history than
    min_periods (no rate yet), and with N = 0 or a fail bound of 0.
    """
    limits, wanted = settings.event_freshness, settings.event_min_expected_rows
    baseline = _baseline(counts, evaluated, settings)
    if not wanted or not limits.fail or len(baseline) < settings.min_periods:
        return limits, None
    rows = sum(baseline)
    expected = max(rows, 1) * limits.fail / (len(baseline) * settings.period_seconds)
    if expected >= wanted:
        return limits, None
    factor = wanted / expected
    period = settings.volume_period
    rate = (
        f"~{rows / len(baseline):.2g} rows/{period}"
        if rows
        else f"no rows in {len(baseline)} {period}s (taken as 1)"
    )
    note = f"sparse: {rate}, limits x{_num(round(factor, 1))}"
    return Limits(limits.warn * factor, limits.fail * factor), note


def grade_volume(
    table: str, counts: Mapping[int, int], evaluated: int, settings: QualitySettings
) -> CheckResult:
    """Robust z of the evaluated period's count against the trailing baseline.

    `counts` maps period numbers to rows (absent = 0), with the conventions of
    `event_profile`. History starts at the table's first period with rows, so a new table
    is not compared with the empty periods before it existed; the baseline is the last
    baseline_periods periods before the evaluated one within that history.
    """
    period = settings.volume_period
    scope = period_label(evaluated, settings.period_seconds)
    baseline = _baseline(counts, evaluated, settings)
    if len(baseline) < settings.min_periods:
        return CheckResult(
            VOLUME_ANOMALY,
            table,
            scope,
            None,
            settings.volume_z.warn,
            PASS,
            f"insufficient history: {len(baseline)} of {settings.min_periods} {period}s",
        )
    x = counts.get(evaluated, 0)
    median = statistics.median(baseline)
    mad = statistics.median(abs(n - median) for n in baseline)
    if mad > 0:
        observed = abs(x - median) / (MAD_SCALE * mad)
        limits, how = settings.volume_z, f"robust z, MAD {_num(mad)}"
    else:
        # Half or more of the baseline is one value: z is undefined, use the relative change.
        observed = abs(x - median) / max(median, 1)
        limits, how = settings.volume_relative, "MAD 0: relative deviation"
    direction = "spike" if x > median else "drop" if x < median else "steady"
    status, threshold = _upper(observed, limits)
    detail = f"{direction}: {x} rows vs median {_num(median)} of {len(baseline)} {period}s ({how})"
    return CheckResult(VOLUME_ANOMALY, table, scope, observed, threshold, status, detail)


def grade_band(check: str, scope: str, part: float, whole: float, band: Band) -> CheckResult:
    """part / whole (whole > 0) must lie within [band.min, band.max]; outside is a failure."""
    observed = part / whole
    if observed < band.min:
        status, threshold, where = FAIL, band.min, "below min"
    elif observed > band.max:
        status, threshold, where = FAIL, band.max, "above max"
    else:
        nearer_min = observed - band.min <= band.max - observed
        status, threshold, where = PASS, band.min if nearer_min else band.max, "within"
    detail = f"{where} [{_num(band.min)}, {_num(band.max)}]: {_num(part)} of {_num(whole)}"
    return CheckResult(check, CAMPAIGN_DAILY, scope, observed, threshold, status, detail)


# Inputs of the checks that read more than their own table, and the table they report on.
CROSS_TABLE: dict[str, tuple[str, tuple[str, ...]]] = {
    CLICKS_WITHOUT_IMPRESSION: (
        SILVER_CLICKS.relative_path,
        (SILVER_CLICKS.relative_path, SILVER_IMPRESSIONS.relative_path),
    ),
    UNKNOWN_AUCTION: (
        SILVER_IMPRESSIONS.relative_path,
        (SILVER_IMPRESSIONS.relative_path, SILVER_BID_REQUESTS.relative_path),
    ),
    WON_WITHOUT_IMPRESSION: (
        SILVER_BID_REQUESTS.relative_path,
        (SILVER_BID_REQUESTS.relative_path, SILVER_IMPRESSIONS.relative_path),
    ),
    UNATTRIBUTED: (CAMPAIGN_ATTRIBUTION_DAILY, (CAMPAIGN_ATTRIBUTION_DAILY,)),
    SPEND_GOLD_VS_SILVER: (CAMPAIGN_DAILY, (CAMPAIGN_DAILY, SILVER_IMPRESSIONS.relative_path)),
    AUDIT_IDENTITY: (BATCH_AUDIT.relative_path, (BATCH_AUDIT.relative_path,)),
}


def grade_reconciliation(source: str, measure: Measure | None) -> CheckResult:
    """bronze rows - (silver + quarantine + duplicates) of the reconciled runs must be 0."""
    table = BRONZE_BY_SOURCE[source].relative_path
    if measure is None or measure.newest is None:
        return CheckResult(
            RECONCILIATION, table, source, None, 0.0, PASS, "no bronze run fully processed yet"
        )
    bronze, accounted = measure.value or 0.0, measure.total or 0.0
    missing = bronze - accounted
    gap = (
        "0 missing"
        if not missing
        else (f"{_num(missing)} missing" if missing > 0 else f"{_num(-missing)} extra")
    )
    detail = (
        f"bronze runs <= {_num(measure.newest)}: {_num(bronze)} rows vs silver + quarantine + "
        f"duplicates {_num(accounted)}: {gap}"
    )
    return CheckResult(
        RECONCILIATION, table, source, missing, 0.0, FAIL if missing else PASS, detail
    )


def grade_measures(
    measures: Iterable[Measure],
    settings: QualitySettings,
    now: datetime,
    present: Mapping[str, bool],
) -> list[CheckResult]:
    """Grade the measure table; `present` says which input tables exist (checks with a
    missing input are left to the caller). A measure that did not come back counts as 0.
    """
    now_s = (as_utc(now) - EPOCH).total_seconds()
    got: dict[tuple[str, str, str], Measure] = {}
    for m in measures:
        got[(m.check, m.table, m.scope or ALL)] = m
    results: list[CheckResult] = []

    def part_whole(check: str, table: str, scope: str) -> tuple[float, float]:
        m = got.get((check, table, scope))
        return (m.value or 0.0, m.total or 0.0) if m is not None else (0.0, 0.0)

    evaluated = evaluated_period(now, settings.period_seconds)
    for table in SILVER_EVENT_TABLES:
        if not present[table]:
            continue
        # One profile (one scan) per table grades both its freshness and its volume.
        buckets = [m for (c, t, _), m in got.items() if c == EVENT_PROFILE and t == table]
        newest = max((m.newest for m in buckets if m.newest is not None), default=None)
        counts = {int(m.scope or 0): int(m.value or 0) for m in buckets}
        limits, note = event_freshness_limits(counts, evaluated, settings)
        results.append(grade_freshness(FRESHNESS_EVENT, table, ALL, newest, now_s, limits, note))
        results.append(grade_volume(table, counts, evaluated, settings))

    # Ratios per scope: the expected scopes are graded 0 of 0 when no measure came back
    # (an insufficient volume unless the check's min_rows is 0).
    expected: list[tuple[str, str, str]] = []
    if present[INGEST_FILE_LOG.relative_path]:
        sources = set(SOURCES) | {s for c, _, s in got if c == FRESHNESS_INGESTION}
        for source in sorted(sources):
            committed = got.get((FRESHNESS_INGESTION, f"bronze/{source}", source))
            results.append(
                grade_freshness(
                    FRESHNESS_INGESTION,
                    f"bronze/{source}",
                    source,
                    committed.newest if committed is not None else None,
                    now_s,
                    settings.ingestion_freshness,
                )
            )
            expected.append((QUARANTINE_RATIO, f"bronze/{source}", source))
    if present[BATCH_AUDIT.relative_path]:
        for check in (QUARANTINE_RATIO, DUPLICATE_RATIO):
            expected += [(check, f"silver/{t}", t) for t in SILVER_TARGETS]
    for check in (CLICKS_WITHOUT_IMPRESSION, UNKNOWN_AUCTION, WON_WITHOUT_IMPRESSION, UNATTRIBUTED):
        table, needs = CROSS_TABLE[check]
        if all(present[t] for t in needs):
            expected.append((check, table, ALL))
    measured_ratios = {k for k in got if k[0] in (QUARANTINE_RATIO, DUPLICATE_RATIO)}
    for check, table, scope in sorted(set(expected) | measured_ratios):
        part, whole = part_whole(check, table, scope)
        limits, min_rows = settings.ratios[check], settings.ratio_min_rows[check]
        results.append(grade_ratio(check, table, scope, part, whole, limits, min_rows))

    if present[CAMPAIGN_DAILY]:
        for check, band, unit in (
            (CTR_BAND, settings.ctr, "impressions"),
            (CVR_BAND, settings.cvr, "clicks"),
        ):
            rows = [m for (c, _, _), m in got.items() if c == check]
            for m in rows:
                results.append(
                    grade_band(check, m.scope or ALL, m.value or 0.0, m.total or 0.0, band)
                )
            if not rows:
                results.append(
                    CheckResult(
                        check,
                        CAMPAIGN_DAILY,
                        ALL,
                        None,
                        None,
                        PASS,
                        f"no campaign with >= {band.min_denominator} {unit} "
                        f"in the last {settings.band_days} days",
                    )
                )

    if all(present[t] for t in CROSS_TABLE[SPEND_GOLD_VS_SILVER][1]):
        money: dict[str, Decimal] = {}
        for scope in ("gold", "silver"):
            summed = got.get((SPEND_GOLD_VS_SILVER, CAMPAIGN_DAILY, scope))
            money[scope] = summed.money if summed and summed.money is not None else Decimal(0)
        observed = float(abs(money["gold"] - money["silver"]))
        tolerance = settings.spend_tolerance
        results.append(
            CheckResult(
                SPEND_GOLD_VS_SILVER,
                CAMPAIGN_DAILY,
                ALL,
                observed,
                tolerance,
                FAIL if observed > tolerance else PASS,
                f"gold spend {_num(money['gold'])} vs silver cost {_num(money['silver'])}",
            )
        )

    if present[BATCH_AUDIT.relative_path]:
        for source in SOURCES:
            if present[BRONZE_BY_SOURCE[source].relative_path]:
                key = (RECONCILIATION, BRONZE_BY_SOURCE[source].relative_path, source)
                results.append(grade_reconciliation(source, got.get(key)))

    if present[BATCH_AUDIT.relative_path]:
        violations, rows_seen = part_whole(AUDIT_IDENTITY, BATCH_AUDIT.relative_path, ALL)
        results.append(
            CheckResult(
                AUDIT_IDENTITY,
                BATCH_AUDIT.relative_path,
                ALL,
                violations,
                0.0,
                FAIL if violations > 0 else PASS,
                f"{_num(violations)} of {_num(rows_seen)} audit rows break "
                "rows_in = rows_written + quarantined + duplicates",
            )
        )
    return results
