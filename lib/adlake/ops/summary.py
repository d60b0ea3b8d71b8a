"""Rows per lakehouse table, for the end-of-run summary printed by the pipeline job."""

from __future__ import annotations

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from adlake import deltalog
from adlake.config import AppConfig
from adlake.tables import ALL_TABLES, BRONZE_QUARANTINE, GOLD_STATE_TABLES, SILVER_QUARANTINE


def table_counts(spark: SparkSession, cfg: AppConfig) -> list[tuple[str, str, int | None]]:
    """(table name, location, rows or None when the table does not exist yet) for every table."""
    rows: list[tuple[str, str, int | None]] = []
    for spec in ALL_TABLES:
        if spec in GOLD_STATE_TABLES:
            continue  # internal state of incremental gold, not a result
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
