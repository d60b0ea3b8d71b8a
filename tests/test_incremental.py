"""Incremental runs end to end on tiny landing files: what each run processes, exactly once.

Covers the silver progress mechanism (one checkpoint per source shared by batch and stream
runs), the late-row threshold, the bounded silver MERGE, and stored times under a host time
zone that is not UTC.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from adlake.bronze import ingest as bronze_ingest
from adlake.config import AppConfig
from adlake.silver import run as silver_run
from tests.conftest import NO_CODEGEN_CONF, config_for
from tests.test_bronze_ingest import land
from tests.test_silver_run import _landing_creatives

CSV_HEADER = "event_id,timestamp,user_id,campaign_id,creative_id,conversion_type,revenue\n"


def _table(spark: SparkSession, cfg: AppConfig, relative: str) -> DataFrame:
    return spark.read.format("delta").load(cfg.table_path(relative))


def _impressions(first: int, n: int, ts: str = "2026-11-10 12:00:00") -> str:
    return "".join(
        f'{{"impression_id": "i{k}", "creative_id": 1, "user_id": "u{k}", '
        f'"timestamp": "{ts}", "website": "example.com", "cost": "0.5"}}\n'
        for k in range(first, first + n)
    )


def test_clicks_only_run_then_conversions_are_each_processed_once(
    spark: SparkSession, tmp_path: Path
) -> None:
    """Issue 10.2: a bronze run with clicks and no conversions must not leave conversions
    behind, so the next run never re-reads (and miscounts as duplicates) earlier rows."""
    cfg = config_for(tmp_path)
    _landing_creatives(cfg)
    land(cfg, "clicks_conversions", "a.csv", CSV_HEADER + "c1,2026-11-10 12:00:00,u1,10,1,click,\n")
    bronze_ingest.run_batch(spark, cfg, ["clicks_conversions"])
    first = silver_run.run_batch(spark, cfg, ["clicks_conversions"])
    assert {(a.source, a.rows_in, a.rows_written) for a in first} == {
        ("clicks", 1, 1),
        ("conversions", 0, 0),
    }
    land(
        cfg,
        "clicks_conversions",
        "b.csv",
        CSV_HEADER + "v1,2026-11-10 12:05:00,u1,10,1,purchase,9.5\n",
    )
    bronze_ingest.run_batch(spark, cfg, ["clicks_conversions"])
    second = silver_run.run_batch(spark, cfg, ["clicks_conversions"])
    assert {(a.source, a.rows_in, a.rows_written, a.duplicates) for a in second} == {
        ("clicks", 0, 0, 0),
        ("conversions", 1, 1, 0),
    }
    audit = _table(spark, cfg, "ops/batch_audit")
    assert audit.agg(F.sum("duplicates")).first()[0] == 0
    assert audit.agg(F.sum("rows_in")).first()[0] == 2


def test_stream_stopped_mid_bronze_run_then_batch_processes_every_row_once(
    spark: SparkSession, tmp_path: Path
) -> None:
    """Issue 10.3: a rate-limited stream stops after its first micro-batch of a multi-file
    bronze run; a batch run then processes exactly the rest."""
    cfg = config_for(tmp_path, **{"sources.impressions.max_files_per_trigger": 1})
    _landing_creatives(cfg)
    for k in range(3):
        land(cfg, "impressions", f"f{k}.jsonl", _impressions(k * 10, 10))
    # One read partition (so one bronze data file) per landing file.
    spark.conf.set("spark.sql.files.maxPartitionBytes", "1024")
    try:
        bronze_ingest.run_batch(spark, cfg, ["impressions"])
    finally:
        spark.conf.unset("spark.sql.files.maxPartitionBytes")
    bronze = _table(spark, cfg, "bronze/impressions")
    # One bronze run (one commit) holding several data files.
    assert bronze.select(F.input_file_name()).distinct().count() >= 2
    assert bronze.select("_run_seq").distinct().count() == 1

    processor = silver_run.SilverProcessor(spark, cfg, "stream")
    query = silver_run.start_stream(processor, "impressions", "1 second")
    try:
        # Stop once the first micro-batch is committed (its progress is reported).
        deadline = time.monotonic() + 300
        while query.lastProgress is None and time.monotonic() < deadline:
            query.awaitTermination(0.2)
    finally:
        query.stop()
    assert 0 < sum(a.rows_in for a in processor.audit_rows) < 30

    silver_run.run_batch(spark, cfg, ["impressions"])
    assert _table(spark, cfg, "silver/impressions").count() == 30
    # The stored audit: every bronze row once, by the stream or by the batch run (a batch
    # the stream had not committed is replayed; its audit append is then skipped by Delta).
    audit = _table(spark, cfg, "ops/batch_audit")
    assert tuple(audit.agg(F.sum("rows_in"), F.sum("duplicates")).first()) == (30, 0)
    assert {r["mode"] for r in audit.collect()} == {"stream", "batch"}
    # Nothing left: another batch run reads nothing.
    assert silver_run.run_batch(spark, cfg, ["impressions"]) == []


def test_quarantined_future_row_does_not_make_later_rows_late(
    spark: SparkSession, tmp_path: Path
) -> None:
    """Issue 10.7: the late-row threshold follows written rows only."""
    cfg = config_for(tmp_path)
    _landing_creatives(cfg)
    future = _impressions(0, 1, ts="2099-01-01 00:00:00")
    land(cfg, "impressions", "a.jsonl", future + _impressions(1, 2))
    bronze_ingest.run_batch(spark, cfg, ["impressions"])
    [first] = silver_run.run_batch(spark, cfg, ["impressions"])
    assert (first.rows_in, first.rows_written, first.quarantined) == (3, 2, 1)
    assert first.rule_counts == {"not_in_future": 1}
    land(cfg, "impressions", "b.jsonl", _impressions(10, 2, ts="2026-11-10 13:00:00"))
    bronze_ingest.run_batch(spark, cfg, ["impressions"])
    [second] = silver_run.run_batch(spark, cfg, ["impressions"])
    assert (second.rows_in, second.rows_written, second.late_rows) == (2, 2, 0)
    audit = _table(spark, cfg, "ops/batch_audit").orderBy("started_at").collect()
    assert [str(r["max_event_ts"]) for r in audit] == ["2026-11-10 12:00:00"] * 1 + [
        "2026-11-10 13:00:00"
    ]


def test_bounded_merge_dedups_within_the_batch_dates_and_scans_only_them(
    spark: SparkSession, tmp_path: Path
) -> None:
    """A re-sent impression is a duplicate; the MERGE's target scan covers the batch's dates."""
    cfg = config_for(tmp_path)
    _landing_creatives(cfg)
    land(cfg, "impressions", "a.jsonl", _impressions(0, 3, ts="2026-11-01 10:00:00"))
    land(cfg, "impressions", "b.jsonl", _impressions(100, 3, ts="2026-11-02 10:00:00"))
    bronze_ingest.run_batch(spark, cfg, ["impressions"])
    silver_run.run_batch(spark, cfg, ["impressions"])
    # i1 again (same event, same date) plus a new one on a third date.
    land(
        cfg,
        "impressions",
        "c.jsonl",
        _impressions(1, 1, ts="2026-11-01 10:00:00")
        + _impressions(200, 1, ts="2026-11-03 10:00:00"),
    )
    bronze_ingest.run_batch(spark, cfg, ["impressions"])
    [audit] = silver_run.run_batch(spark, cfg, ["impressions"])
    assert (audit.rows_in, audit.rows_written, audit.duplicates) == (2, 1, 1)
    silver = _table(spark, cfg, "silver/impressions")
    assert silver.count() == 7
    assert silver.select("impression_id").distinct().count() == 7
    merge = (
        spark.sql(f"DESCRIBE HISTORY delta.`{cfg.table_path('silver/impressions')}`")
        .where("operation = 'MERGE'")
        .orderBy(F.col("version").desc())
        .first()
    )
    assert "2026-11-01" in merge["operationParameters"]["predicate"]
    assert "2026-11-02" not in merge["operationParameters"]["predicate"]


@pytest.fixture
def new_york_host() -> Iterator[None]:
    """Run the test as on a host whose local zone is America/New_York (UTC-5 in November)."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "America/New_York"
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = before
        time.tzset()


