"""Data-quality checks of the lakehouse, their thresholds, and the `ops/dq_results` writer.

Each check is a pure function from input DataFrames to *contributions* (check, table, scope,
value, total, newest, money), built from Spark built-ins only. `run_checks` unions the
contributions of every check whose input tables exist and aggregates them per (check, table,
scope) into the small measure table (a row per source, campaign, period or `all`), which is
the only thing collected: one Spark action for the whole run. The measures are then graded
in plain Python (`grade_*`) against `QualitySettings` into `CheckResult`s.

Statuses: `fail` when the observed value is strictly above the fail bound (bands: strictly
outside [min, max]), else `warn` when strictly above the warn bound, else `pass`. `threshold`
is the bound the status refers to: the fail bound on `fail` rows, the warn bound otherwise
(bands: the bound crossed, or the nearer one when inside). A missing input table gives
`warn` with detail 'table missing' (naming the table when it is another input of the check);
a ratio whose denominator is below its minimum passes as 'insufficient volume' (with a minimum
of 0, a zero denominator is observed 0 and passes). observed is null only when nothing could
be measured or graded (no rows, insufficient history or volume, no committed files).

Minimum volume. Fixed bounds suit tables with steady traffic; on sparse tables they grade
chance, not health. Event freshness: when the table's baseline (the periods volume_anomaly
compares against, from the same scan) expects fewer than `event_min_expected_rows` rows
within the fail bound, both bounds are multiplied by the factor that makes it expect that
many (`event_freshness_limits`). Ratios: a denominator below the check's `ratio_min_rows`
passes as 'insufficient volume' (`grade_ratio`).
"""

from __future__ import annotations

import logging
import math
import statistics
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from functools import reduce
from typing import Any, NamedTuple

from delta.tables import DeltaTable
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from adlake import schemas, storage
from adlake.config import (
    SOURCES,
    AppConfig,
    ConfigError,
    ConfigSection,
    parse_duration,
    positive_int,
)
from adlake.schemas import MONEY_SUM
from adlake.settings.gold import LAST_TOUCH
from adlake.tables import (
    BATCH_AUDIT,
    BRONZE_BY_SOURCE,
    COMMITTED,
    DQ_RESULTS,
    GOLD_CAMPAIGN_ATTRIBUTION_DAILY,
    GOLD_CAMPAIGN_DAILY,
    INGEST_FILE_LOG,
    SILVER_BID_REQUESTS,
    SILVER_CLICKS,
    SILVER_CONVERSIONS,
    SILVER_IMPRESSIONS,
    SILVER_JOB,
    SILVER_QUARANTINE,
    TARGETS_BY_SOURCE,
)

CAMPAIGN_DAILY = GOLD_CAMPAIGN_DAILY.relative_path
CAMPAIGN_ATTRIBUTION_DAILY = GOLD_CAMPAIGN_ATTRIBUTION_DAILY.relative_path

log = logging.getLogger(__name__)

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
# Internal measure shared by freshness_event_seconds and volume_anomaly (one scan per table).
EVENT_PROFILE = "event_profile"

PASS, WARN, FAIL = "pass", "warn", "fail"
ALL = "all"
TABLE_MISSING = "table missing"
PERIOD_SECONDS: dict[str, int] = {"hour": 3_600, "day": 86_400}
# 1.4826 x MAD estimates the standard deviation of normally distributed counts.
MAD_SCALE = 1.4826

