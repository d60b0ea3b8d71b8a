"""The streaming job as a real process: SIGKILL mid-batch then restart, and SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from adlake import schemas
from adlake.config import AppConfig, parse_config
from tests.conftest import config_dict_for, write_config

ROOT = Path(__file__).resolve().parents[1]
FILES, LINES = 4, 100
pytestmark = pytest.mark.slow


def _land_impressions(cfg: AppConfig) -> None:
    folder = Path(cfg.landing_path("impressions"))
    folder.mkdir(parents=True, exist_ok=True)
    for f in range(FILES):
        lines = [
            json.dumps(
                {
                    "impression_id": f"imp-{f}-{i}",
                    "creative_id": i % 7,
                    "user_id": i,
                    "timestamp": "2026-11-01 10:00:00",
                    "website": "example.com",
                }
            )
            for i in range(LINES)
        ]
        (folder / f"part-{f:03d}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _start(
    config: Path, trigger: str, log_file: Path, job: str = "bronze_ingest.py"
) -> subprocess.Popen[bytes]:
    """The job as a real process (`python jobs/<job> ...`), output to `log_file`."""
    return subprocess.Popen(
        [
            sys.executable, str(ROOT / "jobs" / job), "--config", str(config),
            "--source", "impressions", "--mode", "stream", "--trigger", trigger,
        ],
        cwd=ROOT, stdout=log_file.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip


def _log_versions(cfg: AppConfig) -> list[int]:
    log_dir = Path(cfg.table_path("ops/ingest_file_log")) / "_delta_log"
    if not log_dir.exists():
        return []
    return sorted(int(p.name.split(".")[0]) for p in log_dir.glob("*.json"))


def _wait_for(
    predicate, timeout: float, proc: subprocess.Popen[bytes], what: str, log: Path
) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError(
                f"job exited ({proc.returncode}) before {what}:\n{log.read_text()[-3000:]}"
            )
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()[-3000:]}")


def _setup(tmp_path: Path) -> tuple[Path, AppConfig]:
    overrides = {"sources.impressions.max_files_per_trigger": 1}
    config = write_config(tmp_path, **overrides)
    cfg = parse_config(config_dict_for(tmp_path, **overrides), tmp_path)
    _land_impressions(cfg)
    return config, cfg


def test_sigkill_mid_batch_then_restart_loses_and_duplicates_nothing(
    spark: SparkSession, tmp_path: Path
) -> None:
    config, cfg = _setup(tmp_path)
    log = tmp_path / "run1.log"
    proc = _start(config, "1 second", log)
    try:
        # Log versions: 0 = create, then per run: plan (odd), commit (even). Kill right after
        # the second run's plan lands, i.e. while that run's bronze append is in flight.
        _wait_for(
            lambda: any(v >= 3 and v % 2 == 1 for v in _log_versions(cfg)),
            300,
            proc,
            "a second plan",
            log,
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL

    log2 = tmp_path / "run2.log"
    restart = _start(config, "available-now", log2)
    assert restart.wait(600) == 0, log2.read_text()[-3000:]

    bronze = spark.read.format("delta").load(cfg.table_path("bronze/impressions"))
    assert bronze.count() == FILES * LINES
    assert bronze.select("impression_id").distinct().count() == FILES * LINES
    per_file = {
        r[0].rsplit("/", 1)[1]: r[1] for r in bronze.groupBy(schemas.SOURCE_FILE).count().collect()
    }
    assert per_file == {f"part-{f:03d}.jsonl": LINES for f in range(FILES)}
    file_log = spark.read.format("delta").load(cfg.table_path("ops/ingest_file_log"))
    committed = file_log.where("status = 'committed'")
    assert committed.count() == FILES
    assert committed.agg(F.sum("bronze_rows")).first()[0] == FILES * LINES
    planned_runs = {r[0] for r in file_log.where("status = 'planned'").select("run_seq").collect()}
    assert planned_runs == {r[0] for r in committed.select("run_seq").collect()}


# SIGTERM on a continuous stream (exit 0, no half-done run) is asserted by
# tests/test_alerting_e2e.py, whose stream it stops.
