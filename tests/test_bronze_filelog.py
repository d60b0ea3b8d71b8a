"""Unit tests of the bronze file log's pure side and run statistics on hand-built rows."""

from __future__ import annotations

from datetime import datetime, timezone

from chispa import assert_df_equality
from pyspark.sql import SparkSession
from pyspark.sql.types import StructField, StructType

from adlake.bronze import filelog
from adlake.bronze.tally import Tally
from adlake.tables import CHANGED, COMMITTED, INGEST_FILE_LOG, PLANNED

F1 = "file:/landing/a"
F2 = "file:/landing/b"
F3 = "file:/landing/c"
T0 = datetime(2026, 11, 2, 3, 4, 5)
T0_UTC = T0.astimezone(timezone.utc)  # how Spark's naive (host-local) timestamps read back
LOG_VIEW = StructType(
    [StructField(n, INGEST_FILE_LOG.schema[n].dataType) for n in filelog.LOG_VIEW_COLUMNS]
)


def _log_row(run_seq: int, path: str, status: str, size: int | None = 10) -> tuple[object, ...]:
    return (run_seq, path, status, T0, 1, 0, size, 5 if size is not None else None)


def test_file_log_view_keeps_the_source_and_reads_missing_stats_as_null(
    spark: SparkSession,
) -> None:
    old_log = spark.createDataFrame(
        [
            ("impressions", 1, F1, COMMITTED, "batch", 3, 1, T0),
            ("clicks", 1, F2, PLANNED, "batch", None, None, T0),
        ],
        StructType(
            [
                f
                for f in INGEST_FILE_LOG.schema.fields
                if f.name not in ("file_size", "file_modified_ms")
            ]
        ),
    )
    expected = spark.createDataFrame([(1, F1, COMMITTED, T0, 3, 1, None, None)], LOG_VIEW)
    actual = old_log.transform(filelog.file_log_view("impressions"))
    assert_df_equality(actual, expected, ignore_nullable=True)


def test_file_log_rows_of_a_plan_and_a_commit(spark: SparkSession) -> None:
    stats = {F1: filelog.FileStats(10, 5)}
    plan = filelog.plan_entries([F1], [F2])
    commit = [(F1, COMMITTED)]
    rows = filelog.file_log_rows("impressions", 3, plan, "batch", T0, {}, stats)
    rows += filelog.file_log_rows("impressions", 3, commit, "batch", T0, {F1: (4, 1)}, stats)
    expected = spark.createDataFrame(
        [
            ("impressions", 3, F1, PLANNED, "batch", None, None, T0, 10, 5),
            ("impressions", 3, F2, CHANGED, "batch", None, None, T0, None, None),
            ("impressions", 3, F1, COMMITTED, "batch", 4, 1, T0, 10, 5),
        ],
        INGEST_FILE_LOG.schema,
    )
    assert_df_equality(spark.createDataFrame(rows, INGEST_FILE_LOG.schema), expected)
    assert (filelog.log_version(3, plan), filelog.log_version(3, commit)) == (6, 7)


def test_pending_runs_and_new_and_changed_files(spark: SparkSession) -> None:
    rows = spark.createDataFrame(
        [
            _log_row(1, F1, PLANNED),
            _log_row(1, F1, COMMITTED),
            _log_row(2, F3, PLANNED, size=None),
            _log_row(2, F2, PLANNED),
        ],
        LOG_VIEW,
    ).collect()
    [pending] = filelog.pending_runs(rows)
    assert (pending.run_seq, pending.files, pending.ingested_at) == (2, [F2, F3], T0_UTC)
    assert pending.stats == {F2: (10, 5), F3: (None, None)}
    listed = {
        F1: filelog.FileStats(11, 5),  # re-landed
        F2: filelog.FileStats(10, 5),
        F3: filelog.FileStats(99, 9),  # logged without stats: cannot be compared
        "file:/landing/new": filelog.FileStats(1, 1),
    }
    found = filelog.find_candidates(rows, listed)
    assert (found.new_files, found.changed, found.last_run) == (["file:/landing/new"], [F1], 2)
    assert filelog.last_data_time(rows) == T0_UTC.timestamp()
    assert filelog.split_runs([]) == [[]]
    assert [len(r) for r in filelog.split_runs([str(i) for i in range(130)])] == [128, 2]


def test_run_result_from_a_tally() -> None:
    tally = Tally({F1: (3, 0), F2: (1, 2)}, (("wrong_type", 1), ("malformed_json", 1)))
    assert tally.with_rejects([F1, F2]) == [F2]
    result = filelog.run_result("impressions", 4, "batch", 2, tally, 0, 1.5, changed_files=1)
    assert (result.bronze_rows, result.quarantined_rows, result.records) == (4, 2, 6)
    assert result.quarantined_by_reason == (("malformed_json", 1), ("wrong_type", 1))
    assert result.changed_files == 1


def test_blamed_file_matches_the_path_spark_names() -> None:
    error = RuntimeError(
        "[FAILED_READ_FILE] Error while reading file file:///landing/aa.avro.\n"
        "Caused by: java.io.IOException: Not an Avro data file"
    )
    assert filelog.blamed_file(error, ["file:/landing/a.avro", "file:/landing/aa.avro"]) == (
        "file:/landing/aa.avro"
    )
    assert filelog.blamed_file(error, ["file:/landing/b.avro"]) is None
    assert filelog.first_line(error) == "Caused by: java.io.IOException: Not an Avro data file"
