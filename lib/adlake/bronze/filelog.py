"""The bronze file log's pure side: reading `ops/ingest_file_log`, planning runs, its rows.

The file log is a write-ahead log (protocol in docs/bronze.md): a run plans its files, appends
to bronze and quarantine, then commits them. Everything here is pure (log rows in, decisions
or rows out); `adlake.bronze.ingest` does the I/O. Also: what a run reports, and its errors.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from pyspark.sql import DataFrame, Row
from pyspark.sql import functions as F

from adlake import clock
from adlake.bronze.tally import Tally
from adlake.tables import CHANGED, COMMITTED, INGEST_FILE_LOG, PLANNED

# A run's records are counted per file in the pass that writes them (one aggregate per file
# and outcome), so a backlog of more files is ingested as several runs.
MAX_FILES_PER_RUN = 128

# The file-log columns planning reads (`file_log_view`), in this order.
LOG_VIEW_COLUMNS = (
    "run_seq",
    "file_path",
    "status",
    "logged_at",
    "bronze_rows",
    "quarantined_rows",
    "file_size",
    "file_modified_ms",
)
_STATS_COLUMNS = ("file_size", "file_modified_ms")


@dataclass(frozen=True)
class RunResult:
    """What one ingest run wrote; `records == bronze_rows + quarantined_rows` per run."""

    source: str
    run_seq: int
    mode: str
    files: int
    bronze_rows: int
    quarantined_rows: int
    corrupt_files: int
    seconds: float
    quarantined_by_reason: tuple[tuple[str, int], ...] = ()
    changed_files: int = 0  # re-landed files found by this run (ingested when reingest_changed)

    @property
    def records(self) -> int:
        return self.bronze_rows + self.quarantined_rows


def run_result(
    source: str,
    run_seq: int,
    mode: str,
    files: int,
    tally: Tally,
    corrupt_files: int,
    seconds: float,
    changed_files: int = 0,
) -> RunResult:
    """The result of a run whose records `tally` counted (rejects per reason sorted by name)."""
    return RunResult(
        source,
        run_seq,
        mode,
        files,
        tally.good,
        tally.bad,
        corrupt_files,
        seconds,
        tuple(sorted(dict(tally.reasons).items())),
        changed_files,
    )


class CorruptFileNotIdentifiedError(RuntimeError):
    """A read failed and no input file could be blamed, so the run stops instead of guessing."""


class ConcurrentRunError(RuntimeError):
    """Another run of the same source planned the same run number first; nothing was written."""


class FileStats(NamedTuple):
    """A file as listed; None in log rows written before they were kept."""

    size: int | None
    modified_ms: int | None


def file_log_view(source: str) -> Callable[[DataFrame], DataFrame]:
    """The source's rows of the file log in `LOG_VIEW_COLUMNS`.

    Logs created before the stats columns lack them until their first new write: they read
    as null.
    """

    def transform(file_log: DataFrame) -> DataFrame:
        stats = [
            F.col(c) if c in file_log.columns else F.lit(None).cast("long").alias(c)
            for c in _STATS_COLUMNS
        ]
        plain = [c for c in LOG_VIEW_COLUMNS if c not in _STATS_COLUMNS]
        return file_log.where(F.col("source") == source).select(*plain, *stats)

    return transform


def _stats(row: Row) -> FileStats:
    return FileStats(row["file_size"], row["file_modified_ms"])


def last_data_time(rows: Sequence[Row]) -> float | None:
    """Epoch seconds of the latest commit that brought records, or None when none did."""
    times = [
        clock.aware(r["logged_at"]).timestamp()
        for r in rows
        if r["status"] == COMMITTED and (r["bronze_rows"] or 0) + (r["quarantined_rows"] or 0)
    ]
    return max(times) if times else None


@dataclass(frozen=True)
class PendingRun:
    """A run planned but never committed (a crash): redone with its own files and time."""

    run_seq: int
    files: list[str]
    ingested_at: datetime
    stats: dict[str, FileStats]


def pending_runs(rows: Sequence[Row]) -> list[PendingRun]:
    """The runs with `planned` rows and no `committed` row, by run number."""
    committed_runs = {r["run_seq"] for r in rows if r["status"] == COMMITTED}
    by_run: dict[int, list[Row]] = {}
    for row in rows:
        if row["status"] == PLANNED and row["run_seq"] not in committed_runs:
            by_run.setdefault(row["run_seq"], []).append(row)
    return [
        PendingRun(
            run_seq,
            sorted(r["file_path"] for r in by_run[run_seq]),
            clock.aware(by_run[run_seq][0]["logged_at"]),
            {r["file_path"]: _stats(r) for r in by_run[run_seq]},
        )
        for run_seq in sorted(by_run)
    ]


@dataclass(frozen=True)
class Candidates:
    """Listed files against the log: new ones, re-landed (changed) ones, what the log saw."""

    new_files: list[str]
    changed: list[str]
    last_seen: dict[str, FileStats]
    last_run: int


def find_candidates(rows: Sequence[Row], listed: Mapping[str, FileStats]) -> Candidates:
    """Files listed but never logged, and logged files listed with another size or time.

    The latest run's stats of a file win; rows logged before sizes were kept have none, so
    those files cannot be compared (never changed).
    """
    last_seen: dict[str, FileStats] = {}
    for row in sorted(rows, key=lambda r: r["run_seq"]):
        last_seen[row["file_path"]] = _stats(row)
    new_files = sorted(set(listed) - set(last_seen))
    changed = sorted(
        path
        for path, seen in last_seen.items()
        if path in listed and seen[0] is not None and seen != listed[path]
    )
    last_run = max((r["run_seq"] for r in rows), default=0)
    return Candidates(new_files, changed, last_seen, last_run)


def split_runs(files: Sequence[str]) -> list[list[str]]:
    """The files in runs of at most MAX_FILES_PER_RUN; one empty run when there are none."""
    runs = [list(files[i : i + MAX_FILES_PER_RUN]) for i in range(0, len(files), MAX_FILES_PER_RUN)]
    return runs or [[]]


def plan_entries(run_files: Iterable[str], changed: Iterable[str]) -> list[tuple[str, str]]:
    """A run's plan: (path, planned) per file, then (path, changed) per re-landed file."""
    return [(path, PLANNED) for path in run_files] + [(path, CHANGED) for path in changed]


