"""The reports the pipeline job prints at its end: top campaigns, data-quality results, rows
per lakehouse table and quarantined rows by reason."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from adlake import deltalog, metrics
from adlake.config import AppConfig
from adlake.gold.aggregates import format_top_campaigns, top_campaigns_by_roas
from adlake.quality import run as quality
from adlake.tables import (
    ALL_TABLES,
    BRONZE_QUARANTINE,
    DQ_RESULTS,
    GOLD_STATE_TABLES,
    SILVER_QUARANTINE,
    TableSpec,
)

# Every table but the internal state of incremental gold (not a result).
SUMMARY_TABLES: tuple[TableSpec, ...] = tuple(
    spec for spec in ALL_TABLES if spec not in GOLD_STATE_TABLES
)


def table_counts(
    spark: SparkSession, cfg: AppConfig, specs: Sequence[TableSpec] = SUMMARY_TABLES
) -> list[tuple[str, str, int | None]]:
    """(table name, location, rows or None when the table does not exist yet) per table."""
    rows: list[tuple[str, str, int | None]] = []
    for spec in specs:
        name, location = spec.name, spec.location(cfg)
        if deltalog.is_table(spark, location):
            rows.append((name, location, spark.read.format("delta").load(location).count()))
        else:
            rows.append((name, location, None))
    return rows


def format_counts(rows: list[tuple[str, str, int | None]]) -> str:
    """A fixed-width text table for the terminal."""
    width = max(len(name) for name, _, _ in rows)
    lines = [f"{'table':<{width}}  {'rows':>10}  location"]
    for name, location, count in rows:
        shown = "-" if count is None else f"{count:,}"
        lines.append(f"{name:<{width}}  {shown:>10}  {location}")
    return "\n".join(lines)


def quarantine_counts(spark: SparkSession, cfg: AppConfig) -> list[tuple[str, str, str, int]]:
    """(table, source, reason, rows) of both quarantine tables, for the end-of-run summary.

    Bronze rows by reason, a corrupt file's with the file name (one row per file); silver
    rows by the rules they failed.
    """
    rows: list[tuple[str, str, str, int]] = []
    bronze = BRONZE_QUARANTINE.location(cfg)
    if deltalog.is_table(spark, bronze):
        file_name = F.regexp_extract(F.col("_source_file"), r"([^/]+)$", 1)
        reason = F.when(
            F.col("reason") == "corrupt_file", F.concat(F.col("reason"), F.lit(" "), file_name)
        ).otherwise(F.col("reason"))
        counted = (
            spark.read.format("delta")
            .load(bronze)
            .groupBy("source", reason.alias("why"))
            .count()
            .collect()
        )
        rows += [(BRONZE_QUARANTINE.name, r["source"], r["why"], r["count"]) for r in counted]
    silver = SILVER_QUARANTINE.location(cfg)
    if deltalog.is_table(spark, silver):
        rules = F.concat_ws(", ", F.col("failed_rules"))
        counted = (
            spark.read.format("delta")
            .load(silver)
            .groupBy("source", rules.alias("why"))
            .count()
            .collect()
        )
        rows += [(SILVER_QUARANTINE.name, r["source"], r["why"], r["count"]) for r in counted]
    return sorted(rows)


def format_quarantine(rows: list[tuple[str, str, str, int]]) -> str:
    """A fixed-width text table of quarantine_counts."""
    if not rows:
        return "nothing quarantined"
    width = max(len(f"{table} {source}") for table, source, _, _ in rows)
    lines = [f"{'table source':<{width}}  {'rows':>8}  reason"]
    for table, source, why, count in rows:
        lines.append(f"{table + ' ' + source:<{width}}  {count:>8,}  {why}")
    return "\n".join(lines)


def closing_reports(
    spark: SparkSession, cfg: AppConfig, stages: Sequence[str]
) -> list[tuple[str, str]]:
    """(title, text) of the reports printed after the stages, in their printed order.

    They only read finished tables, and only the quality run writes (ops/dq_results), so they
    are computed side by side: each is a string of small Spark jobs and Delta log reads whose
    driver-side waits overlap. ops/dq_results is counted after the quality run has written.
    """

    def top() -> tuple[str, str]:
        title = "Top campaigns by ROAS (attributed conversions: last touch / linear)"
        return title, format_top_campaigns(top_campaigns_by_roas(spark, cfg))

    def checks() -> tuple[str, str]:
        run_ts = datetime.now(timezone.utc)
        results = quality.monitor_once(spark, cfg, now=run_ts)
        metrics.record_dq(results, run_ts)
        return "Data-quality checks (ops/dq_results)", quality.format_results(results)

    def quarantined() -> tuple[str, str]:
        title = (
            "Quarantined rows (kept with their reason; see bronze.quarantine, silver.quarantine)"
        )
        return title, format_quarantine(quarantine_counts(spark, cfg))

    before_checks = [spec for spec in SUMMARY_TABLES if spec is not DQ_RESULTS]
    with ThreadPoolExecutor(4, thread_name_prefix="adlake-report") as pool:
        first = [pool.submit(top)] if "gold" in stages else []
        first += [pool.submit(checks)] if "quality" in stages else []
        counted = pool.submit(table_counts, spark, cfg, before_checks)
        quarantine = pool.submit(quarantined)
        reports = [future.result() for future in first]  # the first failure is raised
        rows = counted.result() + table_counts(spark, cfg, [DQ_RESULTS])
        order = {spec.name: i for i, spec in enumerate(SUMMARY_TABLES)}
        rows.sort(key=lambda row: order[row[0]])
        reports.append((f"AdLake tables ({cfg.paths.lakehouse})", format_counts(rows)))
        reports.append(quarantine.result())
    return reports
