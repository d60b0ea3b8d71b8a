"""Unit tests of the pure silver transforms on hand-built DataFrames with exact expected values."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

import pycountry
import pytest
import yaml
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DataType,
    DateType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from adlake import schemas
from adlake.config import ConfigError
from adlake.settings import silver as rules_conf
from adlake.silver import dedup, standardize
from adlake.silver import rules as silver_rules
from adlake.tables import SILVER_BID_REQUESTS, SILVER_CLICKS, SILVER_CONVERSIONS, SILVER_IMPRESSIONS

F1 = "file:/landing/a"
F2 = "file:/landing/b"
INGESTED = datetime(2026, 11, 2, 8, 0, tzinfo=timezone.utc)
RULES = rules_conf.parse_rules(yaml.safe_load(rules_conf.DEFAULT_RULES_YAML))
STR = StringType()
TS = TimestampType()
MONEY = standardize.MONEY


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    """An aware UTC datetime, so expected instants do not depend on the test machine's zone."""
    return datetime(year, month, day, hour, minute, second, us, tzinfo=timezone.utc)


def struct(*fields: tuple[str, DataType]) -> StructType:
    return StructType([StructField(name, data_type, True) for name, data_type in fields])


def assert_rows(actual: DataFrame, rows: Sequence[tuple[Any, ...]], schema: StructType) -> None:
    expected = actual.sparkSession.createDataFrame(list(rows), schema)
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def bronze_row(schema: StructType, defaults: dict[str, Any], **values: Any) -> tuple[Any, ...]:
    """One bronze tuple in schema order: defaults, overrides, then valid metadata."""
    metadata = {
        schemas.SOURCE_FILE: F1,
        schemas.INGESTED_AT: INGESTED,
        schemas.RUN_SEQ: 1,
        schemas.INGESTION_DATE: date(2026, 11, 2),
    }
    merged = {**defaults, **metadata, **values}
    return tuple(merged.get(field.name) for field in schema.fields)


# ----------------------------------------------------------------------------- timestamps


def test_parse_event_ts_every_format_in_utc_and_new_york(spark: SparkSession) -> None:
    # The point of try_* and regex guards: bad text must be null even with ANSI mode on.
    assert spark.conf.get("spark.sql.ansi.enabled") == "true"
    ten = utc(2023, 11, 1, 10, 0)
    cases: list[tuple[str, str | None, datetime | None, datetime | None]] = [
        # seed format: wall clock in source_tz (New York is on EDT, UTC-4, until 2023-11-05)
        ("seed", "2023-11-01 10:00:00", ten, utc(2023, 11, 1, 14, 0)),
        ("seed_winter", "2024-01-15 08:30:00", utc(2024, 1, 15, 8, 30), utc(2024, 1, 15, 13, 30)),
        (
            "seed_fraction",
            "2023-11-01 10:00:00.5",
            utc(2023, 11, 1, 10, 0, 0, 500000),
            utc(2023, 11, 1, 14, 0, 0, 500000),
        ),
        (
            "seed_nanos_truncated",
            "2024-01-15 08:30:00.123456789",
            utc(2024, 1, 15, 8, 30, 0, 123456),
            utc(2024, 1, 15, 13, 30, 0, 123456),
        ),
        ("seed_blanks", "  2023-11-01 10:00:00\t", ten, utc(2023, 11, 1, 14, 0)),
        # DST gap (02:30 does not exist: moved forward to 03:30 EDT) and overlap (earlier offset)
        ("dst_gap", "2024-03-10 02:30:00", utc(2024, 3, 10, 2, 30), utc(2024, 3, 10, 7, 30)),
        ("dst_overlap", "2024-11-03 01:30:00", utc(2024, 11, 3, 1, 30), utc(2024, 11, 3, 5, 30)),
        # ISO-8601 with an offset: source_tz is irrelevant
        ("iso_colon", "2023-11-01T10:00:00+02:00", utc(2023, 11, 1, 8, 0), utc(2023, 11, 1, 8, 0)),
        ("iso_compact", "2023-11-01T10:00:00+0200", utc(2023, 11, 1, 8, 0), utc(2023, 11, 1, 8, 0)),
        (
            "iso_negative_fraction",
            "2023-11-01T10:00:00.25-05:30",
            utc(2023, 11, 1, 15, 30, 0, 250000),
            utc(2023, 11, 1, 15, 30, 0, 250000),
        ),
        ("iso_z", "2023-11-01T10:00:00Z", ten, ten),
        (
            "iso_z_millis",
            "2026-11-01T09:30:00.123Z",
            utc(2026, 11, 1, 9, 30, 0, 123000),
            utc(2026, 11, 1, 9, 30, 0, 123000),
        ),
        ("iso_lower_case", "2023-11-01t10:00:00z", ten, ten),
        ("space_with_offset", "2023-11-01 12:00:00+02:00", ten, ten),
        # ISO-8601 without an offset: wall clock in source_tz
        ("iso_local", "2023-11-01T10:00:00", ten, utc(2023, 11, 1, 14, 0)),
        (
            "iso_local_summer",
            "2024-07-04T12:00:00.1",
            utc(2024, 7, 4, 12, 0, 0, 100000),
            utc(2024, 7, 4, 16, 0, 0, 100000),
        ),
        # epoch milliseconds (12-14 digits) and seconds (9-11 digits): absolute instants
        ("epoch_ms", "1730455200000", utc(2024, 11, 1, 10, 0), utc(2024, 11, 1, 10, 0)),
        (
            "epoch_ms_fraction",
            "1730455200123",
            utc(2024, 11, 1, 10, 0, 0, 123000),
            utc(2024, 11, 1, 10, 0, 0, 123000),
        ),
        (
            "epoch_ms_12_digits",
            "100000000000",
            utc(1973, 3, 3, 9, 46, 40),
            utc(1973, 3, 3, 9, 46, 40),
        ),
        (
            "epoch_ms_14_digits",
            "99999999999999",
            utc(5138, 11, 16, 9, 46, 39, 999000),
            utc(5138, 11, 16, 9, 46, 39, 999000),
        ),
        ("epoch_s", "1730455200", utc(2024, 11, 1, 10, 0), utc(2024, 11, 1, 10, 0)),
        ("epoch_s_9_digits", "100000000", utc(1973, 3, 3, 9, 46, 40), utc(1973, 3, 3, 9, 46, 40)),
        (
            "epoch_s_11_digits",
            "99999999999",
            utc(5138, 11, 16, 9, 46, 39),
            utc(5138, 11, 16, 9, 46, 39),
        ),
        # unparsable -> null, never an error
        ("8_digits", "20231101", None, None),
        ("15_digits", "123456789012345", None, None),
        ("signed_epoch", "-1730455200", None, None),
        ("decimal_epoch", "1730455200.5", None, None),
        ("impossible_date", "2023-02-30 10:00:00", None, None),
        ("hour_25", "2023-11-01 25:00:00", None, None),
        ("offset_25h", "2023-11-01T10:00:00+25:00", None, None),
        ("date_only", "2023-11-01", None, None),
        ("no_seconds", "2023-11-01T10:00", None, None),
        ("day_first", "01/11/2023 10:00:00", None, None),
        ("text", "yesterday", None, None),
        ("blank", "   ", None, None),
        ("empty", "", None, None),
        ("null", None, None, None),
    ]
    schema = struct(("case", STR), ("raw", STR))
    raw = spark.createDataFrame([(c, r) for c, r, _, _ in cases], schema)
    actual = raw.select(
        "case",
        standardize.parse_event_ts(F.col("raw"), "UTC").alias("utc"),
        standardize.parse_event_ts(F.col("raw"), "America/New_York").alias("new_york"),
    )
    assert_rows(
        actual,
        [(c, u, ny) for c, _, u, ny in cases],
        struct(("case", STR), ("utc", TS), ("new_york", TS)),
    )


