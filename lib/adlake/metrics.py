"""Prometheus metrics of AdLake jobs: names, recording helpers, and where they are published.

See docs/operations.md for how it works.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    pushadd_to_gateway,
    start_http_server,
    write_to_textfile,
)
from pyspark.sql import SparkSession
from pyspark.sql.streaming.listener import StreamingQueryListener

from adlake.config import MetricsSettings

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry()
_TABLE_LABELS = ("job_name", "source", "table")
_JOB_LABELS = ("job_name", "sources")

RECORDS_READ = Counter(
    "adlake_records_read", "Records a job read from its input.", _TABLE_LABELS, registry=REGISTRY
)
RECORDS_WRITTEN = Counter(
    "adlake_records_written", "Records written to the table.", _TABLE_LABELS, registry=REGISTRY
)
RECORDS_QUARANTINED = Counter(
    "adlake_records_quarantined",
    "Records sent to quarantine, by reason (bronze reason or first failed silver rule).",
    (*_TABLE_LABELS, "reason"),
    registry=REGISTRY,
)
DUPLICATES_REMOVED = Counter(
    "adlake_duplicates_removed",
    "Records dropped as duplicates of stored or same-batch rows.",
    _TABLE_LABELS,
    registry=REGISTRY,
)
LATE_ROWS = Counter(
    "adlake_late_rows",
    "Rows older than the newest earlier event minus silver.late_after (still stored).",
    _TABLE_LABELS,
    registry=REGISTRY,
)
JOB_DURATION = Gauge(
    "adlake_job_duration_seconds", "Duration of the last run.", _JOB_LABELS, registry=REGISTRY
)
JOB_LAST_SUCCESS = Gauge(
    "adlake_job_last_success_timestamp_seconds",
    "Unix time the last successful run ended.",
    _JOB_LABELS,
    registry=REGISTRY,
)
JOB_LAST_FAILURE = Gauge(
    "adlake_job_last_failure_timestamp_seconds",
    "Unix time the last failed run ended.",
    _JOB_LABELS,
    registry=REGISTRY,
)
JOB_FAILURES = Counter(
    "adlake_job_failures", "Failed runs of the job.", _JOB_LABELS, registry=REGISTRY
)
SOURCE_LAST_DATA = Gauge(
    "adlake_source_last_data_timestamp_seconds",
    "Unix time of the newest bronze commit that brought records for the source.",
    ("source",),
    registry=REGISTRY,
)

CHANGED_FILES = Counter(
    "adlake_bronze_changed_files",
    "Landing files re-landed under an ingested name with a new size or modification time.",
    ("source",),
    registry=REGISTRY,
)

_QUERY = ("query",)
STREAM_INPUT_RATE = Gauge(
    "adlake_stream_input_rows_per_second",
    "Input rows per second of the last micro-batch.",
    _QUERY,
    registry=REGISTRY,
)
STREAM_PROCESSED_RATE = Gauge(
    "adlake_stream_processed_rows_per_second",
    "Processed rows per second of the last micro-batch.",
    _QUERY,
    registry=REGISTRY,
)
STREAM_BATCH_DURATION = Gauge(
    "adlake_stream_batch_duration_seconds",
    "Wall time of the last micro-batch.",
    _QUERY,
    registry=REGISTRY,
)
STREAM_ROWS_BEHIND = Gauge(
    "adlake_stream_rows_behind",
    "Input rows that arrived during the last micro-batch beyond what it processed: "
    "max(0, input rate - processed rate) x batch duration.",
    _QUERY,
    registry=REGISTRY,
)
STREAM_WATERMARK = Gauge(
    "adlake_stream_watermark_timestamp_seconds",
    "Event-time watermark (silver: newest event minus silver.late_after).",
    _QUERY,
    registry=REGISTRY,
)
STREAM_LAST_PROGRESS = Gauge(
    "adlake_stream_last_progress_timestamp_seconds",
    "Unix time of the last progress report.",
    _QUERY,
    registry=REGISTRY,
)
STREAM_ACTIVE = Gauge(
    "adlake_stream_active", "1 while the query runs, 0 once it stopped.", _QUERY, registry=REGISTRY
)
STREAM_BATCHES = Counter(
    "adlake_stream_batches", "Micro-batches completed.", _QUERY, registry=REGISTRY
)

_DQ_LABELS = ("check", "table", "scope")
DQ_OBSERVED = Gauge(
    "adlake_dq_observed_value",
    "Observed value of a data-quality check.",
    _DQ_LABELS,
    registry=REGISTRY,
)
DQ_THRESHOLD = Gauge(
    "adlake_dq_threshold",
    "Failure threshold of a data-quality check.",
    _DQ_LABELS,
    registry=REGISTRY,
)
DQ_STATUS = Gauge("adlake_dq_status", "0 pass, 1 warn, 2 fail.", _DQ_LABELS, registry=REGISTRY)
DQ_LAST_RUN = Gauge(
    "adlake_dq_last_run_timestamp_seconds",
    "Unix time of the last quality-monitor run.",
    registry=REGISTRY,
)
DQ_STATUS_VALUES = {"pass": 0, "warn": 1, "fail": 2}

_server_started = False
_last_data: dict[str, float] = {}


def prepare(job_name: str, source: str, table: str, reasons: tuple[str, ...] = ()) -> None:
    """Create the series at 0 before data flows, so the first increase is visible to rate()."""
    for counter in (RECORDS_READ, RECORDS_WRITTEN, DUPLICATES_REMOVED, LATE_ROWS):
        counter.labels(job_name, source, table)
    for reason in reasons:
        RECORDS_QUARANTINED.labels(job_name, source, table, reason)


def record_batch(
    job_name: str,
    source: str,
    table: str,
    *,
    read: int,
    written: int,
    quarantined: Mapping[str, int] | None = None,
    duplicates: int = 0,
    late: int = 0,
) -> None:
    """Count what one batch did to one table."""
    RECORDS_READ.labels(job_name, source, table).inc(read)
    RECORDS_WRITTEN.labels(job_name, source, table).inc(written)
    for reason, n in (quarantined or {}).items():
        RECORDS_QUARANTINED.labels(job_name, source, table, reason).inc(n)
    DUPLICATES_REMOVED.labels(job_name, source, table).inc(duplicates)
    LATE_ROWS.labels(job_name, source, table).inc(late)


def record_source_data(source: str, at: datetime | float) -> None:
    """The newest time data arrived for a source (only moves forward)."""
    ts = at.timestamp() if isinstance(at, datetime) else float(at)
    if ts > _last_data.get(source, float("-inf")):
        _last_data[source] = ts
        SOURCE_LAST_DATA.labels(source).set(ts)


def record_changed_files(source: str, files: int) -> None:
    """Count re-landed files of a source (0 creates the series, so rate() sees the first)."""
    CHANGED_FILES.labels(source).inc(files)


def record_run(job_name: str, sources: str, seconds: float, *, ok: bool) -> None:
    """The outcome of one job run."""
    now = time.time()
    JOB_DURATION.labels(job_name, sources).set(seconds)
    if ok:
        JOB_LAST_SUCCESS.labels(job_name, sources).set(now)
        JOB_FAILURES.labels(job_name, sources)  # present at 0, so a first failure is a rise
    else:
        JOB_LAST_FAILURE.labels(job_name, sources).set(now)
        JOB_FAILURES.labels(job_name, sources).inc()


def record_dq(results: list[Any], run_ts: datetime) -> None:
    """Export data-quality results (check, table, scope, observed, threshold, status).

    The previous run's series are cleared first, so a scope that disappeared stops reporting.
    """
    for gauge in (DQ_OBSERVED, DQ_THRESHOLD, DQ_STATUS):
        gauge.clear()
    for r in results:
        labels = (r.check, r.table, r.scope)
        if r.observed is not None:  # e.g. a missing table has nothing to observe
            DQ_OBSERVED.labels(*labels).set(float(r.observed))
        if r.threshold is not None:
            DQ_THRESHOLD.labels(*labels).set(float(r.threshold))
        DQ_STATUS.labels(*labels).set(DQ_STATUS_VALUES[r.status])
    DQ_LAST_RUN.set(run_ts.timestamp())


def record_progress(progress: Any) -> None:
    """Update the stream gauges from a StreamingQueryProgress."""
    name = progress.name or str(progress.id)
    input_rate = float(progress.inputRowsPerSecond or 0.0)
    processed_rate = float(progress.processedRowsPerSecond or 0.0)
    duration = float((progress.durationMs or {}).get("triggerExecution", 0)) / 1000.0
    STREAM_INPUT_RATE.labels(name).set(input_rate)
    STREAM_PROCESSED_RATE.labels(name).set(processed_rate)
    STREAM_BATCH_DURATION.labels(name).set(duration)
    STREAM_ROWS_BEHIND.labels(name).set(max(0.0, input_rate - processed_rate) * duration)
    watermark = (progress.eventTime or {}).get("watermark")
    if watermark:
        parsed = datetime.fromisoformat(str(watermark).replace("Z", "+00:00"))
        STREAM_WATERMARK.labels(name).set(parsed.timestamp())
    STREAM_LAST_PROGRESS.labels(name).set(time.time())
    STREAM_ACTIVE.labels(name).set(1)
    STREAM_BATCHES.labels(name).inc()


class StreamMetricsListener(StreamingQueryListener):
    """Feeds the adlake_stream_* gauges from Spark's query events (on the driver)."""

    def __init__(self) -> None:
        self._names: dict[str, str] = {}
        self._terminated: set[str] = set()
        self._changed = threading.Condition()

    def wait_for_termination_events(self, queries: int, timeout: float = 10.0) -> bool:
        """Wait until `queries` termination events arrived: Spark delivers listener events
        asynchronously, so the last progress can trail the end of a query."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self._terminated) >= queries, timeout)

    def onQueryStarted(self, event: Any) -> None:  # Spark's callback names
        name = event.name or str(event.id)
        self._names[str(event.id)] = name
        STREAM_ACTIVE.labels(name).set(1)
        STREAM_BATCHES.labels(name)

    def onQueryProgress(self, event: Any) -> None:
        try:
            record_progress(event.progress)
        except Exception as exc:  # a metrics bug must not stop the query
            log.warning("metrics: bad progress event: %s", exc)

    def onQueryIdle(self, event: Any) -> None:
        name = self._names.get(str(event.id), str(event.id))
        STREAM_INPUT_RATE.labels(name).set(0.0)
        STREAM_LAST_PROGRESS.labels(name).set(time.time())

    def onQueryTerminated(self, event: Any) -> None:
        STREAM_ACTIVE.labels(self._names.get(str(event.id), str(event.id))).set(0)
        with self._changed:
            self._terminated.add(str(event.id))
            self._changed.notify_all()


def watch_streams(spark: SparkSession, settings: MetricsSettings) -> StreamMetricsListener | None:
    """Serve /metrics and register the listener before a streaming job starts its queries."""
    if not settings.enabled:
        return None
    serve(settings)
    listener = StreamMetricsListener()
    spark.streams.addListener(listener)
    return listener


def record_watermark(query: str, at: datetime | None) -> None:
    """Our own event-time watermark of a query (silver: newest event minus late_after)."""
    if at is not None:
        STREAM_WATERMARK.labels(query).set(at.timestamp())


def serve(settings: MetricsSettings) -> bool:
    """Serve the registry on the driver (once per process); False when off or not possible."""
    global _server_started
    if _server_started:
        return True
    if not settings.enabled or settings.http_port == 0:
        return False
    try:
        start_http_server(settings.http_port, addr=settings.http_host, registry=REGISTRY)
    except OSError as exc:
        log.warning(
            "metrics: cannot serve on %s:%d (%s); continuing without the endpoint",
            settings.http_host,
            settings.http_port,
            exc,
        )
        return False
    _server_started = True
    log.info("metrics: serving /metrics on %s:%d", settings.http_host, settings.http_port)
    return True


def publish(settings: MetricsSettings, job_name: str, sources: str) -> str | None:
    """Push to the Pushgateway, else write the textfile; returns where, None if nowhere."""
    if not settings.enabled:
        return None
    if settings.pushgateway_url:
        try:
            pushadd_to_gateway(
                settings.pushgateway_url,
                job=job_name,
                grouping_key={"sources": sources},
                registry=REGISTRY,
                timeout=settings.push_timeout_seconds,
            )
        except Exception as exc:  # monitoring must never fail the job
            log.warning("metrics: push to %s failed: %s", settings.pushgateway_url, exc)
            return None
        return settings.pushgateway_url
    directory = settings.textfile_dir
    if "://" in directory:
        log.warning("metrics: textfile_dir must be a local directory, got %s", directory)
        return None
    path = os.path.join(directory, f"{job_name}.prom")
    try:
        os.makedirs(directory, exist_ok=True)
        write_to_textfile(path, REGISTRY)
    except OSError as exc:
        log.warning("metrics: cannot write %s: %s", path, exc)
        return None
    return path