def test_stored_times_are_utc_on_a_host_in_another_zone(
    spark: SparkSession, tmp_path: Path, new_york_host: None
) -> None:
    """Issue 10.1: ingestion, file-log and audit times are the real UTC instant."""
    cfg = config_for(tmp_path)
    _landing_creatives(cfg)
    land(cfg, "impressions", "a.jsonl", _impressions(0, 2))
    before = datetime.now(timezone.utc).replace(microsecond=0)
    bronze_ingest.run_batch(spark, cfg, ["impressions"])
    silver_run.run_batch(spark, cfg, ["impressions"])
    after = datetime.now(timezone.utc) + timedelta(seconds=1)

    def utc_epoch(relative: str, column: str) -> list[float]:
        # unix_seconds is zone-free: the stored instant, whatever the session or host zone.
        rows = _table(spark, cfg, relative).select(F.unix_micros(column).alias("t")).collect()
        return [r["t"] / 1e6 for r in rows]

    stamps = (
        utc_epoch("bronze/impressions", "_ingested_at")
        + utc_epoch("ops/ingest_file_log", "logged_at")
        + utc_epoch("ops/batch_audit", "started_at")
        + utc_epoch("ops/batch_audit", "ended_at")
        + utc_epoch("silver/creatives", "_loaded_at")
    )
    assert len(stamps) == 2 + 2 + 1 + 1 + 1
    for stamp in stamps:
        assert before.timestamp() <= stamp <= after.timestamp()
    dates = {
        r[0] for r in _table(spark, cfg, "bronze/impressions").select("_ingestion_date").collect()
    }
    assert dates == {datetime.fromtimestamp(stamps[0], timezone.utc).date()}


