"""The pure pieces of a silver batch (adlake.silver.batch) on hand-built DataFrames."""

from __future__ import annotations

import hashlib
from datetime import date, datetime, timezone

from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DateType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from adlake.settings.silver import Rule
from adlake.silver.batch import (
    BatchStats,
    batch_stats,
    for_writes,
    quarantine_rows,
    record_json_if_rejected,
    with_raw_record,
)

STARTED = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
RULES = (
    Rule("user_id_present", "user_id IS NOT NULL", "quarantine", ("impressions",)),
    Rule("cost_known", "cost IS NOT NULL", "warn", ("impressions",)),
    Rule("clicks_only", "TRUE", "quarantine", ("clicks",)),
)
CHECKED_SCHEMA = StructType(
    [
        StructField("impression_id", StringType()),
        StructField("user_id", StringType()),
        StructField("event_ts", TimestampType()),
        StructField("event_date", DateType()),
        StructField("country", StringType()),
        StructField("_bronze_run_seq", LongType()),
        StructField("_source_file", StringType()),
        StructField("_record", StringType()),
        StructField("_quarantine_rules", ArrayType(StringType()), False),
        StructField("_warn_rules", ArrayType(StringType()), False),
        StructField("_fail_rules", ArrayType(StringType()), False),
        StructField("_unknown_country", BooleanType(), False),
        StructField("_duplicate_in_batch", BooleanType(), False),
    ]
)


def _ts(hour: int, day: int = 29) -> datetime:
    return datetime(2026, 11, day, hour, 0, tzinfo=timezone.utc)


def _checked(spark: SparkSession) -> DataFrame:
    bad = ["user_id_present"]
    rows = [
        # id, user, ts, date, country, run, file, record JSON, q, w, f, unknown country, dup
        ("a", "u1", _ts(10), date(2026, 11, 29), "US", 3, "f1", None, [], [], [], False, False),
        ("a", "u1", _ts(10), date(2026, 11, 29), "US", 3, "f1", None, [], [], [], False, True),
        ("b", "u2", _ts(23), date(2026, 11, 29), None, 4, "f1", None, [],
         ["cost_known"], [], True, False),
        ("c", "u3", _ts(1, 30), date(2026, 11, 30), None, 4, "f2", None, [], [], [], False,
         False),
        ("d", None, _ts(5, 30), date(2026, 11, 30), "US", 4, "f2", '{"id":"d"}', bad,
         ["cost_known"], [], False, False),
        ("d", None, _ts(5, 30), date(2026, 11, 30), "US", 4, "f2", '{"id":"d"}', bad,
         ["cost_known"], [], False, False),
        ("e", None, _ts(23, 30), date(2026, 11, 30), "US", 5, "f3", '{"id":"e"}', bad,
         [], [], False, False),
    ]  # fmt: skip
    return spark.createDataFrame(rows, CHECKED_SCHEMA)


def test_raw_record_is_json_on_rejected_rows_only(spark: SparkSession) -> None:
    schema = StructType(
        [
            StructField("impression_id", StringType()),
            StructField("user_id", StringType()),
            StructField("_rescued_data", StringType()),
            StructField("_source_file", StringType()),
            StructField("_ingested_at", TimestampType()),
            StructField("_run_seq", LongType()),
            StructField("_ingestion_date", DateType()),
        ]
    )
    bronze = spark.createDataFrame(
        [
            ("i1", "u1", None, "f1", _ts(1), 1, date(2026, 11, 29)),
            ("i2", None, '{"extra":"x"}', "f1", _ts(1), 1, date(2026, 11, 29)),
        ],
        schema,
    )
    out = (
        bronze.transform(with_raw_record)
        .transform(record_json_if_rejected(F.col("user_id").isNotNull()))
        .select("impression_id", "_record")
    )
    expected = spark.createDataFrame(
        [("i1", None), ("i2", '{"impression_id":"i2","_rescued_data":"{\\"extra\\":\\"x\\"}"}')],
        "impression_id string, _record string",
    )
    assert_df_equality(out, expected, ignore_nullable=True, ignore_row_order=True)