# ------------------------------------------------------------------------------- websites


def test_standardize_website(spark: SparkSession) -> None:
    cases = [
        ("https://www.Example.com:443/path?q", "example.com"),
        ("https://www.Example.com:443/path?q=1", "example.com"),
        ("example.com", "example.com"),
        ("EXAMPLE.COM", "example.com"),
        ("www.example.org", "example.org"),
        ("WWW.example.org/", "example.org"),
        ("http://example.net/", "example.net"),
        ("https://news.example.co.uk/articles/123", "news.example.co.uk"),
        ("  example.com.  ", "example.com"),
        ("example.com:8080", "example.com"),
        ("example.com?x=1", "example.com"),
        ("example.com#top", "example.com"),
        ("//cdn.example.com/lib.js", "cdn.example.com"),
        ("https://user:secret@www.example.com/", "example.com"),
        ("ftp://files.example.com", "files.example.com"),
        ("http:/example.com", "example.com"),
        ("wwwexample.com", "wwwexample.com"),
        ("www2.example.com", "www2.example.com"),
        ("https://", None),
        ("/", None),
        ("   ", None),
        ("", None),
        (None, None),
    ]
    schema = struct(("raw", STR), ("website", STR))
    raw = spark.createDataFrame([(r, None) for r, _ in cases], schema)
    actual = raw.select("raw", standardize.standardize_website(F.col("raw")).alias("website"))
    assert_rows(actual, cases, schema)


# ------------------------------------------------------------------------------ countries


def test_country_keys_are_unique_and_aliases_fill_gaps_only(spark: SparkSession) -> None:
    keys = standardize.country_keys()
    valid_codes = {c.alpha_2 for c in pycountry.countries}
    assert set(keys.values()) <= valid_codes
    assert all(code in valid_codes for code in standardize.COUNTRY_ALIASES.values())
    # pycountry already knows these; the aliases cover the ones it lacks
    assert keys["USA"] == "US" and keys["UNITED STATES OF AMERICA"] == "US"
    assert keys["SOUTH KOREA"] == "KR" and keys["UK"] == "GB" and keys["RUSSIA"] == "RU"
    lookup = standardize.country_lookup(spark)
    assert lookup.columns == ["country_key", "country_code"]
    assert lookup.groupBy("country_key").count().where("count > 1").count() == 0


def test_with_country_code_joins_any_spelling_and_keeps_rows(spark: SparkSession) -> None:
    cases = [
        (1, "USA", "US"),
        (2, "USA", "US"),  # repeated values must not multiply rows either
        (3, "Canada", "CA"),
        (4, "DEU", "DE"),
        (5, "de", "DE"),
        (6, "Germany", "DE"),
        (7, "  united   kingdom ", "GB"),
        (8, "UK", "GB"),
        (9, "United States of America", "US"),
        (10, "South Korea", "KR"),
        (11, "Russia", "RU"),
        (12, "Atlantis", None),
        (13, None, None),
        (14, "", None),
    ]
    schema = struct(("id", LongType()), ("country_raw", STR), ("country", STR))
    rows = spark.createDataFrame([(i, r, None) for i, r, _ in cases], schema).drop("country")
    actual = rows.transform(
        standardize.with_country_code(standardize.country_lookup(spark), "country_raw")
    )
    assert actual.columns == ["id", "country_raw", "country"]
    assert_rows(actual, cases, schema)


# ------------------------------------------------------------------------ canonical types


