"""The bronze job as a real process, SIGKILLed at each step of its write protocol, then rerun.

Each crash is a named crash point (`adlake.faults`): the job kills itself at the exact step,
so the test provably hits its window (exit -9 and the tables in the crashed state), then a
restart without the crash must leave every landing record exactly once in bronze or the
quarantine and a consistent file log.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from adlake import faults, schemas
from adlake.bronze.ingest import BronzeIngestor, run_batch
from adlake.config import AppConfig, parse_config
from tests.conftest import config_dict_for, write_config

ROOT = Path(__file__).resolve().parents[1]
FILES, GOOD, BAD = 3, 4, 1  # per landing file: GOOD valid JSON lines and BAD malformed ones
pytestmark = pytest.mark.slow


def land_impressions(cfg: AppConfig) -> None:
    """FILES files part-00n.jsonl; impression ids imp-<file>-<line>, malformed lines last."""
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
            for i in range(GOOD)
        ] + [f'{{"impression_id": "bad-{f}-{i}", ' for i in range(BAD)]
        (folder / f"part-{f:03d}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def setup_lake(tmp_path: Path, **overrides: object) -> tuple[Path, AppConfig]:
    """The config as a file (for the job process) and parsed (for the test), data landed."""
    config = write_config(tmp_path, **overrides)
    cfg = parse_config(config_dict_for(tmp_path, **overrides), tmp_path)
    land_impressions(cfg)
    return config, cfg


def run_crashing(
    config: Path, job: str, crash_at: str, log_file: Path, *args: str, timeout: float = 600
) -> int:
    """Run `jobs/<job>` with ADLAKE_CRASH_AT set; returns its exit code once its whole process
    group (the Python driver and its JVM) is gone.

    A crash point SIGKILLs the Python driver; the JVM it started is then killed too, as on a
    lost machine, so nothing of the crashed run can write while the restart runs.
    """
    env = {**os.environ, faults.ENV_VAR: crash_at}
    with log_file.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "jobs" / job), "--config", str(config),
             "--source", "impressions", *args],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
        try:
            returncode = proc.wait(timeout)
        finally:
            _kill_group(proc)
    return returncode


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL every process left in the job's session (its JVM) and wait until none is."""
    if proc.poll() is None:
        proc.kill()
        proc.wait(30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise AssertionError(f"processes of the job's group {proc.pid} survive SIGKILL")


def assert_crashed(returncode: int, crash_at: str, log_file: Path) -> None:
    """The job died of the crash point's SIGKILL, not of an error or a normal exit."""
    output = log_file.read_text(errors="replace")
    assert returncode == -signal.SIGKILL, f"exit {returncode}:\n{output[-3000:]}"
    assert f"crash point {crash_at.split(':')[0]}" in output


def table_count(spark: SparkSession, cfg: AppConfig, relative: str) -> int:
    return spark.read.format("delta").load(cfg.table_path(relative)).count()


def file_log(spark: SparkSession, cfg: AppConfig) -> list[tuple[int, str, str]]:
    """The file log as sorted (run_seq, status, file name) rows."""
    rows = spark.read.format("delta").load(cfg.table_path("ops/ingest_file_log")).collect()
    return sorted((r["run_seq"], r["status"], r["file_path"].rsplit("/", 1)[1]) for r in rows)


def assert_each_record_once(spark: SparkSession, cfg: AppConfig) -> None:
    """Every landing record exactly once: valid lines in bronze, malformed ones quarantined,
    and the file log's commit rows carrying those counts per file."""
    bronze = spark.read.format("delta").load(cfg.table_path("bronze/impressions"))
    ids = [r[0] for r in bronze.select("impression_id").collect()]
    assert sorted(ids) == sorted(f"imp-{f}-{i}" for f in range(FILES) for i in range(GOOD))
    per_file = {
        r[0].rsplit("/", 1)[1]: r[1] for r in bronze.groupBy(schemas.SOURCE_FILE).count().collect()
    }
    assert per_file == {f"part-{f:03d}.jsonl": GOOD for f in range(FILES)}
    quarantine = spark.read.format("delta").load(cfg.table_path("bronze/quarantine"))
    raw = sorted(r[0] for r in quarantine.select("raw_record").collect())
    assert raw == sorted(
        f'{{"impression_id": "bad-{f}-{i}", ' for f in range(FILES) for i in range(BAD)
    )
    committed = (
        spark.read.format("delta")
        .load(cfg.table_path("ops/ingest_file_log"))
        .where(F.col("status") == "committed")
    )
    assert sorted(
        (r["file_path"].rsplit("/", 1)[1], r["bronze_rows"], r["quarantined_rows"])
        for r in committed.collect()
    ) == [(f"part-{f:03d}.jsonl", GOOD, BAD) for f in range(FILES)]


# Tables in the crashed state, proving where the crash landed: (bronze rows, quarantine rows).
CRASHED_STATE = {
    faults.BRONZE_AFTER_PLAN: (0, 0),
    faults.BRONZE_AFTER_APPEND: (FILES * GOOD, 0),
    faults.BRONZE_AFTER_QUARANTINE: (FILES * GOOD, FILES * BAD),
    faults.BRONZE_BEFORE_COMMIT: (FILES * GOOD, FILES * BAD),
}


@pytest.mark.parametrize("crash_at", list(CRASHED_STATE))
def test_batch_killed_at_crash_point_then_rerun_ingests_each_record_once(
    spark: SparkSession, tmp_path: Path, crash_at: str
) -> None:
    config, cfg = setup_lake(tmp_path)
    log_file = tmp_path / "crashed.log"
    returncode = run_crashing(config, "bronze_ingest.py", crash_at, log_file, "--mode", "batch")

    assert_crashed(returncode, crash_at, log_file)
    assert (
        table_count(spark, cfg, "bronze/impressions"),
        table_count(spark, cfg, "bronze/quarantine"),
    ) == CRASHED_STATE[crash_at]
    names = [f"part-{f:03d}.jsonl" for f in range(FILES)]
    assert file_log(spark, cfg) == [(1, "planned", n) for n in names]

    # The rerun (no crash point: this process never sets ADLAKE_CRASH_AT) redoes run 1.
    results = run_batch(spark, cfg, ["impressions"])
    assert [(r.run_seq, r.files, r.bronze_rows, r.quarantined_rows) for r in results] == [
        (1, FILES, FILES * GOOD, FILES * BAD)
    ]
    assert_each_record_once(spark, cfg)
    assert file_log(spark, cfg) == [(1, s, n) for s in ("committed", "planned") for n in names]


def test_stream_killed_in_second_run_then_restarted_ingests_each_record_once(
    spark: SparkSession, tmp_path: Path
) -> None:
    """One file per micro-batch: the crash lands in run 2 (run 1 committed, run 2's bronze
    append done, its micro-batch not in the checkpoint); the restarted stream replays that
    micro-batch, redoes run 2 from the file log and ingests the last file as run 3."""
    config, cfg = setup_lake(tmp_path, **{"sources.impressions.max_files_per_trigger": 1})
    crash_at = f"{faults.BRONZE_AFTER_APPEND}:2"
    log_file = tmp_path / "crashed.log"
    returncode = run_crashing(
        config, "bronze_ingest.py", crash_at, log_file,
        "--mode", "stream", "--trigger", "available-now",
    )  # fmt: skip

    assert_crashed(returncode, crash_at, log_file)
    assert table_count(spark, cfg, "bronze/impressions") == 2 * GOOD
    assert table_count(spark, cfg, "bronze/quarantine") == BAD
    # The stream picks files in its own order (same modification time): name them from the log.
    crashed_log = file_log(spark, cfg)
    first, second = crashed_log[0][2], crashed_log[2][2]
    assert crashed_log == [(1, "committed", first), (1, "planned", first), (2, "planned", second)]
    [third] = {f"part-{f:03d}.jsonl" for f in range(FILES)} - {first, second}

    query = BronzeIngestor(spark, cfg, "impressions").start_stream("available-now")
    try:
        assert query.awaitTermination(300)
    finally:
        query.stop()
    assert query.exception() is None
    assert_each_record_once(spark, cfg)
    assert file_log(spark, cfg) == [
        (run, status, name)
        for run, name in ((1, first), (2, second), (3, third))
        for status in ("committed", "planned")
    ]


# SIGTERM on a continuous stream (exit 0, no half-done run) is asserted by
# tests/test_alerting_e2e.py, whose stream it stops.
