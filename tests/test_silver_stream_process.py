"""The silver job as a real process, SIGKILLed at each step of a micro-batch, then rerun.

A batch run is an available-now stream on the stream's checkpoint, so these crashes hit the
same foreachBatch code a continuous stream runs. Bronze is prepared in this process; only the
crashing run is a subprocess. The rerun replays the crashed micro-batch and must leave every
bronze row exactly once in silver or its quarantine, and one audit row for the batch.

Two points run here as processes: the first write of the batch (after the silver MERGE) and
the last (after the audit append, the checkpoint not yet). The two between them are the same
stream replay with one more table written; tests/test_silver_run.py crashes the batch at all
four points in this process and checks the replay's rows, audit and metrics exactly, so a
process per point there would only repeat a JVM start (~50 s each).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from adlake import faults
from adlake.bronze import ingest as bronze_ingest
from adlake.config import AppConfig, parse_config
from adlake.silver import run as silver_run
from adlake.tables import BATCH_AUDIT, SILVER_IMPRESSIONS, SILVER_QUARANTINE
from tests.conftest import config_dict_for, write_config
from tests.test_bronze_stream_process import assert_crashed, run_crashing, table_count

pytestmark = pytest.mark.slow

VALID, NO_USER = 6, 2  # distinct valid impressions; rows without user_id (quarantined)
ROWS_IN = VALID + 1 + NO_USER  # plus one exact duplicate of a valid impression


def _land_and_ingest_bronze(spark: SparkSession, cfg: AppConfig) -> None:
    def line(impression_id: str, user_id: int | None) -> str:
        return json.dumps(
            {
                "impression_id": impression_id,
                "creative_id": 3,
                "user_id": user_id,
                "timestamp": "2026-11-01 10:00:00",
                "website": "example.com",
            }
        )

    lines = [line(f"imp-{i}", i) for i in range(VALID)] + [line("imp-0", 0)]
    lines += [line(f"no-user-{i}", None) for i in range(NO_USER)]
    folder = Path(cfg.landing_path("impressions"))
    folder.mkdir(parents=True)
    (folder / "part-000.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    [result] = bronze_ingest.run_batch(spark, cfg, ["impressions"])
    assert (result.bronze_rows, result.quarantined_rows) == (ROWS_IN, 0)


# Tables in the crashed state, proving where the crash landed:
# (silver impressions rows, silver quarantine rows, audit rows).
CRASHED_STATE = {
    faults.SILVER_AFTER_MERGE: (VALID, 0, 0),
    faults.SILVER_AFTER_AUDIT: (VALID, NO_USER, 1),
}


@pytest.mark.parametrize("crash_at", list(CRASHED_STATE))
def test_silver_killed_at_crash_point_then_rerun_writes_each_row_once(
    spark: SparkSession, tmp_path: Path, crash_at: str
) -> None:
    config = write_config(tmp_path)
    cfg = parse_config(config_dict_for(tmp_path), tmp_path)
    _land_and_ingest_bronze(spark, cfg)
    log_file = tmp_path / "crashed.log"
    returncode = run_crashing(config, "silver_transform.py", crash_at, log_file, "--mode", "batch")

    assert_crashed(returncode, crash_at, log_file)
    assert (
        table_count(spark, cfg, SILVER_IMPRESSIONS.relative_path),
        table_count(spark, cfg, SILVER_QUARANTINE.relative_path),
        table_count(spark, cfg, BATCH_AUDIT.relative_path),
    ) == CRASHED_STATE[crash_at]

    # The rerun (this process never sets ADLAKE_CRASH_AT) replays micro-batch 0.
    replayed = silver_run.run_batch(spark, cfg, ["impressions"])
    assert [(r.source, r.batch_id, r.rows_in) for r in replayed] == [("impressions", 0, ROWS_IN)]

    silver = spark.read.format("delta").load(SILVER_IMPRESSIONS.location(cfg))
    ids = sorted(r[0] for r in silver.select("impression_id").collect())
    assert ids == sorted(f"imp-{i}" for i in range(VALID))
    quarantine = spark.read.format("delta").load(SILVER_QUARANTINE.location(cfg))
    records = sorted(json.loads(r["record"])["impression_id"] for r in quarantine.collect())
    assert records == [f"no-user-{i}" for i in range(NO_USER)]
    audit = spark.read.format("delta").load(BATCH_AUDIT.location(cfg)).collect()
    # One audit row for the batch: a replay after the audit append is skipped by Delta.
    assert [(r["source"], r["batch_id"], r["rows_in"]) for r in audit] == [
        ("impressions", 0, ROWS_IN)
    ]
    # The batch as its first attempt stored it, whichever attempt wrote the audit row: a
    # replay's MERGEs insert nothing and take the counts of the crashed attempt's commits.
    [row] = audit
    assert (row["rows_written"], row["quarantined"], row["duplicates"]) == (VALID, NO_USER, 1)
    assert (row["duplicates_in_batch"], row["duplicates_existing"]) == (1, 0)
    assert [(r.rows_written, r.quarantined, r.duplicates) for r in replayed] == [
        (VALID, NO_USER, 1)
    ]