def test_canonical_id_and_to_money(spark: SparkSession) -> None:
    d = Decimal
    cases = [
        ("101", "101", d("101.000000")),
        (" 101 ", "101", d("101.000000")),
        ("101.0", "101.0", d("101.000000")),
        ("c-9", "c-9", None),
        ("0.0012", "0.0012", d("0.001200")),
        ("-3", "-3", d("-3.000000")),
        ("0.0000004", "0.0000004", d("0.000000")),
        ("0.0000005", "0.0000005", d("0.000001")),
        ("999999999999.999999", "999999999999.999999", d("999999999999.999999")),
        ("1234567890123", "1234567890123", None),
        ("1e400", "1e400", None),
        ("NaN", "NaN", None),
        ("   ", None, None),
        ("", None, None),
        (None, None, None),
    ]
    schema = struct(("raw", STR), ("id", STR), ("money", standardize.MONEY))
    raw = spark.createDataFrame([(r, None, None) for r, _, _ in cases], schema).select("raw")
    actual = raw.select(
        "raw",
        standardize.canonical_id(F.col("raw")).alias("id"),
        standardize.to_money(F.col("raw")).alias("money"),
    )
    assert_rows(actual, cases, schema)


# -------------------------------------------------------------------------- standardizers

IMPRESSION_OUT = struct(
    ("impression_id", STR), ("event_ts", TS), ("event_date", DateType()),
    ("event_hour", IntegerType()), ("user_id", STR), ("creative_id", STR), ("campaign_id", STR),
    ("website", STR), ("auction_id", STR), ("cost", standardize.MONEY), ("device_type", STR),
    ("os", STR), ("browser", STR), ("country_raw", STR), ("region", STR),
    ("raw_timestamp", STR), ("raw_cost", STR), ("_source_file", STR),
    ("_bronze_ingested_at", TS), ("_rescued_data", STR),
)  # fmt: skip


def test_standardize_impressions(spark: SparkSession) -> None:
    schema = schemas.BRONZE_IMPRESSIONS_SCHEMA
    full = bronze_row(
        schema, {}, impression_id=" imp-1 ", creative_id="7", user_id=" 101 ",
        timestamp="2023-11-01T12:00:00+02:00", website="https://www.Example.com:443/path?q=1",
        auction_id="5001", campaign_id="", cost=" 0.0012 ", device_type=" Mobile ", os="iOS",
        browser="Safari", country=" usa ", region=" California ", _rescued_data='{"x":"1"}',
    )  # fmt: skip
    # local time in New York, late enough to land on the next UTC date
    sparse = bronze_row(schema, {}, timestamp="2023-11-01 23:59:59", _source_file=F2)
    bronze = spark.createDataFrame([full, sparse], schema)
    standardized = bronze.transform(standardize.standardize_impressions("America/New_York"))
    # Lineage keeps the bronze run; the rest of the comparison is on the contract columns.
    assert {r[standardize.BRONZE_RUN_SEQ] for r in standardized.collect()} == {1}
    actual = standardized.drop(standardize.BRONZE_RUN_SEQ)
    assert_rows(
        actual,
        [
            ("imp-1", utc(2023, 11, 1, 10, 0), date(2023, 11, 1), 10, "101", "7", None,
             "example.com", "5001", Decimal("0.001200"), "mobile", "ios", "safari", "usa",
             "California", "2023-11-01T12:00:00+02:00", "0.0012", F1, INGESTED, '{"x":"1"}'),
            (None, utc(2023, 11, 2, 3, 59, 59), date(2023, 11, 2), 3, None, None, None, None,
             None, None, None, None, None, None, None, "2023-11-01 23:59:59", None, F2, INGESTED,
             None),
        ],
        IMPRESSION_OUT,
    )  # fmt: skip


CLICK_OUT = struct(
    ("event_id", STR), ("event_ts", TS), ("event_date", DateType()), ("event_hour", IntegerType()),
    ("user_id", STR), ("campaign_id", STR), ("creative_id", STR), ("conversion_type", STR),
    ("revenue", standardize.MONEY), ("raw_timestamp", STR), ("raw_revenue", STR),
    ("_source_file", STR), ("_bronze_ingested_at", TS), ("_rescued_data", STR),
)  # fmt: skip


def test_standardize_clicks_conversions_and_split(spark: SparkSession) -> None:
    schema = schemas.BRONZE_CLICKS_CONVERSIONS_SCHEMA
    bronze = spark.createDataFrame(
        [
            bronze_row(schema, {}, event_id="ev-1", timestamp="1698832920000", user_id="101",
                       campaign_id="10", creative_id="", conversion_type=" Click ", revenue=""),
            bronze_row(schema, {}, event_id="ev-2", timestamp="2023-11-01 10:06:00",
                       user_id="102", campaign_id="11", creative_id="2",
                       conversion_type="Purchase ", revenue="19.99"),
            bronze_row(schema, {}, timestamp="2023-11-01T23:00:00-02:00", user_id="103",
                       campaign_id="12", revenue="1e400"),
        ],
        schema,
    )  # fmt: skip
    with_run = bronze.transform(standardize.standardize_clicks_conversions("UTC"))
    assert {r[standardize.BRONZE_RUN_SEQ] for r in with_run.collect()} == {1}
    standardized = with_run.drop(standardize.BRONZE_RUN_SEQ)
    assert_rows(
        standardized,
        [
            ("ev-1", utc(2023, 11, 1, 10, 2), date(2023, 11, 1), 10, "101", "10", None, "click",
             None, "1698832920000", None, F1, INGESTED, None),
            ("ev-2", utc(2023, 11, 1, 10, 6), date(2023, 11, 1), 10, "102", "11", "2",
             "purchase", Decimal("19.990000"), "2023-11-01 10:06:00", "19.99", F1, INGESTED,
             None),
            (None, utc(2023, 11, 2, 1, 0), date(2023, 11, 2), 1, "103", "12", None, None, None,
             "2023-11-01T23:00:00-02:00", "1e400", F1, INGESTED, None),
        ],
        CLICK_OUT,
    )  # fmt: skip
    clicks = standardized.transform(standardize.split_clicks)
    conversions = standardized.transform(standardize.split_conversions)
    assert "revenue" not in clicks.columns and "raw_revenue" not in clicks.columns
    assert conversions.columns == standardized.columns
    # a null conversion_type is not a click: it goes with conversions (and a rule rejects it)
    both = clicks.select(F.lit("clicks").alias("part"), "user_id").unionByName(
        conversions.select(F.lit("conversions").alias("part"), "user_id")
    )
    assert_rows(
        both,
        [("clicks", "101"), ("conversions", "102"), ("conversions", "103")],
        struct(("part", STR), ("user_id", STR)),
    )


