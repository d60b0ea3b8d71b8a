"""Metrics recording and publishing, without Spark: names, values, and never failing a job."""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from adlake import metrics
from adlake.cli import run_job
from adlake.config import AppConfig

from .conftest import config_for, write_config


def value(name: str, **labels: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(name, labels)


def test_record_batch_counts_every_kind_and_prepare_creates_zero_series() -> None:
    labels = {"job_name": "t_batch", "source": "s1", "table": "bronze/s1"}
    metrics.prepare("t_batch", "s1", "bronze/s1", ("malformed_json",))
    assert value("adlake_records_read_total", **labels) == 0.0
    assert value("adlake_records_quarantined_total", **labels, reason="malformed_json") == 0.0
    for _ in range(2):
        metrics.record_batch(
            "t_batch",
            "s1",
            "bronze/s1",
            read=10,
            written=7,
            quarantined={"malformed_json": 2},
            duplicates=1,
            late=3,
        )
    assert value("adlake_records_read_total", **labels) == 20.0
    assert value("adlake_records_written_total", **labels) == 14.0
    assert value("adlake_records_quarantined_total", **labels, reason="malformed_json") == 4.0
    assert value("adlake_duplicates_removed_total", **labels) == 2.0
    assert value("adlake_late_rows_total", **labels) == 6.0


def test_source_last_data_only_moves_forward() -> None:
    metrics.record_source_data("s_fwd", 200.0)
    metrics.record_source_data("s_fwd", 100.0)
    assert value("adlake_source_last_data_timestamp_seconds", source="s_fwd") == 200.0
    metrics.record_source_data("s_fwd", datetime(2026, 1, 1, tzinfo=timezone.utc))
    assert value("adlake_source_last_data_timestamp_seconds", source="s_fwd") == 1767225600.0


def test_progress_sets_stream_gauges() -> None:
    progress = SimpleNamespace(
        name="q_test",
        id="x",
        batchId=4,
        numInputRows=300,
        inputRowsPerSecond=150.0,
        processedRowsPerSecond=100.0,
        durationMs={"triggerExecution": 2000},
        eventTime={"watermark": "2026-01-01T00:00:00.000Z"},
    )
    metrics.record_progress(progress)
    assert value("adlake_stream_input_rows_per_second", query="q_test") == 150.0
    assert value("adlake_stream_processed_rows_per_second", query="q_test") == 100.0
    assert value("adlake_stream_batch_duration_seconds", query="q_test") == 2.0
    assert value("adlake_stream_rows_behind", query="q_test") == 100.0  # (150-100) x 2 s
    assert value("adlake_stream_watermark_timestamp_seconds", query="q_test") == 1767225600.0
    assert value("adlake_stream_active", query="q_test") == 1.0
    assert value("adlake_stream_batches_total", query="q_test") == 1.0


@dataclass(frozen=True)
class _Result:
    check: str
    table: str
    scope: str
    observed: float
    threshold: float
    status: str


def test_dq_results_replace_the_previous_run() -> None:
    run = datetime(2026, 1, 1, tzinfo=timezone.utc)
    metrics.record_dq([_Result("c_old", "silver/x", "all", 1.0, 2.0, "pass")], run)
    metrics.record_dq([_Result("c_new", "silver/x", "s", 0.5, 0.1, "fail")], run)
    assert value("adlake_dq_status", check="c_old", table="silver/x", scope="all") is None
    assert value("adlake_dq_status", check="c_new", table="silver/x", scope="s") == 2.0
    assert value("adlake_dq_observed_value", check="c_new", table="silver/x", scope="s") == 0.5
    assert value("adlake_dq_threshold", check="c_new", table="silver/x", scope="s") == 0.1
    assert value("adlake_dq_last_run_timestamp_seconds") == 1767225600.0


def test_publish_writes_the_textfile(tmp_path: Path) -> None:
    settings = replace(config_for(tmp_path).metrics, textfile_dir=str(tmp_path / "prom"))
    metrics.record_batch("t_text", "s2", "silver/s2", read=5, written=5)
    where = metrics.publish(settings, "t_text", "all")
    assert where == str(tmp_path / "prom" / "t_text.prom")
    text = (tmp_path / "prom" / "t_text.prom").read_text(encoding="utf-8")
    assert (
        'adlake_records_written_total{job_name="t_text",source="s2",table="silver/s2"} 5.0' in text
    )


def test_unreachable_pushgateway_is_a_warning_not_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = replace(
        config_for(tmp_path).metrics,
        pushgateway_url="http://127.0.0.1:9",  # discard port: connection refused
        push_timeout_seconds=2.0,
    )
    with caplog.at_level(logging.WARNING, logger="adlake.metrics"):
        assert metrics.publish(settings, "t_push", "all") is None
    assert "push to http://127.0.0.1:9 failed" in caplog.text


def test_failed_job_exits_1_and_publishes_its_failure(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    args = argparse.Namespace(config=str(config), log_level="INFO", source="clicks")

    def fails(cfg: AppConfig) -> None:
        raise RuntimeError("boom")

    def works(cfg: AppConfig) -> None:
        return None

    labels = {"job_name": "t_fail", "sources": "clicks"}
    assert run_job("t_fail", args, fails) == 1
    assert value("adlake_job_failures_total", **labels) == 1.0
    failed_at = value("adlake_job_last_failure_timestamp_seconds", **labels)
    assert failed_at is not None and failed_at > 0
    assert value("adlake_job_last_success_timestamp_seconds", **labels) is None
    text = (tmp_path / "lakehouse" / "_metrics" / "t_fail.prom").read_text(encoding="utf-8")
    assert 'adlake_job_failures_total{job_name="t_fail",sources="clicks"} 1.0' in text

    assert run_job("t_fail", args, works) == 0
    succeeded_at = value("adlake_job_last_success_timestamp_seconds", **labels)
    assert succeeded_at is not None and succeeded_at >= failed_at
    assert value("adlake_job_failures_total", **labels) == 1.0


def test_metrics_endpoint_serves_the_registry(tmp_path: Path) -> None:
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings: Any = replace(config_for(tmp_path).metrics, http_host="127.0.0.1", http_port=port)
    # Test configs set metrics.http_port 0, so nothing else in this process serves.
    assert not metrics._server_started
    assert metrics.serve(settings)
    metrics.record_batch("t_http", "s3", "bronze/s3", read=1, written=1)
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'adlake_records_read_total{job_name="t_http",source="s3",table="bronze/s3"} 1.0' in body


def test_pushgateway_receives_the_job_group(tmp_path: Path) -> None:
    """A real Pushgateway (scripts/setup_prometheus.sh installs it) gets the run's metrics
    under the grouping key job=<job_name>, sources=<--source>."""
    import shutil
    import socket
    import subprocess
    import time
    import urllib.request

    binary = shutil.which("pushgateway")
    assert binary, "pushgateway is not on PATH: run scripts/setup_prometheus.sh (make test does)"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [binary, f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/-/ready", timeout=2).read()
                break
            except OSError:
                assert time.monotonic() < deadline, "pushgateway did not start"
                time.sleep(0.2)
        settings = replace(config_for(tmp_path).metrics, pushgateway_url=url)
        metrics.record_batch("t_gw", "s4", "silver/s4", read=3, written=2, duplicates=1)
        metrics.record_run("t_gw", "impressions", 1.5, ok=True)
        assert metrics.publish(settings, "t_gw", "impressions") == url
        body = urllib.request.urlopen(f"{url}/metrics", timeout=5).read().decode()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    line = next(
        ln
        for ln in body.splitlines()
        if ln.startswith("adlake_duplicates_removed_total{") and 'job_name="t_gw"' in ln
    )
    for label in ('job="t_gw"', 'sources="impressions"', 'source="s4"', 'table="silver/s4"'):
        assert label in line
    assert line.endswith(" 1")
