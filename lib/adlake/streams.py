"""Driver-side control of streaming queries shared by every streaming job."""

from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType

from pyspark.sql.streaming.query import StreamingQuery
from pyspark.sql.streaming.readwriter import DataStreamWriter

from adlake.config import trigger_interval

log = logging.getLogger(__name__)


def stop_on_signals() -> threading.Event:
    """Turn SIGTERM/SIGINT into an event the driver loop polls, so no batch is cut mid-write."""
    stop = threading.Event()

    def handler(signum: int, _frame: FrameType | None) -> None:
        log.warning("signal %d received: stopping streams after the running micro-batch", signum)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def wait_for_queries(
    queries: list[StreamingQuery], stop: threading.Event, timeout_seconds: int
) -> None:
    """Block until every query ends; on `stop`, let each running micro-batch finish, then stop.

    Raises if a query died with an error, so the job exits non-zero.
    """
    try:
        while any(q.isActive for q in queries):
            if stop.is_set():
                deadline = time.monotonic() + timeout_seconds
                for q in queries:
                    while (
                        q.isActive
                        and q.status.get("isTriggerActive")
                        and time.monotonic() < deadline
                    ):
                        time.sleep(0.2)
                    q.stop()
                    log.info("stream %s stopped", q.name)
                break
            for q in queries:
                q.awaitTermination(1)
    finally:
        for q in queries:
            if q.isActive:
                q.stop()
    for q in queries:
        error = q.exception()
        if error is not None:
            raise RuntimeError(f"stream {q.name} failed: {error}")


def with_trigger(writer: DataStreamWriter, trigger: str) -> DataStreamWriter:
    """Apply a validated trigger string: `available-now` or a processing-time interval."""
    if trigger == "available-now":
        return writer.trigger(availableNow=True)
    return writer.trigger(processingTime=trigger_interval(trigger))