BID_OUT = struct(
    ("request_id", STR), ("auction_id", STR), ("event_ts", TS), ("event_date", DateType()),
    ("event_hour", IntegerType()), ("user_id", STR), ("location_raw", STR),
    ("bid_amount", standardize.MONEY), ("creative_id", STR), ("website", STR), ("device_type", STR),
    ("os", STR), ("raw_bid_amount", STR), ("raw_timestamp", STR), ("_source_file", STR),
    ("_bronze_ingested_at", TS), ("_rescued_data", STR),
)  # fmt: skip


def test_standardize_bid_requests_flattens_groups(spark: SparkSession) -> None:
    schema = schemas.BRONZE_BID_REQUESTS_SCHEMA
    bronze = spark.createDataFrame(
        [
            bronze_row(schema, {}, request_id="req-1", timestamp="2026-11-01T09:30:00.123Z",
                       user_info=("201", " USA "), auction_details=("1", "0.1"),
                       ad_targeting=("3", "WWW.Example.NET/"), device=("Desktop", " Windows "),
                       _rescued_data='{"device":{"ip":"1"}}'),
            # every group null (a truncated record): members are null, not an error
            bronze_row(schema, {}, request_id="req-2"),
        ],
        schema,
    )  # fmt: skip
    standardized = bronze.transform(standardize.standardize_bid_requests("UTC"))
    # Lineage keeps the bronze run; the rest of the comparison is on the contract columns.
    assert {r[standardize.BRONZE_RUN_SEQ] for r in standardized.collect()} == {1}
    actual = standardized.drop(standardize.BRONZE_RUN_SEQ)
    assert_rows(
        actual,
        [
            ("req-1", "1", utc(2026, 11, 1, 9, 30, 0, 123000), date(2026, 11, 1), 9, "201",
             "USA", Decimal("0.100000"), "3", "example.net", "desktop", "windows", "0.1",
             "2026-11-01T09:30:00.123Z", F1, INGESTED, '{"device":{"ip":"1"}}'),
            ("req-2", None, None, None, None, None, None, None, None, None, None, None, None,
             None, F1, INGESTED, None),
        ],
        BID_OUT,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("standardizer", "schema", "fields"),
    [
        (standardize.standardize_impressions, schemas.BRONZE_IMPRESSIONS_SCHEMA, 13),
        (standardize.standardize_clicks_conversions, schemas.BRONZE_CLICKS_CONVERSIONS_SCHEMA, 7),
        (standardize.standardize_bid_requests, schemas.BRONZE_BID_REQUESTS_SCHEMA, 10),
    ],
)
def test_standardizers_trim_each_contract_field_once(
    spark: SparkSession, standardizer: Any, schema: StructType, fields: int
) -> None:
    """The trim was 31 % of silver's widest stage when a timestamp was trimmed in every branch
    of its parse: the optimized plan must hold one trim per contract field."""
    bronze = spark.createDataFrame([], schema)
    plan = bronze.transform(standardizer("UTC"))._jdf.queryExecution().optimizedPlan().toString()
    assert len(re.findall(r"\btrim\(", plan)) == fields


# ----------------------------------------------------------------------------- enrichment


def creatives(spark: SparkSession) -> DataFrame:
    """Creative 1 is listed twice (a dimension defect): the smallest campaign wins."""
    return spark.createDataFrame(
        [
            ("1", "11", "101", "b"),
            ("1", "10", "100", "a"),
            ("2", "20", "200", "c"),
            (None, "99", "999", "no id"),
        ],
        struct(("creative_id", STR), ("campaign_id", STR), ("advertiser_id", STR),
               ("creative_name", STR)),
    )  # fmt: skip


def test_enrich_with_creatives_precedence_flags_and_no_duplicates(spark: SparkSession) -> None:
    schema = struct(("id", STR), ("creative_id", STR), ("campaign_id", STR))
    rows = spark.createDataFrame(
        [
            ("no_campaign", "1", None),
            ("same_campaign", "1", "10"),
            ("other_campaign", "1", "30"),
            ("unknown_creative", "999", "40"),
            ("no_creative", None, None),
            ("creative_2", "2", None),
        ],
        schema,
    )
    out = struct(
        ("id", STR), ("creative_id", STR), ("campaign_id", STR), ("advertiser_id", STR),
        ("_creative_known", BooleanType()), ("_creative_campaign_matches", BooleanType()),
    )  # fmt: skip
    impressions = rows.transform(standardize.enrich_with_creatives(creatives(spark)))
    # the record's campaign wins; the advertiser only comes with the creative's own campaign
    expected_impressions = [
        ("no_campaign", "1", "10", "100", True, None),
        ("same_campaign", "1", "10", "100", True, True),
        ("other_campaign", "1", "30", None, True, False),
        ("unknown_creative", "999", "40", None, False, None),
        ("no_creative", None, None, None, None, None),
        ("creative_2", "2", "20", "200", True, None),
    ]
    # clicks/conversions: campaign_id is required, so it is never filled from the creative
    clicks = rows.transform(
        standardize.enrich_with_creatives(creatives(spark), fill_campaign=False)
    )
    expected_clicks = [
        ("no_campaign", "1", None, None, True, None),
        ("same_campaign", "1", "10", "100", True, True),
        ("other_campaign", "1", "30", None, True, False),
        ("unknown_creative", "999", "40", None, False, None),
        ("no_creative", None, None, None, None, None),
        ("creative_2", "2", None, None, True, None),
    ]
    both = impressions.withColumn("kind", F.lit("imp")).unionByName(
        clicks.withColumn("kind", F.lit("click"))
    )
    assert_rows(
        both,
        [(*r, "imp") for r in expected_impressions] + [(*r, "click") for r in expected_clicks],
        StructType([*out.fields, StructField("kind", STR)]),
    )