SILVER_EVENT_TABLES: tuple[str, ...] = tuple(
    spec.relative_path
    for spec in (SILVER_IMPRESSIONS, SILVER_CLICKS, SILVER_CONVERSIONS, SILVER_BID_REQUESTS)
)
# ops/batch_audit's `source` of a silver run is the silver table name.
SILVER_TARGETS: tuple[str, ...] = tuple(rel.split("/", 1)[1] for rel in SILVER_EVENT_TABLES)

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


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
def _contribution(
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


def _rows(df: DataFrame, *contributions: Column) -> DataFrame:
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
    return F.unix_micros(F.col(column)) >= F.lit(_micros(since))


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
            _rows(
                df.where(F.col("event_ts").isNotNull()),
                _contribution(
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
    return _rows(
        committed,
        _contribution(
            FRESHNESS_INGESTION,
            table,
            F.col("source"),
            newest=F.unix_micros("logged_at") / 1e6,
        ),
        _contribution(
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
    return _rows(
        rows,
        _contribution(
            QUARANTINE_RATIO, table, F.col("source"), value=F.col("quarantined"), total=rows_in
        ),
        _contribution(
            DUPLICATE_RATIO, table, F.col("source"), value=F.col("duplicates"), total=rows_in
        ),
        _contribution(
            AUDIT_IDENTITY,
            BATCH_AUDIT.relative_path,
            ALL,
            value=_flag(~F.coalesce(holds, F.lit(False))),
            total=F.lit(1),
        ),
    ).where(F.col("table").isNotNull())  # ratios of other jobs' rows have no silver table


def _bronze_source() -> Column:
    """Map of silver target (ops/batch_audit `source`) -> the bronze source it is read from."""
    return F.create_map(
        *[F.lit(x) for s, targets in TARGETS_BY_SOURCE.items() for t in targets for x in (t, s)]
    )


def reconciled_runs(batch_audit: DataFrame) -> DataFrame:
    """Per bronze source (`source`): `cut`, the newest bronze run silver has fully processed
    whose audit rows it does not split.

    Silver reads bronze in commit order, so every run below the lowest run of a later batch
    is complete; a cut there must also leave no audit row (a [min, max] run range of a
    batch and target) straddling it, so the duplicates of runs <= cut are exactly those of
    audit rows with max <= cut. The newest batch is thus never reconciled until a later one
    exists: in a running stream its run may still be half read.
    """
    to_source = _bronze_source()
    ranges = batch_audit.where(
        (F.col("job") == SILVER_JOB)
        & F.col("bronze_run_seq_min").isNotNull()
        & F.col("bronze_run_seq_max").isNotNull()
    ).select(
        to_source[F.col("source")].alias("source"),
        F.col("bronze_run_seq_min").alias("lo"),
        F.col("bronze_run_seq_max").alias("hi"),
    )
    earlier = Window.partitionBy("source").orderBy("lo").rangeBetween(Window.unboundedPreceding, -1)
    highest_before = F.max("hi").over(earlier)
    clean = highest_before.isNull() | (highest_before < F.col("lo"))
    return (
        ranges.where(F.col("source").isNotNull())
        .withColumn("_cut", F.when(clean, F.col("lo") - 1))
        .groupBy("source")
        .agg(F.max("_cut").alias("cut"))
    )


def bronze_silver_reconciliation(
    bronze: Mapping[str, DataFrame],
    silver_tables: Mapping[str, DataFrame],
    quarantine: DataFrame | None,
    batch_audit: DataFrame,
) -> DataFrame:
    """Per bronze source, over its runs <= `reconciled_runs` cut, recomputed from the tables:
    bronze rows (value) against silver rows + silver quarantine rows + audited duplicates
    (total); newest = the cut. Silver and quarantine rows find their run through their
    `_source_file` (a landing file is one bronze run). `bronze` maps source -> bronze table,
    `silver_tables` target -> silver table; a missing silver table counts as empty.
    """
    cuts = reconciled_runs(batch_audit)
    audit_source = _bronze_source()[F.col("source")]
    parts = []
    for source, table in bronze.items():
        check_table = BRONZE_BY_SOURCE[source].relative_path
        cut = F.broadcast(cuts.where(F.col("source") == source).select("cut"))
        per_file = (
            table.groupBy(schemas.SOURCE_FILE, schemas.RUN_SEQ)
            .agg(F.count(F.lit(1)).alias("_rows"))
            .crossJoin(cut)
            .where(F.col(schemas.RUN_SEQ) <= F.col("cut"))
        )
        runs = per_file.groupBy(schemas.SOURCE_FILE).agg(F.min(schemas.RUN_SEQ).alias("_run"))
        parts.append(
            _rows(cut, _contribution(RECONCILIATION, check_table, source, newest=F.col("cut")))
        )
        parts.append(
            _rows(
                per_file, _contribution(RECONCILIATION, check_table, source, value=F.col("_rows"))
            )
        )
        targets = TARGETS_BY_SOURCE[source]
        stored = [
            silver_tables[t].select(schemas.SOURCE_FILE) for t in targets if t in silver_tables
        ]
        if quarantine is not None:
            stored.append(
                quarantine.where(F.col("source").isin(*targets)).select(schemas.SOURCE_FILE)
            )
        for rows in stored:
            matched = rows.join(F.broadcast(runs), schemas.SOURCE_FILE)
            parts.append(
                _rows(matched, _contribution(RECONCILIATION, check_table, source, total=F.lit(1)))
            )
        duplicates = (
            batch_audit.where((F.col("job") == SILVER_JOB) & (audit_source == F.lit(source)))
            .crossJoin(cut)
            .where(F.col("bronze_run_seq_max") <= F.col("cut"))
        )
        parts.append(
            _rows(
                duplicates,
                _contribution(
                    RECONCILIATION, check_table, source, total=F.coalesce("duplicates", F.lit(0))
                ),
            )
        )
    return reduce(DataFrame.unionByName, parts)


def campaign_rates(campaign_daily: DataFrame, since: date) -> DataFrame:
    """Per campaign over gold/campaign_daily days >= `since`: clicks of impressions (ctr_band)
    and conversions of clicks (cvr_band). Rows without a campaign_id are left out; apply
    `enough_volume` to the aggregated measures.
    """
    recent = campaign_daily.where(
        (F.col("event_date") >= F.lit(since)) & F.col("campaign_id").isNotNull()
    )
    campaign = F.col("campaign_id")
    return _rows(
        recent,
        _contribution(
            CTR_BAND, CAMPAIGN_DAILY, campaign, value=F.col("clicks"), total=F.col("impressions")
        ),
        _contribution(
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
    return _rows(
        flagged,
        _contribution(
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
    return _rows(
        per_auction,
        _contribution(
            UNKNOWN_AUCTION,
            SILVER_IMPRESSIONS.relative_path,
            ALL,
            value=F.when(bids == 0, imps).otherwise(0),
            total=imps,
        ),
        _contribution(
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
    return _rows(
        campaign_attribution_daily.where(F.col("model") == LAST_TOUCH),
        _contribution(
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
    return _rows(
        campaign_daily,
        _contribution(SPEND_GOLD_VS_SILVER, CAMPAIGN_DAILY, "gold", money=F.col("spend")),
    ).unionByName(
        _rows(
            impressions,
            _contribution(SPEND_GOLD_VS_SILVER, CAMPAIGN_DAILY, "silver", money=F.col("cost")),
        )
    )


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
    start = _EPOCH + timedelta(seconds=period * period_seconds)
    return f"{start:%Y-%m-%d}" if period_seconds == 86_400 else f"{start:%Y-%m-%dT%H:00Z}"


def evaluated_period(now: datetime, period_seconds: int) -> int:
    """The last complete period at `now`: the current one is still filling and would read as
    a drop, so it is never graded.
    """
    return int((_as_utc(now) - _EPOCH) // timedelta(seconds=period_seconds)) - 1


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
_CROSS_TABLE: dict[str, tuple[str, tuple[str, ...]]] = {
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
    now_s = (_as_utc(now) - _EPOCH).total_seconds()
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
        table, needs = _CROSS_TABLE[check]
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

    if all(present[t] for t in _CROSS_TABLE[SPEND_GOLD_VS_SILVER][1]):
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


# ------------------------------------------------------------------------- the runs
def _missing(check: str, table: str, scope: str, missing_table: str) -> CheckResult:
    detail = TABLE_MISSING if missing_table == table else f"{TABLE_MISSING}: {missing_table}"
    return CheckResult(check, table, scope, None, None, WARN, detail)


def _missing_results(present: Mapping[str, bool]) -> list[CheckResult]:
    """`warn` rows for every check that has a missing input table."""
    missing: list[CheckResult] = []
    for table in SILVER_EVENT_TABLES:
        if not present[table]:
            missing += [_missing(c, table, ALL, table) for c in (FRESHNESS_EVENT, VOLUME_ANOMALY)]
    log_table = INGEST_FILE_LOG.relative_path
    if not present[log_table]:
        for source in SOURCES:
            table = BRONZE_BY_SOURCE[source].relative_path
            missing += [
                _missing(c, table, source, log_table)
                for c in (FRESHNESS_INGESTION, QUARANTINE_RATIO)
            ]
    audit = BATCH_AUDIT.relative_path
    if not present[audit]:
        for target in SILVER_TARGETS:
            missing += [
                _missing(c, f"silver/{target}", target, audit)
                for c in (QUARANTINE_RATIO, DUPLICATE_RATIO)
            ]
    if not present[CAMPAIGN_DAILY]:
        missing += [_missing(c, CAMPAIGN_DAILY, ALL, CAMPAIGN_DAILY) for c in (CTR_BAND, CVR_BAND)]
    for source in SOURCES:
        table = BRONZE_BY_SOURCE[source].relative_path
        absent = next((t for t in (table, audit) if not present[t]), None)
        if absent is not None:
            missing.append(_missing(RECONCILIATION, table, source, absent))
    for check, (table, needs) in _CROSS_TABLE.items():
        absent = next((t for t in needs if not present[t]), None)
        if absent is not None:
            missing.append(_missing(check, table, ALL, absent))
    return missing


def run_checks(spark: SparkSession, cfg: AppConfig, now: datetime) -> list[CheckResult]:
    """Evaluate every check as of `now` (naive = UTC) with one collect of all measures.

    Results are ordered by check (as in CHECKS), table and scope.
    """
    settings: QualitySettings = cfg.quality
    now = _as_utc(now)
    since = (
        now - timedelta(seconds=settings.audit_window_seconds)
        if settings.audit_window_seconds
        else None
    )
    inputs = (
        *SILVER_EVENT_TABLES,
        INGEST_FILE_LOG.relative_path,
        BATCH_AUDIT.relative_path,
        CAMPAIGN_DAILY,
        CAMPAIGN_ATTRIBUTION_DAILY,
        SILVER_QUARANTINE.relative_path,
        *[BRONZE_BY_SOURCE[source].relative_path for source in SOURCES],
    )
    present = {rel: DeltaTable.isDeltaTable(spark, cfg.table_path(rel)) for rel in inputs}
    df = {rel: storage.read_table(spark, cfg.table_path(rel)) for rel in inputs if present[rel]}
    imp, clk, bids = (
        SILVER_IMPRESSIONS.relative_path,
        SILVER_CLICKS.relative_path,
        SILVER_BID_REQUESTS.relative_path,
    )
    audit, file_log = BATCH_AUDIT.relative_path, INGEST_FILE_LOG.relative_path

    parts: list[DataFrame] = []
    events = {t: df[t] for t in SILVER_EVENT_TABLES if present[t]}
    if events:
        evaluated = evaluated_period(now, settings.period_seconds)
        parts.append(
            event_profile(events, evaluated, settings.period_seconds, settings.baseline_periods)
        )
    if present[file_log]:
        parts.append(ingestion_profile(df[file_log], since))
    if present[audit]:
        parts.append(audit_checks(df[audit], since))
    if present[CAMPAIGN_DAILY]:
        since_day = now.date() - timedelta(days=settings.band_days - 1)
        parts.append(campaign_rates(df[CAMPAIGN_DAILY], since_day))
    if present[clk] and present[imp]:
        parts.append(clicks_without_impression(df[clk], df[imp]))
    if present[imp] and present[bids]:
        parts.append(auction_discrepancies(df[imp], df[bids]))
    if present[CAMPAIGN_ATTRIBUTION_DAILY]:
        parts.append(unattributed_conversions(df[CAMPAIGN_ATTRIBUTION_DAILY]))
    if present[CAMPAIGN_DAILY] and present[imp]:
        parts.append(spend_gold_vs_silver(df[CAMPAIGN_DAILY], df[imp]))
    bronze = {
        s: df[BRONZE_BY_SOURCE[s].relative_path]
        for s in SOURCES
        if present[BRONZE_BY_SOURCE[s].relative_path]
    }
    if present[audit] and bronze:
        parts.append(
            bronze_silver_reconciliation(
                bronze,
                {rel.split("/", 1)[1]: df[rel] for rel in SILVER_EVENT_TABLES if present[rel]},
                df.get(SILVER_QUARANTINE.relative_path),
                df[audit],
            )
        )

    collected: list[Measure] = []
    if parts:
        measures = aggregate_measures(reduce(DataFrame.unionByName, parts)).where(
            enough_volume(settings.ctr.min_denominator, settings.cvr.min_denominator)
        )
        collected = [Measure(*row) for row in measures.collect()]
    results = grade_measures(collected, settings, now, present) + _missing_results(present)
    order = {check: i for i, check in enumerate(CHECKS)}
    return sorted(results, key=lambda r: (order[r.check], r.table, r.scope))


def write_results(
    spark: SparkSession,
    cfg: AppConfig,
    run_id: str,
    run_ts: datetime,
    results: Sequence[CheckResult],
) -> int:
    """Append the results of one run to ops/dq_results; returns the rows of the run.

    The append is a Delta idempotent write keyed by the run (txnAppId `adlake-dq-<run_id>`),
    so retrying the write of a run after a failure never stores it twice.
    """
    location = DQ_RESULTS.location(cfg)
    storage.ensure_table(spark, DQ_RESULTS, location)
    if not results:
        log.warning("dq run %s: no results to write", run_id)
        return 0
    ts = _as_utc(run_ts)
    rows = [
        (
            run_id,
            ts,
            r.check,
            r.table,
            r.scope,
            None if r.observed is None else float(r.observed),
            None if r.threshold is None else float(r.threshold),
            r.status,
            r.detail,
        )
        for r in results
    ]
    frame = spark.createDataFrame(rows, DQ_RESULTS.schema)
    storage.append_idempotent(frame, DQ_RESULTS, location, f"adlake-dq-{run_id}", 0)
    return len(rows)


def new_run_id(run_ts: datetime) -> str:
    """A readable, unique id of one monitor run: `dq-20261127T120000Z-1a2b3c4d`."""
    return f"dq-{_as_utc(run_ts):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def monitor_once(
    spark: SparkSession, cfg: AppConfig, now: datetime | None = None, run_id: str | None = None
) -> list[CheckResult]:
    """One monitor run: evaluate every check as of `now` and append the results as a new run."""
    run_ts = _as_utc(now or datetime.now(timezone.utc))
    run_id = run_id or new_run_id(run_ts)
    results = run_checks(spark, cfg, run_ts)
    written = write_results(spark, cfg, run_id, run_ts, results)
    statuses = Counter(r.status for r in results)
    log.info(
        "dq run %s: %d results written to %s (pass=%d warn=%d fail=%d)",
        run_id,
        written,
        DQ_RESULTS.relative_path,
        statuses[PASS],
        statuses[WARN],
        statuses[FAIL],
    )
    for r in results:
        if r.status == FAIL:
            log.warning("dq fail: %s %s %s: %s", r.check, r.table, r.scope, r.detail)
    return results


def format_results(results: Sequence[CheckResult]) -> str:
    """A fixed-width text table (check, table, scope, observed, threshold, status)."""
    header = ("check", "table", "scope", "observed", "threshold", "status")
    body = [
        (
            r.check,
            r.table,
            r.scope,
            "-" if r.observed is None else f"{r.observed:.6g}",
            "-" if r.threshold is None else f"{r.threshold:.6g}",
            r.status,
        )
        for r in results
    ]
    widths = [max(len(row[i]) for row in (header, *body)) for i in range(len(header))]
    numeric = {3, 4}

    def line(row: tuple[str, ...]) -> str:
        cells = [
            cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        return "  ".join(cells).rstrip()

    return "\n".join(line(row) for row in (header, *body))


def _as_utc(moment: datetime) -> datetime:
    """An aware UTC datetime; naive values are taken as UTC."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def _micros(moment: datetime) -> int:
    return (_as_utc(moment) - _EPOCH) // timedelta(microseconds=1)
