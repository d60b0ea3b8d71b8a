"""Rows per lakehouse table, for the end-of-run summary printed by the pipeline job."""

from __future__ import annotations

from delta.tables import DeltaTable
from pyspark.sql import SparkSession

from adlake.config import AppConfig
from adlake.gold_run import GOLD_TABLES
from adlake.tables import ALL_TABLES


def table_counts(spark: SparkSession, cfg: AppConfig) -> list[tuple[str, str, int | None]]:
    """(table name, location, rows or None when the table does not exist yet) for every table."""
    rows: list[tuple[str, str, int | None]] = []
    named = [(spec.name, spec.relative_path) for spec in ALL_TABLES]
    named += [(rel.replace("/", "."), rel) for rel in GOLD_TABLES]
    for name, relative in named:
        location = cfg.table_path(relative)
        if DeltaTable.isDeltaTable(spark, location):
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
