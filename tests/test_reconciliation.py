"""Reconciliation (issue 10 items 6 and 11): duplicates counted on their own so the audit
identity can fail, the bronze-vs-silver check from the tables, and writers and OPTIMIZE that
survive a concurrent commit."""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType

from adlake import schemas, storage
from adlake.config import AppConfig
from adlake.ops import maintenance
from adlake.quality import checks, reconciliation
from adlake.quality import run as quality_run
from adlake.settings import quality as checks_conf
from adlake.silver import run as silver_run
from adlake.silver.batch import existing_duplicates, reconciliation_mismatch
from adlake.silver.run import SilverProcessor
from adlake.tables import BATCH_AUDIT, BRONZE_IMPRESSIONS, SILVER_IMPRESSIONS
from tests.test_silver_run import _imp, _landing_creatives

NOW = datetime(2026, 11, 21, 0, 0, 0)


def _bronze(spark: SparkSession, run_seq: int, rows: list[dict[str, str | None]]) -> DataFrame:
    names = [f.name for f in schemas.IMPRESSION_FIELDS]
    at = datetime(2026, 11, 20, 8, run_seq)
    data = [
        (*[r.get(n) for n in names], None, f"file:/l/run{run_seq}.jsonl", at, run_seq, at.date())
        for r in rows
    ]
    return spark.createDataFrame(data, schemas.BRONZE_IMPRESSIONS_SCHEMA)


# -- item 6: the per-batch identity ---------------------------------------------------------
def test_reconciliation_mismatch_is_what_no_count_explains() -> None:
    # The MERGE inserted 8 of 9 valid rows, none a duplicate: one row is unaccounted for.
    assert reconciliation_mismatch(10, 8, 1, 0, 0) == 1
    assert reconciliation_mismatch(10, 7, 1, 1, 1) == 0
    assert reconciliation_mismatch(10, 9, 1, 1, 0) == -1
    assert existing_duplicates(storage.MergeCounts(source_rows=5, inserted=4), 5) == 1
    # No commit (nothing new): every candidate was already stored.
    assert existing_duplicates(storage.MergeCounts(source_rows=None, inserted=0), 3) == 3


def test_duplicates_are_split_into_in_batch_and_existing(
    spark: SparkSession, cfg: AppConfig
) -> None:
    _landing_creatives(cfg)
    processor = SilverProcessor(spark, cfg, "batch")
    rows = [
        _imp("a", "2026-11-10 12:00:00"),
        _imp("a", "2026-11-10 12:00:00"),  # in-batch duplicate
        _imp("b", "2026-11-10 12:00:00"),
        _imp("x", "not a time"),
        _imp("x", "not a time"),  # the same rejected record twice: one quarantine row
    ]
    [first] = processor.process("impressions", _bronze(spark, 1, rows), batch_id=1)
    assert (first.rows_written, first.quarantined) == (2, 1)
    assert (first.duplicates_in_batch, first.duplicates_existing, first.unreconciled) == (2, 0, 0)
    # A second batch of the same rows (and one new): what is stored already is "existing".
    again = [*rows, _imp("c", "2026-11-10 12:00:00")]
    [second] = processor.process("impressions", _bronze(spark, 2, again), batch_id=2)
    assert (second.rows_written, second.quarantined) == (1, 0)
    assert (second.duplicates_in_batch, second.duplicates_existing, second.unreconciled) == (
        2,
        2 + 1,
        0,
    )
    audit = storage.read_table(spark, BATCH_AUDIT.location(cfg))
    got = sorted(
        (r["batch_id"], r["duplicates"], r["duplicates_in_batch"], r["duplicates_existing"])
        for r in audit.collect()
    )
    assert got == [(1, 2, 2, 0), (2, 5, 2, 3)]