def test_creating_a_table_runs_no_spark_job(spark: SparkSession, tmp_path: Path) -> None:
    """`storage.ensure_table` commits a new table without a Spark job: with Delta's file list
    in the .crc on (its default), each creation ran a query over the empty table's state.
    The table then holds its declared columns and partitioning, at version 0."""
    from adlake import deltalog, storage
    from adlake.tables import SILVER_IMPRESSIONS

    location = str(tmp_path / "impressions")
    sc = spark.sparkContext
    sc.setJobGroup("test-create-table", "table creation")
    try:
        storage.ensure_table(spark, SILVER_IMPRESSIONS, location)
    finally:  # setJobGroup set all three on this thread: later tests' jobs carry none
        for key in ("spark.jobGroup.id", "spark.job.description", "spark.job.interruptOnCancel"):
            sc.setLocalProperty(key, None)  # type: ignore[arg-type]
    assert list(sc.statusTracker().getJobIdsForGroup("test-create-table")) == []
    assert deltalog.latest_version(spark, location) == 0
    details = spark.sql(f"DESCRIBE DETAIL delta.`{location}`").first()
    assert details is not None
    assert details["partitionColumns"] == list(SILVER_IMPRESSIONS.partition_by)
    table = storage.read_table(spark, location)
    assert table.schema.fieldNames() == SILVER_IMPRESSIONS.schema.fieldNames()


def test_a_session_compiles_the_generated_code_of_a_query_once(spark: SparkSession) -> None:
    """Spark's cache of compiled generated code holds more than a run's distinct classes
    (`spark.sql.codegen.cache.maxEntries` in conf/*.yaml): a pipeline run makes ~550, and with
    Spark's default of 100 every batch of a long-lived session compiled ~470 of them again.
    After 200 other queries, each compiling its own code, the first query runs again
    without compiling anything."""
    compilations = spark.sparkContext._jvm.org.apache.spark.metrics.source.CodegenMetrics  # type: ignore[union-attr]
    compiled = compilations.METRIC_COMPILATION_TIME()
    saved = {key: spark.conf.get(key) for key in NO_CODEGEN_CONF}
    spark.conf.set("spark.sql.codegen.wholeStage", "true")  # the suite runs without codegen
    spark.conf.set("spark.sql.codegen.factoryMode", "FALLBACK")
    try:

        def query(k: int) -> DataFrame:  # an integer literal is inlined: code per k
            return spark.range(3).select((F.col("id") * k + k).alias("v"))

        before = compiled.getCount()
        assert [r["v"] for r in query(1).collect()] == [1, 2, 3]
        first = compiled.getCount()
        assert first > before  # it compiled its code (not served by an earlier test's)
        for k in range(2, 202):  # planning the RDD compiles on the driver; no job needed
            query(k)._jdf.queryExecution().executedPlan().execute()
        assert compiled.getCount() >= first + 200
        again = compiled.getCount()
        assert [r["v"] for r in query(1).collect()] == [1, 2, 3]
        assert compiled.getCount() == again
    finally:
        for key, value in saved.items():
            spark.conf.set(key, value)


def test_blind_and_checked_appends_are_both_found_as_the_writers_versions(
    spark: SparkSession, tmp_path: Path
) -> None:
    """A blind append (`known_new`) carries its writer and version as a commit tag, a checked
    one Delta's txn action: `deltalog.last_write_of` finds a writer's newest version either
    way, past other writers' commits, and a stream's copy of the file log tells its own
    versions from another writer's (`rows_changed_by_others`)."""
    from pyspark.sql.types import LongType, StructField, StructType

    from adlake import deltalog, storage
    from adlake.tables import TableSpec

    spec = TableSpec("t.appends", "t/appends", StructType([StructField("v", LongType())]))
    location = str(tmp_path / "appends")
    storage.ensure_table(spark, spec, location)  # version 0

    def append(value: int, writer: str, version: int, known_new: bool = False) -> None:
        df = spark.createDataFrame([(value,)], spec.schema)
        storage.append_idempotent(df, spec, location, writer, version, known_new=known_new)

    assert deltalog.last_write_of(spark, location, "w") is None
    append(1, "w", 1, known_new=True)  # table version 1
    append(2, "other", 7)  # 2
    append(3, "other", 8, known_new=True)  # 3
    assert deltalog.last_write_of(spark, location, "w") == 1
    assert deltalog.last_write_of(spark, location, "other") == 8
    append(4, "w", 2)  # 4, checked
    append(5, "w", 2)  # Delta's check skips it: no version 5
    assert deltalog.last_write_of(spark, location, "w") == 2
    assert deltalog.latest_version(spark, location) == 4

    def changed(after: int, upto: int, own: set[int]) -> bool:
        return deltalog.rows_changed_by_others(spark, location, after, upto, "w", own)

    assert (changed(0, 1, {1}), changed(0, 1, set())) == (False, True)
    assert changed(1, 3, set()) is False  # only another writer's appends
    assert (changed(3, 4, {2}), changed(3, 4, {1})) == (False, True)
    values = sorted(r["v"] for r in spark.read.format("delta").load(location).collect())
    assert values == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="WriteTag"):
        storage.append_idempotent(
            spark.createDataFrame([(6,)], spec.schema),
            spec,
            location,
            "w",
            3,
            user_metadata="x",
            known_new=True,
        )