def test_enrich_bid_requests_takes_campaign_from_creative(spark: SparkSession) -> None:
    rows = spark.createDataFrame(
        [("r1", "2"), ("r2", "999"), ("r3", None)], struct(("id", STR), ("creative_id", STR))
    )
    actual = rows.transform(standardize.enrich_with_creatives(creatives(spark)))
    assert_rows(
        actual,
        [("r1", "2", "20", "200", True), ("r2", "999", None, None, False),
         ("r3", None, None, None, None)],
        struct(("id", STR), ("creative_id", STR), ("campaign_id", STR), ("advertiser_id", STR),
               ("_creative_known", BooleanType())),
    )  # fmt: skip


# ---------------------------------------------------------------------------------- rules

FLAGS = struct(
    ("id", STR),
    ("_quarantine_rules", ArrayType(STR)),
    ("_warn_rules", ArrayType(STR)),
    ("_fail_rules", ArrayType(STR)),
)


def flags(df: DataFrame, id_col: str) -> DataFrame:
    return df.select(F.col(id_col).alias("id"), "_quarantine_rules", "_warn_rules", "_fail_rules")


def test_default_rules_parse_and_horizon_rule_is_off_until_uncommented() -> None:
    names = [r.name for r in RULES]
    assert names == [
        "user_id_present", "creative_id_present", "website_present", "timestamp_present",
        "campaign_id_present", "conversion_type_present", "auction_id_present",
        "bid_amount_present", "timestamp_parsable", "not_in_future", "cost_is_number",
        "revenue_is_number", "bid_is_number", "non_negative_cost", "non_negative_revenue",
        "non_negative_bid", "known_conversion_type", "creative_known",
        "impression_creative_campaign_matches", "click_creative_campaign_matches",
    ]  # fmt: skip
    assert {r.action for r in RULES} == {"quarantine", "warn"}
    uncommented = "\n".join(
        line[2:] if line.startswith(("# - ", "#   ")) else line
        for line in rules_conf.DEFAULT_RULES_YAML.splitlines()
    )
    horizon = [
        r for r in rules_conf.parse_rules(yaml.safe_load(uncommented)) if "horizon" in r.name
    ]
    assert horizon == [
        rules_conf.Rule(
            "not_older_than_horizon",
            "event_ts >= current_timestamp() - INTERVAL 400 DAYS",
            "quarantine",
            ("impressions", "clicks", "conversions", "bid_requests"),
        )
    ]