def test_a_row_lost_before_the_merge_breaks_the_audit_identity(
    spark: SparkSession, cfg: AppConfig, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    _landing_creatives(cfg)
    real_merge = storage.merge_insert_new

    def losing_merge(df: DataFrame, spec: Any, location: str, **kw: Any) -> storage.MergeCounts:
        if spec is SILVER_IMPRESSIONS:  # a bug that drops a valid, unique row on the way
            df = df.where(F.col("impression_id") != "b")
        return real_merge(df, spec, location, **kw)

    monkeypatch.setattr(silver_run.storage, "merge_insert_new", losing_merge)
    processor = SilverProcessor(spark, cfg, "batch")
    rows = [_imp("a", "2026-11-10 12:00:00"), _imp("b", "2026-11-10 12:00:00")]
    with caplog.at_level(logging.ERROR, logger="adlake.silver.run"):
        [row] = processor.process("impressions", _bronze(spark, 1, rows), batch_id=1)
    assert (row.rows_in, row.rows_written, row.duplicates, row.unreconciled) == (2, 1, 0, 1)
    assert "reconciliation broken, 1 rows unaccounted for" in caplog.text
    audit = storage.read_table(spark, BATCH_AUDIT.location(cfg))
    measures = checks.aggregate_measures(checks.audit_checks(audit, None)).collect()
    identity = [m for m in measures if m["check"] == checks_conf.AUDIT_IDENTITY]
    assert [(m["value"], m["total"]) for m in identity] == [(1.0, 1.0)]


# -- item 6: bronze vs silver from the tables ------------------------------------------------
def _reconciliation(spark: SparkSession, cfg: AppConfig) -> checks.CheckResult:
    results = quality_run.run_checks(spark, cfg, NOW)
    [result] = [
        r for r in results if r.check == checks_conf.RECONCILIATION and r.scope == "impressions"
    ]
    return result


def test_bronze_vs_silver_passes_clean_and_counts_a_deleted_silver_row(
    spark: SparkSession, cfg: AppConfig
) -> None:
    _landing_creatives(cfg)
    processor = SilverProcessor(spark, cfg, "batch")
    runs = {
        1: [
            _imp("a", "2026-11-10 12:00:00"),
            _imp("a", "2026-11-10 12:00:00"),
            _imp("b", "2026-11-10 13:00:00"),
            _imp("q", "not a time"),
        ],
        2: [_imp("b", "2026-11-10 13:00:00"), _imp("c", "2026-11-10 14:00:00")],
        3: [_imp("d", "2026-11-10 15:00:00")],
    }
    bronze_path = BRONZE_IMPRESSIONS.location(cfg)
    for run_seq, rows in runs.items():
        batch = _bronze(spark, run_seq, rows)
        batch.write.format("delta").mode("append").save(bronze_path)
        processor.process("impressions", batch, batch_id=run_seq)

    clean = _reconciliation(spark, cfg)
    # Run 3 is the newest batch: reconciled once a later one exists.
    assert (clean.observed, clean.status) == (0.0, "pass")
    assert clean.detail == (
        "bronze runs <= 2: 6 rows vs silver + quarantine + duplicates 6: 0 missing"
    )

    silver_path = SILVER_IMPRESSIONS.location(cfg)
    DeltaTable.forPath(spark, silver_path).delete("impression_id = 'c'")
    lost = _reconciliation(spark, cfg)
    assert (lost.observed, lost.threshold, lost.status) == (1.0, 0.0, "fail")
    assert lost.detail.endswith("1 missing")


def test_bronze_vs_silver_measures_every_source_up_to_its_own_cut(spark: SparkSession) -> None:
    """Hand-built tables of three sources: each source is counted up to its own cut, a split
    source (clicks and conversions) counts both targets and their quarantine rows, another
    job's audit rows and a source that silver never read give nothing."""
    bronze_schema = f"{schemas.SOURCE_FILE} string, {schemas.RUN_SEQ} long"
    files = f"{schemas.SOURCE_FILE} string"
    audit_schema = (
        "job string, source string, bronze_run_seq_min long, bronze_run_seq_max long, "
        "duplicates long"
    )

    def frame(schema: str, rows: list[tuple[Any, ...]]) -> DataFrame:
        return spark.createDataFrame(rows, schema)

    bronze = {
        # runs 1 and 2 are reconciled (cut 2); run 3 is the newest batch's
        "impressions": frame(bronze_schema, [("i1", 1)] * 3 + [("i2", 2)] * 2 + [("i3", 3)]),
        # cut 1: c1's five rows against 2 clicks + 1 conversion + 1 duplicate: 1 missing
        "clicks_conversions": frame(bronze_schema, [("c1", 1)] * 5 + [("c2", 2)] * 2),
        "bid_requests": frame(bronze_schema, [("b1", 1)] * 2),  # no silver batch yet
    }
    silver = {
        "impressions": frame(files, [("i1",), ("i1",), ("i2",), ("i3",)]),
        "clicks": frame(files, [("c1",), ("c1",), ("c2",)]),
        "conversions": frame(files, [("c1",), ("c2",)]),
    }
    quarantine = frame(
        f"source string, {files}",
        [("impressions", "i2"), ("clicks", "c2"), ("bid_requests", "b1")],
    )
    audit = frame(
        audit_schema,
        [
            ("silver_transform", "impressions", 1, 1, 1),
            ("silver_transform", "impressions", 2, 2, 0),
            ("silver_transform", "impressions", 3, 3, 4),
            ("silver_transform", "clicks", 1, 1, 1),
            ("silver_transform", "conversions", 1, 1, 0),
            ("silver_transform", "clicks", 2, 2, 9),
            ("silver_transform", "conversions", 2, 2, 0),
            ("gold_build", "campaign_daily", 1, 1, 7),
        ],
    )
    cuts = quality_run.reconciled_cuts(audit)
    assert cuts == {"impressions": 2, "clicks_conversions": 1}
    contributions = reconciliation.bronze_silver_reconciliation(
        bronze, silver, quarantine, audit, cuts
    )
    measures = sorted(
        (m["table"], m["scope"], m["value"], m["total"], m["newest"])
        for m in checks.aggregate_measures(contributions).collect()
    )
    assert measures == [
        ("bronze/clicks_conversions", "clicks_conversions", 5, 4, 1),
        ("bronze/impressions", "impressions", 5, 5, 2),
    ]


# -- item 11: writers and OPTIMIZE vs concurrent commits -------------------------------------
def _optimize_during_first_read(spark: SparkSession, location: str, tmp: Path) -> Any:
    """A UDF that, the first time it runs, waits until the test thread has committed an
    OPTIMIZE of `location`: the MERGE reading it then commits after OPTIMIZE, a genuine conflict.
    """
    started, done = tmp / "started", tmp / "optimized"

    def pass_through(value: str) -> str:
        import os
        import time as t

        if not os.path.exists(done):
            open(started, "w").close()
            for _ in range(1200):
                if os.path.exists(done):
                    break
                t.sleep(0.05)
        return value

    def optimizer() -> None:
        for _ in range(1200):
            if started.exists():
                break
            time.sleep(0.05)
        spark.sql(f"OPTIMIZE delta.`{location}`").collect()
        done.touch()

    threading.Thread(target=optimizer, daemon=True).start()
    return F.udf(pass_through, StringType(), useArrow=False)


def test_merge_retries_after_a_concurrent_optimize(
    spark: SparkSession,
    cfg: AppConfig,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: Any,
) -> None:
    monkeypatch.setattr(storage, "CONFLICT_BACKOFF_SECONDS", 0.0)
    location = SILVER_IMPRESSIONS.location(cfg)
    storage.ensure_table(spark, SILVER_IMPRESSIONS, location)
    base = spark.createDataFrame([], SILVER_IMPRESSIONS.schema)

    def rows(ids: list[str]) -> DataFrame:
        return base.unionByName(
            spark.createDataFrame([(i,) for i in ids], "impression_id string").withColumn(
                "event_date", F.lit("2026-11-10").cast("date")
            ),
            allowMissingColumns=True,
        )

    for ids in (["a"], ["b"]):  # two small files for OPTIMIZE to compact
        rows(ids).write.format("delta").mode("append").save(location)
    udf = _optimize_during_first_read(spark, location, tmp_path)
    # One partition: one blocked task, the other core free for the OPTIMIZE.
    source = rows(["b", "c", "d"]).coalesce(1).withColumn("impression_id", udf("impression_id"))
    with caplog.at_level(logging.WARNING, logger="adlake.storage"):
        counts = storage.merge_insert_new(source, SILVER_IMPRESSIONS, location)
    assert counts == storage.MergeCounts(source_rows=3, inserted=2)
    retries = [r.getMessage() for r in caplog.records if "commit conflict" in r.getMessage()]
    assert len(retries) == 1 and "retry 1 of 3" in retries[0]
    ids = sorted(r["impression_id"] for r in storage.read_table(spark, location).collect())
    assert ids == ["a", "b", "c", "d"]
    operations = [r["operation"] for r in DeltaTable.forPath(spark, location).history().collect()]
    assert operations[:2] == ["MERGE", "OPTIMIZE"]


def test_retry_on_conflict_gives_up_after_its_attempts(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def conflicting() -> None:
        calls.append(1)
        raise storage.COMMIT_CONFLICTS[0]("concurrent OPTIMIZE")

    with pytest.raises(storage.COMMIT_CONFLICTS[0]):
        storage.retry_on_conflict(conflicting, "test", attempts=3, backoff_seconds=0)
    assert len(calls) == 3


def test_maintenance_skips_an_optimize_that_keeps_conflicting(
    spark: SparkSession, cfg: AppConfig, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    monkeypatch.setattr(storage, "CONFLICT_BACKOFF_SECONDS", 0.0)
    location = BATCH_AUDIT.location(cfg)
    storage.ensure_table(spark, BATCH_AUDIT, location)

    class Conflicting:
        def executeCompaction(self) -> DataFrame:
            raise storage.COMMIT_CONFLICTS[0]("a silver MERGE committed first")

        executeZOrderBy = executeCompaction

    monkeypatch.setattr(DeltaTable, "optimize", lambda self: Conflicting())
    [table] = maintenance.select_tables(BATCH_AUDIT.relative_path)
    with caplog.at_level(logging.WARNING):
        [outcome] = maintenance.run_maintenance(spark, cfg, [table], 7 * 86_400)
    assert outcome.status == maintenance.DONE
    assert (outcome.optimize_files_removed, outcome.optimize_files_added) == (None, None)
    assert outcome.vacuum_retention_hours == 168
    assert any("optimize ops.batch_audit skipped" in r.getMessage() for r in caplog.records)
