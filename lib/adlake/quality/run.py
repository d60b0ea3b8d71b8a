"""One monitor run: measure every check in one Spark action (after a small one for the
reconciliation cuts), grade, write ops/dq_results."""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from functools import reduce

from pyspark.sql import DataFrame, SparkSession

from adlake import deltalog, storage
from adlake.config import SOURCES, AppConfig
from adlake.quality.checks import (
    ALL,
    CAMPAIGN_ATTRIBUTION_DAILY,
    CAMPAIGN_DAILY,
    SILVER_EVENT_TABLES,
    SILVER_TARGETS,
    TABLE_MISSING,
    CheckResult,
    Measure,
    aggregate_measures,
    as_utc,
    auction_discrepancies,
    audit_checks,
    campaign_rates,
    clicks_without_impression,
    enough_volume,
    event_profile,
    ingestion_profile,
    spend_gold_vs_silver,
    unattributed_conversions,
)
from adlake.quality.grading import (
    CROSS_TABLE,
    evaluated_period,
    grade_measures,
)
from adlake.quality.reconciliation import bronze_silver_reconciliation, reconciled_runs
from adlake.settings.quality import (
    CHECKS,
    CTR_BAND,
    CVR_BAND,
    DUPLICATE_RATIO,
    FAIL,
    FRESHNESS_EVENT,
    FRESHNESS_INGESTION,
    PASS,
    QUARANTINE_RATIO,
    RECONCILIATION,
    VOLUME_ANOMALY,
    WARN,
    QualitySettings,
)
from adlake.tables import (
    BATCH_AUDIT,
    BRONZE_BY_SOURCE,
    DQ_RESULTS,
    INGEST_FILE_LOG,
    SILVER_BID_REQUESTS,
    SILVER_CLICKS,
    SILVER_IMPRESSIONS,
    SILVER_QUARANTINE,
)

log = logging.getLogger(__name__)


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
    for check, (table, needs) in CROSS_TABLE.items():
        absent = next((t for t in needs if not present[t]), None)
        if absent is not None:
            missing.append(_missing(check, table, ALL, absent))
    return missing


def reconciled_cuts(batch_audit: DataFrame) -> dict[str, int | None]:
    """Per bronze source, the cut of `reconciled_runs`, collected (a row per source).

    A small action of its own: as values, the cuts let `bronze_silver_reconciliation` read
    each table once and prune the runs past them at the scan.
    """
    return {row["source"]: row["cut"] for row in reconciled_runs(batch_audit).collect()}


def run_checks(spark: SparkSession, cfg: AppConfig, now: datetime) -> list[CheckResult]:
    """Evaluate every check as of `now` (naive = UTC) with one collect of all measures (and
    one of the reconciliation cuts before it).

    Results are ordered by check (as in CHECKS), table and scope.
    """
    settings: QualitySettings = cfg.quality
    now = as_utc(now)
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
    present = {rel: deltalog.is_table(spark, cfg.table_path(rel)) for rel in inputs}
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
                reconciled_cuts(df[audit]),
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
    ts = as_utc(run_ts)
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
    return f"dq-{as_utc(run_ts):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def monitor_once(
    spark: SparkSession, cfg: AppConfig, now: datetime | None = None, run_id: str | None = None
) -> list[CheckResult]:
    """One monitor run: evaluate every check as of `now` and append the results as a new run."""
    run_ts = as_utc(now or datetime.now(timezone.utc))
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