def file_log_rows(
    source: str,
    run_seq: int,
    entries: Sequence[tuple[str, str]],
    mode: str,
    logged_at: datetime,
    counts: Mapping[str, tuple[int, int]],
    stats: Mapping[str, FileStats],
) -> list[tuple[Any, ...]]:
    """Rows in INGEST_FILE_LOG's column order for (path, status) entries of one run."""
    return [
        (
            source,
            run_seq,
            path,
            status,
            mode,
            counts[path][0] if path in counts else None,
            counts[path][1] if path in counts else None,
            logged_at,
            *stats.get(path, (None, None)),
        )
        for path, status in entries
    ]


def log_view_rows(rows: Iterable[Sequence[Any]]) -> list[Row]:
    """`file_log_rows` output as the rows `file_log_view` reads back (LOG_VIEW_COLUMNS)."""
    names = INGEST_FILE_LOG.schema.fieldNames()
    by_name = [dict(zip(names, row, strict=True)) for row in rows]
    return [Row(**{c: values[c] for c in LOG_VIEW_COLUMNS}) for values in by_name]


def log_version(run_seq: int, entries: Sequence[tuple[str, str]]) -> int:
    """Plan -> 2k, commit -> 2k+1: idempotent and strictly increasing per source."""
    return 2 * run_seq + (1 if entries[0][1] == COMMITTED else 0)


def _bare(path: str) -> str:
    """A path without scheme and leading slashes, to match `file:/x` against `file:///x`."""
    return re.sub(r"^[a-zA-Z][a-zA-Z0-9+.-]*:/*", "", path).lstrip("/")


def blamed_file(error: Exception, files: Iterable[str]) -> str | None:
    """The input file Spark's error names (FAILED_READ_FILE carries the path), if any."""
    bare_text = re.sub(r"[a-zA-Z][a-zA-Z0-9+.-]*:/+", "", str(error))
    # Longest first so that `a.avro` never matches inside `aa.avro`'s message.
    for path in sorted(files, key=len, reverse=True):
        if _bare(path) in bare_text:
            return path
    return None


def first_line(error: Exception) -> str:
    """The error's last `Caused by:` line, else its first line (at most 500 characters)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    causes = [line for line in lines if line.startswith("Caused by:")]
    return (causes[-1] if causes else lines[0] if lines else repr(error))[:500]