def test_quarantine_rows_one_per_distinct_record(spark: SparkSession) -> None:
    out = quarantine_rows(_checked(spark), "impressions", "run-1", 7, STARTED)

    def key(record: str) -> str:
        return hashlib.sha256(f"impressions\u001f{record}".encode()).hexdigest()

    expected = spark.createDataFrame(
        [
            ("impressions", '{"id":"d"}', ["user_id_present"], "run-1", 7, STARTED, "f2",
             key('{"id":"d"}')),
            ("impressions", '{"id":"e"}', ["user_id_present"], "run-1", 7, STARTED, "f3",
             key('{"id":"e"}')),
        ],
        "source string, record string, failed_rules array<string>, run_id string, "
        "batch_id long, quarantined_at timestamp, _source_file string, _record_key string",
    )  # fmt: skip
    assert_df_equality(out, expected, ignore_nullable=True, ignore_row_order=True)


def test_batch_stats_counts_everything_in_one_aggregation(spark: SparkSession) -> None:
    threshold = _ts(12)
    stats = batch_stats(_checked(spark), RULES, "impressions", threshold)
    assert stats == BatchStats(
        rows_in=7,
        rejected_rows=3,
        valid_duplicates_in_batch=1,
        distinct_rejected=2,
        late_rows=2,  # both rows of a (10:00, before the 12:00 threshold)
        warned_rows=3,
        unknown_countries=1,
        max_written_ts=_ts(1, 30),  # c: d and e are newer but rejected
        run_min=3,
        run_max=5,
        rule_counts={"user_id_present": 3, "cost_known": 3},
        first_rule_counts={"user_id_present": 3},
        event_dates=(date(2026, 11, 29), date(2026, 11, 30)),
        undated_rows=0,
    )


def test_for_writes_keeps_what_the_writes_read_and_flags_unknown_countries(
    spark: SparkSession,
) -> None:
    """Raw texts only the rules read are dropped before the duplicate shuffle; a raw country
    that matched no code becomes one flag."""
    schema = StructType(
        [
            StructField(name, data_type)
            for name, data_type in [
                ("impression_id", StringType()),
                ("raw_timestamp", StringType()),
                ("country_raw", StringType()),
                ("country", StringType()),
                ("_creative_known", BooleanType()),
                ("_record", StringType()),
                ("_dedup_key", StringType()),
                ("_quarantine_rules", ArrayType(StringType())),
                ("_warn_rules", ArrayType(StringType())),
                ("_fail_rules", ArrayType(StringType())),
                ("_bronze_run_seq", LongType()),
            ]
        ]
    )
    rows = [
        ("i1", "2026-11-29 10:00:00", "United States", "US", True, None, "i1", [], [], [], 1),
        ("i2", "2026-11-29 10:00:01", "Atlantis", None, True, None, "i2", [], [], [], 1),
        ("i3", None, None, None, None, '{"id":"i3"}', "i3", ["ts"], [], [], 2),
    ]
    out = spark.createDataFrame(rows, schema).transform(for_writes(["impression_id", "country"]))
    assert out.columns == [
        "impression_id", "country", "_record", "_dedup_key", "_quarantine_rules",
        "_warn_rules", "_fail_rules", "_bronze_run_seq", "_unknown_country",
    ]  # fmt: skip
    assert [(r["impression_id"], r["_unknown_country"]) for r in out.collect()] == [
        ("i1", False),
        ("i2", True),
        ("i3", False),
    ]
    no_country = spark.createDataFrame(rows, schema).drop("country_raw")
    flags = no_country.transform(for_writes(["impression_id"])).select("_unknown_country")
    assert [r[0] for r in flags.collect()] == [False, False, False]
