"""The silver streaming job as a real process, killed with SIGKILL mid-stream and restarted."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from adlake import bronze_ingest
from tests.test_bronze_stream_process import FILES, LINES, _setup, _wait_for
from tests.test_bronze_stream_process import _start as start_job

pytestmark = pytest.mark.slow


def _start(config: Path, trigger: str, log_file: Path) -> subprocess.Popen[bytes]:
    return start_job(config, trigger, log_file, "silver_transform.py")


def test_silver_stream_sigkill_then_restart_writes_each_row_once(
    spark: SparkSession, tmp_path: Path
) -> None:
    config, cfg = _setup(tmp_path)
    # One bronze run per file, so the silver stream (1 file per trigger) has several batches.
    landing = Path(cfg.landing_path("impressions"))
    files = sorted(landing.glob("*.jsonl"))
    hold = tmp_path / "hold"
    hold.mkdir()
    for f in files:
        f.rename(hold / f.name)
    for f in files:
        (hold / f.name).rename(f)
        bronze_ingest.run_batch(spark, cfg, ["impressions"])
    audit_log = Path(cfg.table_path("ops/batch_audit")) / "_delta_log"

    log = tmp_path / "silver1.log"
    proc = _start(config, "1 second", log)
    try:
        # Kill as soon as the first micro-batch is audited, while later ones are in flight.
        _wait_for(
            lambda: len(list(audit_log.glob("*.json"))) >= 2, 300, proc, "a silver batch", log
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()

    log2 = tmp_path / "silver2.log"
    restart = _start(config, "available-now", log2)
    assert restart.wait(600) == 0, log2.read_text()[-3000:]

    silver = spark.read.format("delta").load(cfg.table_path("silver/impressions"))
    assert silver.count() == FILES * LINES
    assert silver.select("impression_id").distinct().count() == FILES * LINES
    audit = spark.read.format("delta").load(cfg.table_path("ops/batch_audit"))
    assert audit.where("rows_in != rows_written + quarantined + duplicates").count() == 0
    assert audit.agg({"rows_written": "sum"}).first()[0] == FILES * LINES