def _rule(**kv: Any) -> dict[str, Any]:
    return {"name": "r", "expr": "a > 0", "action": "warn", "sources": ["impressions"], **kv}


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"name": "r"}, "silver.rules"),
        (None, "silver.rules"),
        (["r"], "silver.rules[0]"),
        ([{k: v for k, v in _rule().items() if k != "expr"}], "silver.rules[0].expr"),
        ([_rule(severity="high")], "silver.rules[0].severity"),
        ([_rule(action="drop")], "silver.rules[0].action"),
        ([_rule(sources=["clicks_conversions"])], "silver.rules[0].sources"),
        ([_rule(sources="impressions")], "silver.rules[0].sources"),
        ([_rule(sources=[])], "silver.rules[0].sources"),
        ([_rule(sources=["clicks", "clicks"])], "silver.rules[0].sources"),
        ([_rule(expr="  ")], "silver.rules[0].expr"),
        ([_rule(expr=3)], "silver.rules[0].expr"),
        ([_rule(name="Bad Name")], "silver.rules[0].name"),
        ([_rule(), _rule(name="s"), _rule(name="r")], "silver.rules[2].name"),
    ],
)
def test_parse_rules_errors_name_the_key(raw: object, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        rules_conf.parse_rules(raw)
    assert err.value.key == key


def test_parse_rules_uses_the_given_key() -> None:
    with pytest.raises(ConfigError, match=r"'conf\.checks\[0\]\.action'"):
        rules_conf.parse_rules([_rule(action="Quarantine")], key="conf.checks")
    assert rules_conf.parse_rules([]) == ()


def test_apply_rules_null_passes_order_sources_and_actions(spark: SparkSession) -> None:
    rules = [
        rules_conf.Rule("positive", "a > 0", "quarantine", ("impressions",)),
        rules_conf.Rule("has_b", "b IS NOT NULL", "warn", ("impressions",)),
        rules_conf.Rule("small", "a < 10", "fail", ("impressions",)),
        rules_conf.Rule("not_five", "a <> 5", "quarantine", ("clicks",)),
        rules_conf.Rule("even", "a % 2 = 0", "quarantine", ("impressions", "clicks")),
    ]
    rows = spark.createDataFrame(
        [("ok", 2, "x"), ("null_a", None, "x"), ("many", -3, None), ("big", 11, "x"),
         ("five", 5, "x")],
        struct(("id", STR), ("a", LongType()), ("b", STR)),
    )  # fmt: skip
    actual = flags(rows.transform(silver_rules.apply_rules(rules, "impressions")), "id")
    assert_rows(
        actual,
        [
            ("ok", [], [], []),
            ("null_a", [], [], []),  # every check is NULL: NULL passes
            ("many", ["positive", "even"], ["has_b"], []),
            ("big", ["even"], [], ["small"]),
            ("five", ["even"], [], []),  # not_five is a clicks rule
        ],
        FLAGS,
    )


def test_apply_rules_errors_name_the_rule(spark: SparkSession) -> None:
    rows = spark.createDataFrame([(1,)], struct(("a", LongType())))
    fine = rules_conf.Rule("fine", "a > 0", "warn", ("clicks",))
    unknown = [fine, rules_conf.Rule("uses_missing", "nope > 0", "warn", ("clicks",))]
    # The rules are analysed together; the error still names the one at fault.
    with pytest.raises(silver_rules.RuleError, match=r"^rule 'uses_missing' \(clicks\)"):
        rows.transform(silver_rules.apply_rules(unknown, "clicks"))
    unparsable = [fine, rules_conf.Rule("half_written", "a >", "warn", ("clicks",))]
    with pytest.raises(silver_rules.RuleError, match=r"^rule 'half_written' \(clicks\)"):
        rows.transform(silver_rules.apply_rules(unparsable, "clicks"))
    not_boolean = [fine, rules_conf.Rule("is_number", "a + 1", "warn", ("clicks",))]
    with pytest.raises(silver_rules.RuleError, match=r"^rule 'is_number'.*not boolean"):
        rows.transform(silver_rules.apply_rules(not_boolean, "clicks"))
    with pytest.raises(ValueError, match="clicks_conversions"):
        silver_rules.apply_rules(unknown, "clicks_conversions")


IMPRESSION_DEFAULTS: dict[str, Any] = {
    "creative_id": "1", "user_id": "101", "timestamp": "2023-11-01 10:00:00",
    "website": "example.com", "auction_id": "5", "campaign_id": "10", "cost": "0.5",
}  # fmt: skip


def test_default_rules_on_impressions(spark: SparkSession) -> None:
    schema = schemas.BRONZE_IMPRESSIONS_SCHEMA

    def row(label: str, **kv: Any) -> tuple[Any, ...]:
        return bronze_row(schema, IMPRESSION_DEFAULTS, impression_id=label, **kv)

    bronze = spark.createDataFrame(
        [
            row("ok"),
            row("missing", user_id=None, creative_id=None, website="https://", timestamp=None),
            row("bad_ts", timestamp="yesterday"),
            row("future", timestamp="2999-01-01 00:00:00"),
            row("old", timestamp="2000-01-01 00:00:00"),
            row("cost_not_number", cost="1e400"),
            row("negative_cost", cost="-0.1"),
            row("no_cost", cost=None, campaign_id=None),
            row("unknown_creative", creative_id="999"),
            row("other_campaign", campaign_id="20"),
            row("several", timestamp="2999-01-01 00:00:00", cost="-1", creative_id="999"),
        ],
        schema,
    )
    actual = (
        bronze.transform(standardize.standardize_impressions("UTC"))
        .transform(standardize.enrich_with_creatives(creatives(spark)))
        .transform(silver_rules.apply_rules(RULES, "impressions"))
    )
    assert_rows(
        flags(actual, "impression_id"),
        [
            ("ok", [], [], []),
            ("missing", ["user_id_present", "creative_id_present", "website_present",
                         "timestamp_present"], [], []),
            ("bad_ts", ["timestamp_parsable"], [], []),
            ("future", ["not_in_future"], [], []),
            ("old", [], [], []),
            ("cost_not_number", ["cost_is_number"], [], []),
            ("negative_cost", ["non_negative_cost"], [], []),
            ("no_cost", [], [], []),
            ("unknown_creative", [], ["creative_known"], []),
            ("other_campaign", [], ["impression_creative_campaign_matches"], []),
            ("several", ["not_in_future", "non_negative_cost"], ["creative_known"], []),
        ],
        FLAGS,
    )  # fmt: skip


CLICK_DEFAULTS: dict[str, Any] = {
    "timestamp": "2023-11-01 10:02:00", "user_id": "101", "campaign_id": "10",
    "creative_id": "1", "conversion_type": "click",
}  # fmt: skip


def test_default_rules_on_clicks_and_conversions(spark: SparkSession) -> None:
    schema = schemas.BRONZE_CLICKS_CONVERSIONS_SCHEMA

    def click(label: str, **kv: Any) -> tuple[Any, ...]:
        return bronze_row(schema, CLICK_DEFAULTS, event_id=label, **kv)

    def conversion(label: str, **kv: Any) -> tuple[Any, ...]:
        base = {"conversion_type": " Purchase", "revenue": "10.5", **kv}
        return click(label, **base)

    bronze = spark.createDataFrame(
        [
            click("c_ok"),
            click("c_missing", user_id=None, campaign_id=None, timestamp=None),
            click("c_bad_ts", timestamp="2023-13-01 10:00:00"),
            click("c_unknown_creative", creative_id="999"),
            click("c_other_campaign", campaign_id="20"),
            click("c_no_creative", creative_id=None),
            conversion("v_ok"),
            conversion("v_add_to_cart", conversion_type="Add_To_Cart"),
            conversion("v_no_revenue", revenue=None),
            conversion("v_no_type", conversion_type=None),
            conversion("v_unknown_type", conversion_type="download"),
            conversion("v_negative", revenue="-1"),
            conversion("v_not_number", revenue="1e400"),
            conversion("v_several", user_id=None, timestamp="2999-01-01 00:00:00",
                       conversion_type="download", revenue="-5", campaign_id="20"),
        ],
        schema,
    )  # fmt: skip
    enriched = bronze.transform(standardize.standardize_clicks_conversions("UTC")).transform(
        standardize.enrich_with_creatives(creatives(spark), fill_campaign=False)
    )
    clicks = enriched.transform(standardize.split_clicks).transform(
        silver_rules.apply_rules(RULES, "clicks")
    )
    conversions = enriched.transform(standardize.split_conversions).transform(
        silver_rules.apply_rules(RULES, "conversions")
    )
    assert_rows(
        flags(clicks, "event_id").unionByName(flags(conversions, "event_id")),
        [
            ("c_ok", [], [], []),
            ("c_missing", ["user_id_present", "timestamp_present", "campaign_id_present"], [],
             []),
            ("c_bad_ts", ["timestamp_parsable"], [], []),
            ("c_unknown_creative", [], ["creative_known"], []),
            ("c_other_campaign", [], ["click_creative_campaign_matches"], []),
            ("c_no_creative", [], [], []),
            ("v_ok", [], [], []),
            ("v_add_to_cart", [], [], []),
            ("v_no_revenue", [], [], []),
            ("v_no_type", ["conversion_type_present"], [], []),
            ("v_unknown_type", ["known_conversion_type"], [], []),
            ("v_negative", ["non_negative_revenue"], [], []),
            ("v_not_number", ["revenue_is_number"], [], []),
            ("v_several", ["user_id_present", "not_in_future", "non_negative_revenue",
                           "known_conversion_type"], ["click_creative_campaign_matches"], []),
        ],
        FLAGS,
    )  # fmt: skip


def test_default_rules_on_bid_requests(spark: SparkSession) -> None:
    schema = schemas.BRONZE_BID_REQUESTS_SCHEMA
    defaults = {
        "timestamp": "2026-11-01T09:30:00.123Z", "user_info": ("201", "USA"),
        "auction_details": ("1", "0.1"), "ad_targeting": ("2", "example.net"),
    }  # fmt: skip

    def row(label: str, **kv: Any) -> tuple[Any, ...]:
        return bronze_row(schema, defaults, request_id=label, **kv)

    bronze = spark.createDataFrame(
        [
            row("b_ok"),
            row("b_no_timestamp", timestamp=None),  # optional in the bid-request contract
            row("b_missing", user_info=None, auction_details=None, ad_targeting=None),
            row("b_bad_ts", timestamp="31/12/2023"),
            row("b_future", timestamp="2999-01-01T00:00:00Z"),
            row("b_not_number", auction_details=("1", "1e400")),
            row("b_negative", auction_details=("1", "-0.1")),
            row("b_unknown_creative", ad_targeting=("999", None)),
        ],
        schema,
    )
    actual = (
        bronze.transform(standardize.standardize_bid_requests("UTC"))
        .transform(standardize.enrich_with_creatives(creatives(spark)))
        .transform(silver_rules.apply_rules(RULES, "bid_requests"))
    )
    assert_rows(
        flags(actual, "request_id"),
        [
            ("b_ok", [], [], []),
            ("b_no_timestamp", [], [], []),
            ("b_missing", ["user_id_present", "creative_id_present", "auction_id_present",
                           "bid_amount_present"], [], []),
            ("b_bad_ts", ["timestamp_parsable"], [], []),
            ("b_future", ["not_in_future"], [], []),
            ("b_not_number", ["bid_is_number"], [], []),
            ("b_negative", ["non_negative_bid"], [], []),
            ("b_unknown_creative", [], ["creative_known"], []),
        ],
        FLAGS,
    )  # fmt: skip


# ---------------------------------------------------------------------------------- dedup

DEDUP_IN = struct(
    ("label", STR), ("impression_id", STR), ("user_id", STR), ("creative_id", STR),
    ("event_ts", TS), ("website", STR), ("auction_id", STR), ("cost", MONEY),
    ("device_type", STR), ("os", STR), ("browser", STR), ("_source_file", STR),
    ("_bronze_ingested_at", TS),
)  # fmt: skip


def _expected_hash(*fields: str | None) -> str:
    text = "\u001f".join("\u0000" if f is None else f for f in fields)
    return "h:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_dedup_keys_and_deterministic_survivors(spark: SparkSession) -> None:
    t0, t1 = utc(2026, 11, 2, 7, 0), utc(2026, 11, 2, 8, 0)
    ts = utc(2023, 11, 1, 10, 0)
    micros = str(int(ts.timestamp()) * 1_000_000)
    device = ("mobile", "ios", "safari")
    business = ("u1", "c1", ts, "example.com", None, Decimal("0.5"), *device)
    rows = spark.createDataFrame(
        [
            # the same id three times: the earliest ingestion wins, then the smallest file
            ("id_late_f1", "imp-1", *business, F1, t1),
            ("id_early_f2", "imp-1", "other", "c9", ts, "x.org", "a1", None, *device, F2, t0),
            ("id_late_f0", " imp-1 ", *business, "file:/landing/0", t1),
            ("id2_f2", "imp-2", *business, F2, t1),
            ("id2_f1", "imp-2", *business, F1, t1),
            # no id: equal business fields share a key; identical rows tie-break on content
            ("hash_b", None, *business, F1, t1),
            ("hash_a", "  ", *business, F1, t1),
            # a different website, or null vs empty text, gives a different key
            ("hash_other_site", None, "u1", "c1", ts, "example.org", None, Decimal("0.5"),
             *device, F1, t1),
            ("hash_empty_auction", None, "u1", "c1", ts, "example.com", "", Decimal("0.5"),
             *device, F1, t1),
        ],
        DEDUP_IN,
    )  # fmt: skip
    keyed = rows.transform(
        dedup.with_dedup_key(dedup.IMPRESSION_ID, dedup.IMPRESSION_BUSINESS_COLUMNS)
    )
    same = _expected_hash("u1", "c1", micros, "example.com", None, "0.500000", *device)
    keys = {
        "id_late_f1": "imp-1", "id_early_f2": "imp-1", "id_late_f0": "imp-1",
        "id2_f2": "imp-2", "id2_f1": "imp-2", "hash_b": same, "hash_a": same,
        "hash_other_site": _expected_hash(
            "u1", "c1", micros, "example.org", None, "0.500000", *device
        ),
        "hash_empty_auction": _expected_hash(
            "u1", "c1", micros, "example.com", "", "0.500000", *device
        ),
    }  # fmt: skip
    assert len(set(keys.values())) == 5
    assert_rows(
        keyed.select("label", dedup.DEDUP_KEY),
        list(keys.items()),
        struct(("label", STR), ("_dedup_key", STR)),
    )
    survivors = keyed.transform(dedup.drop_duplicates_in_batch)
    assert survivors.columns == keyed.columns
    assert_rows(
        survivors.select("label"),
        [("id_early_f2",), ("id2_f1",), ("hash_a",), ("hash_other_site",),
         ("hash_empty_auction",)],
        struct(("label", STR)),
    )  # fmt: skip


CONVERSION_DEDUP_IN = struct(
    ("label", STR), ("event_id", STR), ("user_id", STR), ("campaign_id", STR),
    ("creative_id", STR), ("conversion_type", STR), ("event_ts", TS), ("revenue", MONEY),
    ("_source_file", STR), ("_bronze_ingested_at", TS),
)  # fmt: skip


def test_conversions_without_id_differing_in_revenue_are_two_events(
    spark: SparkSession,
) -> None:
    t0, t1 = utc(2026, 11, 2, 7, 0), utc(2026, 11, 2, 8, 0)
    ts = utc(2023, 11, 1, 10, 0)
    micros = str(int(ts.timestamp()) * 1_000_000)
    who = ("u1", "k1", "c1")
    rows = spark.createDataFrame(
        [
            # two purchases by one user in one second: different amounts, different events
            ("buy_10", None, *who, "purchase", ts, Decimal("10.00"), F1, t0),
            ("buy_25", None, *who, "purchase", ts, Decimal("25.50"), F1, t0),
            # the first purchase delivered again later: a true duplicate
            ("buy_10_again", None, *who, "purchase", ts, Decimal("10.000000"), F2, t1),
            # another type in the same second, and a purchase without revenue
            ("signup", None, *who, "signup", ts, None, F1, t0),
            ("buy_none", None, *who, "purchase", ts, None, F1, t0),
        ],
        CONVERSION_DEDUP_IN,
    )
    id_col, business = dedup.DEDUP_KEYS["conversions"]
    keyed = rows.transform(dedup.with_dedup_key(id_col, business))
    assert_rows(
        keyed.select("label", dedup.DEDUP_KEY),
        [
            ("buy_10", _expected_hash(*who, "purchase", micros, "10.000000")),
            ("buy_25", _expected_hash(*who, "purchase", micros, "25.500000")),
            ("buy_10_again", _expected_hash(*who, "purchase", micros, "10.000000")),
            ("signup", _expected_hash(*who, "signup", micros, None)),
            ("buy_none", _expected_hash(*who, "purchase", micros, None)),
        ],
        struct(("label", STR), ("_dedup_key", STR)),
    )
    assert_rows(
        keyed.transform(dedup.drop_duplicates_in_batch).select("label"),
        [("buy_10",), ("buy_25",), ("signup",), ("buy_none",)],
        struct(("label", STR)),
    )


def test_impressions_without_ids_differing_in_cost_or_device_are_two_events(
    spark: SparkSession,
) -> None:
    t0 = utc(2026, 11, 2, 7, 0)
    ts = utc(2023, 11, 1, 10, 0)
    where = ("u1", "c1", ts, "example.com", None)
    rows = spark.createDataFrame(
        [
            ("cheap", None, *where, Decimal("0.5"), "mobile", "ios", "safari", F1, t0),
            ("dear", None, *where, Decimal("0.7"), "mobile", "ios", "safari", F1, t0),
            ("desktop", None, *where, Decimal("0.5"), "desktop", "macos", "safari", F1, t0),
            ("cheap_again", None, *where, Decimal("0.50"), "mobile", "ios", "safari", F2, t0),
        ],
        DEDUP_IN,
    )
    id_col, business = dedup.DEDUP_KEYS["impressions"]
    survivors = rows.transform(dedup.with_dedup_key(id_col, business)).transform(
        dedup.drop_duplicates_in_batch
    )
    assert_rows(
        survivors.select("label"),
        [("cheap",), ("dear",), ("desktop",)],
        struct(("label", STR)),
    )


def test_dedup_keys_cover_every_target_with_its_own_columns() -> None:
    specs = {
        "impressions": SILVER_IMPRESSIONS,
        "clicks": SILVER_CLICKS,
        "conversions": SILVER_CONVERSIONS,
        "bid_requests": SILVER_BID_REQUESTS,
    }
    assert set(dedup.DEDUP_KEYS) == set(specs)
    for target, (id_col, business) in dedup.DEDUP_KEYS.items():
        names = set(specs[target].schema.fieldNames())
        assert {id_col, *business} <= names, target
    assert "revenue" in dedup.DEDUP_KEYS["conversions"][1]
    assert "conversion_type" in dedup.DEDUP_KEYS["conversions"][1]


def test_with_dedup_key_names_missing_columns(spark: SparkSession) -> None:
    rows = spark.createDataFrame([("1",)], struct(("request_id", STR)))
    with pytest.raises(standardize.MissingColumnError, match="auction_id"):
        rows.transform(
            dedup.with_dedup_key(dedup.BID_REQUEST_ID, dedup.BID_REQUEST_BUSINESS_COLUMNS)
        )


def test_canonical_id_trims_exactly_ascii_whitespace(spark: SparkSession) -> None:
    """Every ASCII whitespace character is trimmed at both ends; inner blanks, a
    non-breaking space and other control characters are kept; all-blank becomes null."""
    schema = StructType([StructField("raw", StringType())])
    raws = [" \t\n\u000b\f\ra b\r\n", "\u00a0x", " \t ", None, "", "x", "ab\t", "\fab"]
    raws += ["\u0001x", "x\u0001", " \u0001 x\u0001\t"]
    got = [
        r[0]
        for r in spark.createDataFrame([(v,) for v in raws], schema)
        .select(standardize.canonical_id(F.col("raw")))
        .collect()
    ]
    expected = ["a b", "\u00a0x", None, None, None, "x", "ab", "ab"]
    assert got == [*expected, "\u0001x", "x\u0001", "\u0001 x\u0001"]
