"""Table maintenance: plan and run Delta OPTIMIZE (Z-order where possible) and VACUUM.

The planning functions (which tables, which Z-order columns, which retention) are pure;
`run_maintenance` applies them table by table. Only the Delta tables of the catalog below
are touched: streaming checkpoints are not tables and are never optimized or vacuumed.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from delta.tables import DeltaTable
from pyspark.sql import SparkSession

from adlake import storage
from adlake.config import MIN_VACUUM_RETENTION_SECONDS, AppConfig, ConfigError, parse_duration
from adlake.tables import ALL_TABLES

log = logging.getLogger(__name__)

ALL = "all"
DONE, DRY_RUN, MISSING, FAILED = "done", "dry-run", "missing", "failed"

# Delta 4.4 ignores `VACUUM ... RETAIN n HOURS` unless n is 0 while this internal setting is
# true (its default), silently using the table's delta.deletedFileRetentionDuration instead.
# The job turns it off for its own runs so the configured retention is the one applied;
# Delta's retentionDurationCheck stays on, so nothing below the table's own minimum runs.
_RETENTION_WINDOW_IGNORE = "spark.databricks.delta.vacuum.retentionWindowIgnore.enabled"
_TABLE_RETENTION_PROPERTY = "delta.deletedFileRetentionDuration"
_INTERVAL_PART = re.compile(
    r"(\d+)\s*(microseconds?|milliseconds?|seconds?|minutes?|hours?|days?|weeks?)", re.I
)
_INTERVAL_SECONDS = {
    "mic": 1e-6,
    "mil": 1e-3,
    "sec": 1,
    "min": 60,
    "hou": 3600,
    "day": 86_400,
    "wee": 604_800,
}


@dataclass(frozen=True)
class MaintainedTable:
    """A lakehouse table maintenance may touch; `relative_path` is under `paths.lakehouse`."""

    name: str
    relative_path: str

    @property
    def group(self) -> str:
        """The layer a `--tables` group name selects: bronze, silver, gold or ops."""
        return self.relative_path.split("/", 1)[0]


@dataclass(frozen=True)
class TableOutcome:
    """What maintenance did (or, in a dry run, would do) to one table.

    `vacuum_files` counts files (and empty directories) VACUUM deleted, or would delete in a
    dry run; None when the table was not vacuumed or Delta did not log the VACUUM.
    """

    name: str
    location: str
    status: str
    files_before: int | None = None
    zorder_by: tuple[str, ...] = ()
    optimize_files_removed: int | None = None
    optimize_files_added: int | None = None
    vacuum_retention_hours: int | None = None
    vacuum_files: int | None = None
    error: str | None = None


def maintained_tables() -> tuple[MaintainedTable, ...]:
    """Every table AdLake writes, in the order `adlake.tables` declares them."""
    return tuple(MaintainedTable(spec.name, spec.relative_path) for spec in ALL_TABLES)


def select_tables(
    selection: str, catalog: Sequence[MaintainedTable] | None = None
) -> tuple[MaintainedTable, ...]:
    """Tables named by `--tables`: `all`, group names and relative paths, comma-separated.

    The result keeps catalog order and holds each table once; anything else is refused.
    """
    tables = tuple(catalog if catalog is not None else maintained_tables())
    groups = sorted({t.group for t in tables})
    tokens = [token.strip().strip("/") for token in selection.split(",") if token.strip()]
    if not tokens:
        raise ConfigError("--tables", "names no table")
    chosen: set[str] = set()
    for token in tokens:
        if token == ALL:
            matched = {t.relative_path for t in tables}
        elif token in groups:
            matched = {t.relative_path for t in tables if t.group == token}
        else:
            matched = {t.relative_path for t in tables if t.relative_path == token}
        if not matched:
            raise ConfigError(
                "--tables",
                f"unknown table or group {token!r}; expected {ALL}, one of {', '.join(groups)} "
                f"or a table path such as {tables[0].relative_path}",
            )
        chosen |= matched
    return tuple(t for t in tables if t.relative_path in chosen)


def parse_retention_flag(flag: str) -> int:
    """Seconds of a `--retention` value such as `7d` or `240 hours`; below 7 days is refused."""
    seconds = parse_duration(flag, "--retention")
    if seconds < MIN_VACUUM_RETENTION_SECONDS:
        raise ConfigError(
            "--retention",
            f"must be at least 7 days ({MIN_VACUUM_RETENTION_SECONDS}s), got {flag!r} ({seconds}s)",
        )
    return seconds


def zorder_columns(
    wanted: Sequence[str],
    columns: Sequence[str],
    partition_columns: Sequence[str],
    clustering_columns: Sequence[str] = (),
) -> tuple[str, ...]:
    """The configured Z-order columns this table can use; empty means plain compaction.

    A column qualifies when the table has it and it is not a partition column (Delta refuses
    to Z-order by those: every file already holds one value). A liquid-clustered table is
    never Z-ordered: its OPTIMIZE clusters by its own keys. Names match case-insensitively,
    as Spark resolves them, and come back spelled as in the table.
    """
    if clustering_columns:
        return ()
    by_lower = {c.lower(): c for c in columns}
    partitions = {c.lower() for c in partition_columns}
    chosen: list[str] = []
    for name in wanted:
        column = by_lower.get(name.lower())
        if column is not None and name.lower() not in partitions and column not in chosen:
            chosen.append(column)
    return tuple(chosen)


def table_retention_seconds(interval: str | None) -> int | None:
    """Seconds in a `delta.deletedFileRetentionDuration` value such as `interval 30 days`.

    None when unset or not a plain sum of fixed-length units; Delta then checks it itself.
    """
    if not interval:
        return None
    text = re.sub(r"^\s*interval\s+", "", interval.strip(), flags=re.I)
    parts = _INTERVAL_PART.findall(text)
    if not parts or _INTERVAL_PART.sub("", text).strip():
        return None
    total = sum(int(n) * _INTERVAL_SECONDS[unit[:3].lower()] for n, unit in parts)
    return math.ceil(total)


def vacuum_retention_hours(retention_seconds: int, table_interval: str | None = None) -> int:
    """Whole hours to pass to `VACUUM ... RETAIN n HOURS`, rounded up, never below 7 days.

    Delta rounds the hours it is given, so the seconds are rounded up here instead; a table
    whose own deletedFileRetentionDuration is longer keeps that longer retention.
    """
    if retention_seconds < MIN_VACUUM_RETENTION_SECONDS:
        raise ValueError(
            f"VACUUM retention {retention_seconds}s is below {MIN_VACUUM_RETENTION_SECONDS}s"
        )
    seconds = max(retention_seconds, table_retention_seconds(table_interval) or 0)
    return math.ceil(seconds / 3600)


def paths_overlap(location: str, other: str) -> bool:
    """True when one location is the other or lies inside it."""
    a, b = location.rstrip("/") + "/", other.rstrip("/") + "/"
    return a.startswith(b) or b.startswith(a)


def delta_path_sql(location: str) -> str:
    """`delta.`<location>`` for SQL, backticks in the path escaped."""
    return "delta.`" + location.replace("`", "``") + "`"


def run_maintenance(
    spark: SparkSession,
    cfg: AppConfig,
    tables: Sequence[MaintainedTable],
    retention_seconds: int,
    *,
    dry_run: bool = False,
) -> list[TableOutcome]:
    """OPTIMIZE then VACUUM each selected table that exists; one outcome per table, in order.

    A table that fails is reported as `failed` and the others still run. A dry run reads
    the tables and runs `VACUUM ... DRY RUN` only, so it commits nothing and deletes nothing.
    """
    vacuum_retention_hours(retention_seconds)  # refuses < 7 days before anything runs
    outcomes: list[TableOutcome] = []
    with _honoured_vacuum_retention(spark):
        for table in tables:
            location = cfg.table_path(table.relative_path)
            if paths_overlap(location, cfg.paths.checkpoints):
                outcome = TableOutcome(
                    table.name,
                    location,
                    FAILED,
                    error=f"shares a directory with paths.checkpoints {cfg.paths.checkpoints}",
                )
                log.error("maintain %s: refused, %s", table.name, outcome.error)
            elif not DeltaTable.isDeltaTable(spark, location):
                outcome = TableOutcome(table.name, location, MISSING)
                log.info("maintain %s: skipped, no Delta table at %s", table.name, location)
            else:
                outcome = _maintain_table(
                    spark, cfg, table, location, retention_seconds, dry_run=dry_run
                )
            outcomes.append(outcome)
    return outcomes


def _maintain_table(
    spark: SparkSession,
    cfg: AppConfig,
    table: MaintainedTable,
    location: str,
    retention_seconds: int,
    *,
    dry_run: bool,
) -> TableOutcome:
    try:
        delta = DeltaTable.forPath(spark, location)
        detail = delta.detail().first()
        assert detail is not None
        info = detail.asDict()
        files_before = int(info["numFiles"])
        zorder = zorder_columns(
            cfg.maintenance.zorder_by,
            delta.toDF().columns,
            info.get("partitionColumns") or [],
            info.get("clusteringColumns") or [],
        )
        hours = vacuum_retention_hours(
            retention_seconds, (info.get("properties") or {}).get(_TABLE_RETENTION_PROPERTY)
        )
        how = f"ZORDER BY ({', '.join(zorder)})" if zorder else "compaction"
        if dry_run:
            would_delete = spark.sql(
                f"VACUUM {delta_path_sql(location)} RETAIN {hours} HOURS DRY RUN"
            ).count()
            log.info(
                "maintain %s (dry run): would OPTIMIZE %s of %d files, VACUUM RETAIN %d HOURS "
                "would delete %d files",
                table.name,
                how,
                files_before,
                hours,
                would_delete,
            )
            return TableOutcome(
                table.name,
                location,
                DRY_RUN,
                files_before=files_before,
                zorder_by=zorder,
                vacuum_retention_hours=hours,
                vacuum_files=would_delete,
            )

        def optimize() -> Any:
            optimizer = delta.optimize()
            result = optimizer.executeZOrderBy(*zorder) if zorder else optimizer.executeCompaction()
            return result.first()

        removed: int | None = None
        added: int | None = None
        try:
            metrics = storage.retry_on_conflict(optimize, f"optimize {table.name}")
            removed = int(metrics["metrics"]["numFilesRemoved"]) if metrics is not None else 0
            added = int(metrics["metrics"]["numFilesAdded"]) if metrics is not None else 0
            log.info("optimize %s %s: files removed=%d added=%d", table.name, how, removed, added)
        except storage.COMMIT_CONFLICTS as exc:
            # A writer kept committing over the same files: compaction waits for the next run,
            # VACUUM (which commits no data change) still runs.
            log.warning(
                "optimize %s skipped: still conflicting with a concurrent writer (%s)",
                table.name,
                type(exc).__name__,
            )

        before = delta.history(1).first()
        version_before = int(before["version"]) if before is not None else -1
        spark.sql(f"VACUUM {delta_path_sql(location)} RETAIN {hours} HOURS")
        deleted = _vacuum_deleted_files(delta, version_before)
        log.info(
            "vacuum %s RETAIN %d HOURS: files deleted=%s",
            table.name,
            hours,
            "unknown (VACUUM not logged)" if deleted is None else deleted,
        )
        return TableOutcome(
            table.name,
            location,
            DONE,
            files_before=files_before,
            zorder_by=zorder,
            optimize_files_removed=removed,
            optimize_files_added=added,
            vacuum_retention_hours=hours,
            vacuum_files=deleted,
        )
    except Exception as exc:  # one table's failure must not keep the others unmaintained
        log.exception("maintain %s failed", table.name)
        return TableOutcome(table.name, location, FAILED, error=f"{type(exc).__name__}: {exc}")


def _vacuum_deleted_files(delta: DeltaTable, version_before: int) -> int | None:
    """numDeletedFiles of the VACUUM END this run committed; None when VACUUM is not logged.

    Delta logs VACUUM START/END commits unless the log store cannot take concurrent writes
    safely (spark.databricks.delta.vacuum.logging.enabled decides otherwise).
    """
    for row in delta.history(10).collect():
        if int(row["version"]) > version_before and row["operation"] == "VACUUM END":
            value = (row["operationMetrics"] or {}).get("numDeletedFiles")
            return None if value is None else int(value)
    return None


@contextmanager
def _honoured_vacuum_retention(spark: SparkSession) -> Iterator[None]:
    """Make `RETAIN n HOURS` count for the duration of a maintenance run, then restore."""
    try:
        previous: str | None = spark.conf.get(_RETENTION_WINDOW_IGNORE)
    except Exception:  # an older Delta without the setting always honours RETAIN
        previous = None
    spark.conf.set(_RETENTION_WINDOW_IGNORE, "false")
    try:
        yield
    finally:
        if previous is None:
            spark.conf.unset(_RETENTION_WINDOW_IGNORE)
        else:
            spark.conf.set(_RETENTION_WINDOW_IGNORE, previous)


def format_outcomes(outcomes: Sequence[TableOutcome]) -> str:
    """A fixed-width text table, one line per table; `-` where a step did not run."""
    header = (
        "table",
        "status",
        "files",
        "optimize",
        "opt_removed",
        "opt_added",
        "retain_h",
        "vacuum_files",
    )

    def shown(value: int | None) -> str:
        return "-" if value is None else str(value)

    rows = [header]
    for o in outcomes:
        optimize = "-"
        if o.status in (DONE, DRY_RUN):
            optimize = "zorder:" + ",".join(o.zorder_by) if o.zorder_by else "compaction"
        rows.append(
            (
                o.name,
                o.status,
                shown(o.files_before),
                optimize,
                shown(o.optimize_files_removed),
                shown(o.optimize_files_added),
                shown(o.vacuum_retention_hours),
                shown(o.vacuum_files),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    text_columns = {0, 1, 3}  # left-aligned; the counts are right-aligned
    lines = []
    for row in rows:
        cells = [
            f"{cell:<{width}}" if i in text_columns else f"{cell:>{width}}"
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
