"""Writer leases: a second run fails clearly, an expired lease is taken over, release in finally."""

from __future__ import annotations

import importlib.util
import logging
import time
from pathlib import Path
from types import ModuleType

import pytest
from pyspark.sql import SparkSession

from adlake import deltalog, storage
from adlake.config import AppConfig
from adlake.lease import Lease, LeaseHeldError, LeaseLostError, holding
from adlake.tables import BRONZE_IMPRESSIONS, INGEST_FILE_LOG
from tests.conftest import config_for, write_config
from tests.test_bronze_ingest import SEED_IMPRESSIONS, land


def _job(name: str) -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "jobs" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"{name}_job", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _hour_ago() -> float:
    return time.time() - 3600


def test_second_bronze_run_fails_clearly_and_marks_nothing_committed(
    spark: SparkSession, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = config_for(tmp_path)
    land(cfg, "impressions", "a.jsonl", SEED_IMPRESSIONS)
    other_run = Lease(spark, cfg, "bronze-impressions")
    other_run.acquire()
    job = _job("bronze_ingest")
    argv = ["--config", str(write_config(tmp_path)), "--source", "impressions"]
    try:
        with caplog.at_level(logging.ERROR, logger="adlake"):
            assert job.main(argv) == 3
    finally:
        other_run.release()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert (
        "bronze_ingest (sources=impressions) not started: lease bronze-impressions is held by another run (host"
        in errors[0]
    )
    assert all(r.exc_info is None for r in caplog.records)
    # Nothing was planned, written or logged as committed.
    assert not deltalog.is_table(spark, INGEST_FILE_LOG.location(cfg))
    assert not deltalog.is_table(spark, BRONZE_IMPRESSIONS.location(cfg))

    # Once the other run released its lease the same command ingests the file.
    assert job.main(argv) == 0
    file_log = storage.read_table(spark, INGEST_FILE_LOG.location(cfg))
    assert file_log.where("status = 'committed'").count() == 1
    assert Lease(spark, cfg, "bronze-impressions").current() is None


def test_expired_lease_of_a_crashed_run_is_taken_over_with_a_warning(
    spark: SparkSession, cfg: AppConfig, caplog: pytest.LogCaptureFixture
) -> None:
    crashed = Lease(spark, cfg, "silver-impressions", now=_hour_ago)
    crashed.acquire()  # expired an hour minus a ttl ago; never released
    with (
        caplog.at_level(logging.WARNING, logger="adlake.lease"),
        holding(spark, cfg, "silver", ["impressions"]) as leases,
    ):
        state = leases[0].current()
        assert state is not None and state.token == leases[0].token
        assert state.generation == 2
        # The crashed run's generation file is cleaned up.
        assert [p.name for p in Path(leases[0].directory).iterdir()] == [f"{2:020d}.json"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].startswith("lease silver-impressions: took over an expired lease (host ")
    # The crashed run, were it only paused, learns on renewal that it lost the lease.
    with pytest.raises(LeaseLostError, match="silver-impressions"):
        crashed.renew()


def test_live_lease_blocks_every_other_holder_and_renewal_keeps_it(
    spark: SparkSession, cfg: AppConfig
) -> None:
    first = Lease(spark, cfg, "gold")
    first.acquire()
    first.renew()
    assert first.generation == 2
    with pytest.raises(LeaseHeldError, match="lease gold is held by another run"):
        Lease(spark, cfg, "gold").acquire()
    with pytest.raises(LeaseHeldError), holding(spark, cfg, "gold"):
        pass
    first.release()
    with holding(spark, cfg, "gold") as leases:
        assert leases[0].generation == 1


def test_leases_are_released_when_the_block_raises(spark: SparkSession, cfg: AppConfig) -> None:
    with (
        pytest.raises(RuntimeError, match="boom"),
        holding(spark, cfg, "bronze", ["impressions", "bid_requests"]),
    ):
        raise RuntimeError("boom")
    for name in ("bronze-impressions", "bronze-bid_requests"):
        assert Lease(spark, cfg, name).current() is None


def test_a_held_lease_releases_the_ones_already_taken(spark: SparkSession, cfg: AppConfig) -> None:
    busy = Lease(spark, cfg, "bronze-impressions")
    busy.acquire()
    with (
        pytest.raises(LeaseHeldError),
        holding(spark, cfg, "bronze", ["bid_requests", "impressions"]),
    ):
        pass
    # bid_requests sorts first and was taken before impressions failed: given back.
    assert Lease(spark, cfg, "bronze-bid_requests").current() is None
    busy.release()
