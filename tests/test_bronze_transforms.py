"""Unit tests of the pure bronze parsers on hand-built DataFrames."""

from __future__ import annotations

from datetime import datetime

from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    DoubleType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from adlake import schemas
from adlake.bronze import csvheader, parse, tally

LINES = StructType(
    [
        StructField("value", StringType(), True),
        StructField(schemas.SOURCE_FILE, StringType(), False),
    ]
)
F1 = "file:/landing/a"
F2 = "file:/landing/b"


def _parsed_schema(names: list[str]) -> StructType:
    return StructType(
        [StructField(n, StringType(), True) for n in names]
        + [
            StructField(schemas.RESCUED_DATA, StringType(), True),
            StructField(schemas.SOURCE_FILE, StringType(), False),
            StructField(parse.RAW_RECORD, StringType(), True),
            StructField(parse.REJECT_REASON, StringType(), True),
            StructField(parse.REJECT_DETAIL, StringType(), True),
        ]
    )


def _assert_rows(
    actual: DataFrame, expected_rows: list[tuple[object, ...]], names: list[str]
) -> None:
    expected = actual.sparkSession.createDataFrame(expected_rows, _parsed_schema(names))
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_json_lines_seed_record_wrong_types_rescue_and_malformed(spark: SparkSession) -> None:
    seed = '{"creative_id": 1, "user_id": 101, "timestamp": "2023-11-01 10:00:00", "website": "example.com"}'
    drift = '{"creative_id": "c-9", "user_id": 7, "timestamp": 1730455200000, "website": "x.org", "cost": 0.0012, "placement_id": "p-1", "extra": {"a": 1}}'
    wrong = (
        '{"creative_id": 2, "user_id": {"id": 7}, "timestamp": "t", "website": "w", "cost": "abc"}'
    )
    broken = '{"creative_id": 5, "user_id"'
    not_object = "[1, 2]"
    lines = spark.createDataFrame(
        [
            (seed, F1),
            (drift, F1),
            (wrong, F1),
            (broken, F1),
            (not_object, F1),
            ("   ", F1),
            ("", F1),
        ],
        LINES,
    )
    actual = lines.transform(parse.parse_json_lines(schemas.IMPRESSION_FIELDS))
    names = [f.name for f in schemas.IMPRESSION_FIELDS]

    def row(**kv: object) -> tuple[object, ...]:
        return tuple(kv.get(n) for n in names)

    _assert_rows(
        actual,
        [
            (
                *row(
                    creative_id="1",
                    user_id="101",
                    timestamp="2023-11-01 10:00:00",
                    website="example.com",
                ),
                None,
                F1,
                seed,
                None,
                None,
            ),
            (
                *row(
                    creative_id="c-9",
                    user_id="7",
                    timestamp="1730455200000",
                    website="x.org",
                    cost="0.0012",
                ),
                '{"placement_id":"p-1","extra":"{\\"a\\":1}"}',
                F1,
                drift,
                None,
                None,
            ),
            (
                *row(creative_id="2", user_id='{"id":7}', timestamp="t", website="w", cost="abc"),
                None,
                F1,
                wrong,
                "wrong_type",
                "user_id,cost",
            ),
            (*row(), None, F1, broken, "malformed_json", None),
            (*row(), None, F1, not_object, "malformed_json", None),
        ],
        names,
    )


CLICK_NAMES = [f.name for f in schemas.CLICK_CONVERSION_FIELDS]


def _click_row(**kv: object) -> tuple[object, ...]:
    """A parsed click's contract fields in order, null where not given."""
    return tuple(kv.get(n) for n in CLICK_NAMES)


def _csv_rows(spark: SparkSession, width: int, rows: list[tuple[object, ...]]) -> DataFrame:
    """Rows as Spark's CSV reader gives them for a `width`-column header (see readers)."""
    schema = StructType(
        [StructField(n, StringType(), True) for n in csvheader.positional(width)]
        + [StructField(schemas.SOURCE_FILE, StringType(), False)]
    )
    return spark.createDataFrame(rows, schema)


def test_csv_rows_are_named_by_their_header_and_column_counts_checked(
    spark: SparkSession,
) -> None:
    header = csvheader.names(["timestamp", "user_id", "campaign_id", "conversion_type"])
    rows = _csv_rows(
        spark,
        4,
        [
            ("2023-11-01 10:02:00", "101", "1", "signup", None, "file:/c/1.csv"),
            # The reader fills what it could parse of a short or long row: never used.
            ("2023-11-01 10:06:00", "102", "2", None, "2023-11-01 10:06:00,102,2", "file:/c/1.csv"),
            ("2023-11-01 10:07:00", "103", "3", 'a "quoted", type', None, "file:/c/1.csv"),
            ("2023-11-01 10:08:00", "104", "4", "click", "x,104,4,click,extra", "file:/c/1.csv"),
        ],
    )
    actual = rows.transform(parse.parse_csv_rows(schemas.CLICK_CONVERSION_FIELDS, header))
    row = _click_row
    _assert_rows(
        actual,
        [
            (
                *row(
                    timestamp="2023-11-01 10:02:00",
                    user_id="101",
                    campaign_id="1",
                    conversion_type="signup",
                ),
                None,
                "file:/c/1.csv",
                "2023-11-01 10:02:00,101,1,signup",
                None,
                None,
            ),
            (
                *row(),
                None,
                "file:/c/1.csv",
                "2023-11-01 10:06:00,102,2",
                "csv_column_count",
                "expected 4 fields (header), got 3",
            ),
            (
                *row(
                    timestamp="2023-11-01 10:07:00",
                    user_id="103",
                    campaign_id="3",
                    conversion_type='a "quoted", type',
                ),
                None,
                "file:/c/1.csv",
                '2023-11-01 10:07:00,103,3,"a ""quoted"", type"',
                None,
                None,
            ),
            (
                *row(),
                None,
                "file:/c/1.csv",
                "x,104,4,click,extra",
                "csv_column_count",
                "expected 4 fields (header), got 5",
            ),
        ],
        CLICK_NAMES,
    )


def test_csv_columns_outside_the_contract_are_rescued_and_types_checked(
    spark: SparkSession,
) -> None:
    tokens = ["Event_ID", "conversion_type", "timestamp", "user_id", " campaign_id"]
    tokens += ["creative_id", "revenue", '"Channel"']
    rows = _csv_rows(
        spark,
        8,
        [
            (
                "e-1",
                "purchase",
                "2026-11-01T10:00:00Z",
                "u1",
                "7",
                "70",
                "12.50",
                "email",
                None,
                "f",
            ),
            ("e-2", "Purchase", "1730455200000", "u 2", "7", None, "abc", None, None, "f"),
            ("e-3", "click", "t", "u3", "7", None, None, " web, app ", None, "f"),
        ],
    )
    header = csvheader.names(tokens)
    actual = rows.transform(parse.parse_csv_rows(schemas.CLICK_CONVERSION_FIELDS, header))
    row = _click_row
    _assert_rows(
        actual,
        [
            (
                *row(
                    event_id="e-1",
                    timestamp="2026-11-01T10:00:00Z",
                    user_id="u1",
                    campaign_id="7",
                    creative_id="70",
                    conversion_type="purchase",
                    revenue="12.50",
                ),
                '{"channel":"email"}',
                "f",
                "e-1,purchase,2026-11-01T10:00:00Z,u1,7,70,12.50,email",
                None,
                None,
            ),
            (
                *row(
                    event_id="e-2",
                    timestamp="1730455200000",
                    user_id="u 2",
                    campaign_id="7",
                    conversion_type="Purchase",
                    revenue="abc",
                ),
                None,
                "f",
                "e-2,Purchase,1730455200000,u 2,7,,abc,",
                "wrong_type",
                "user_id,revenue",
            ),
            (
                *row(
                    event_id="e-3",
                    timestamp="t",
                    user_id="u3",
                    campaign_id="7",
                    conversion_type="click",
                ),
                '{"channel":" web, app "}',
                "f",
                'e-3,click,t,u3,7,,," web, app "',
                None,
                None,
            ),
        ],
        CLICK_NAMES,
    )


BOM = "\ufeff"  # a UTF-8 byte-order mark, as Excel's "CSV UTF-8" and Notepad write


def test_csv_header_lines_are_split_like_rows_and_named_case_blind() -> None:
    assert csvheader.tokens(BOM + 'a, B ,"c ""d""",,"e,f"') == [
        "a",
        " B ",
        'c "d"',
        "",
        "e,f",
    ]
    assert csvheader.names([" A ", ' "User_ID" ', "", 'c "d"']) == (
        "a",
        "user_id",
        "",
        'c "d"',
    )
    assert csvheader.duplicates(("a", "b", "a", "c", "b", "a")) == ["a", "b"]
    assert csvheader.duplicates(("a", "b")) == []
    assert [csvheader.is_blank(x) for x in ["", " \t\r", BOM, BOM + " ", " x", "\u00a0"]] == [
        True,
        True,
        True,
        True,
        False,
        False,
    ]


def test_json_line_naming_a_key_twice_is_quarantined_not_half_kept(spark: SparkSession) -> None:
    """A key given twice has two values and only one field: keeping either loses the other
    without a trace, so the line is quarantined with the keys it repeats."""
    twice = '{"impression_id": "1", "user_id": "u", "impression_id": "2"}'
    extra_twice = '{"user_id": "u", "ref": "a", "ref": "b", "ref": "c", "x": 1}'
    drift = '{"user_id": "u", "ref": "a"}'
    lines = spark.createDataFrame([(twice, F1), (extra_twice, F1), (drift, F1)], LINES)
    actual = lines.transform(parse.parse_json_lines(schemas.IMPRESSION_FIELDS))
    names = [f.name for f in schemas.IMPRESSION_FIELDS]
    nothing = [None] * len(names)
    _assert_rows(
        actual,
        [
            (*nothing, None, F1, twice, "malformed_json", "key given more than once: impression_id"),
            (*nothing, None, F1, extra_twice, "malformed_json", "key given more than once: ref"),
            (*[("u" if n == "user_id" else None) for n in names], '{"ref":"a"}', F1, drift,
             None, None),
        ],
        names,
    )  # fmt: skip


def test_json_line_after_a_byte_order_mark_is_a_record(spark: SparkSession) -> None:
    seed = '{"creative_id": 1, "user_id": 101, "timestamp": "2023-11-01 10:00:00", "website": "w"}'
    lines = spark.createDataFrame([(BOM + seed, F1), (BOM, F1)], LINES)
    actual = lines.transform(parse.parse_json_lines(schemas.IMPRESSION_FIELDS))
    names = [f.name for f in schemas.IMPRESSION_FIELDS]
    values = {"creative_id": "1", "user_id": "101", "timestamp": "2023-11-01 10:00:00"}
    # The raw record keeps the line as it came; a line holding only the mark is blank.
    _assert_rows(
        actual,
        [(*[values.get(n, "w" if n == "website" else None) for n in names], None, F1,
          BOM + seed, None, None)],
        names,
    )  # fmt: skip


AVRO_LIKE = StructType(
    [
        StructField("request_id", StringType(), True),
        StructField("timestamp", TimestampType(), True),
        StructField(
            "user_info",
            StructType(
                [
                    StructField("user_id", LongType()),
                    StructField("location", StringType()),
                    StructField("segment", StringType()),
                ]
            ),
            True,
        ),
        StructField(
            "auction_details",
            StructType(
                [StructField("auction_id", LongType()), StructField("bid_amount", DoubleType())]
            ),
            True,
        ),
        StructField(
            "ad_targeting",
            StructType(
                [StructField("creative_id", LongType()), StructField("website", StringType())]
            ),
            True,
        ),
        StructField("exchange", StringType(), True),
        StructField(schemas.SOURCE_FILE, StringType(), False),
    ]
)


def test_bid_requests_projection_keeps_nesting_and_rescues_drift(spark: SparkSession) -> None:
    df = spark.createDataFrame(
        [
            (
                "r-1",
                datetime(2026, 11, 1, 10, 0, 0, 250000),
                (201, "USA", "sports"),
                (1, 0.1),
                (3, "example.net"),
                "adx",
                "file:/b/1.avro",
            ),
            (
                None,
                None,
                (202, "Canada", None),
                (2, 0.15),
                (4, "example.org"),
                None,
                "file:/b/1.avro",
            ),
        ],
        AVRO_LIKE,
    )
    actual = df.transform(parse.project_bid_requests)
    rows = {r["auction_details"]["auction_id"]: r for r in actual.collect()}
    first, second = rows["1"], rows["2"]
    assert first["request_id"] == "r-1"
    assert first["timestamp"] == "2026-11-01T10:00:00.250Z"
    assert first["user_info"].asDict() == {"user_id": "201", "location": "USA"}
    assert first["auction_details"].asDict() == {"auction_id": "1", "bid_amount": "0.1"}
    assert first["ad_targeting"].asDict() == {"creative_id": "3", "website": "example.net"}
    assert first["device"] is None
    assert first[schemas.RESCUED_DATA] == '{"user_info":{"segment":"sports"},"exchange":"adx"}'
    assert first[parse.REJECT_REASON] is None
    assert second["timestamp"] is None
    assert second["auction_details"].asDict() == {"auction_id": "2", "bid_amount": "0.15"}
    assert second[schemas.RESCUED_DATA] == '{"user_info":{}}'
    assert [c for c in actual.columns if not c.startswith("_")] == [
        "request_id",
        "timestamp",
        "user_info",
        "auction_details",
        "ad_targeting",
        "device",
    ]


def test_parse_expressions_are_built_once_and_each_read_gets_its_own_rows(
    spark: SparkSession,
) -> None:
    """A parse's column expressions are kept per contract, header or writer schema and reused
    by later reads (they cost a Py4J round trip per call): the second read of the same
    writer schema builds none and still projects and checks its own rows."""

    def bids(auction: int, amount: float, exchange: str) -> DataFrame:
        row = ("r", None, (1, "USA", None), (auction, amount), (3, "x.net"), exchange, F1)
        return spark.createDataFrame([row], AVRO_LIKE)

    first = bids(1, 0.5, "adx").transform(parse.project_bid_requests).collect()
    built = parse._bid_request_columns.cache_info()
    second = bids(2, float("nan"), "ssp").transform(parse.project_bid_requests).collect()

    kept = parse._bid_request_columns.cache_info()
    assert (kept.hits, kept.misses) == (built.hits + 1, built.misses)  # nothing built again
    assert [r["auction_details"].asDict() for r in first + second] == [
        {"auction_id": "1", "bid_amount": "0.5"},
        {"auction_id": "2", "bid_amount": "NaN"},
    ]
    assert [r[schemas.RESCUED_DATA] for r in first + second] == [
        '{"user_info":{},"exchange":"adx"}',
        '{"user_info":{},"exchange":"ssp"}',
    ]
    assert [(r[parse.REJECT_REASON], r[parse.REJECT_DETAIL]) for r in first + second] == [
        (None, None),
        ("wrong_type", "auction_details.bid_amount"),
    ]


def test_split_into_bronze_and_quarantine_rows(spark: SparkSession) -> None:
    lines = spark.createDataFrame([('{"creative_id": 1}', F1), ("{oops", F1)], LINES)
    parsed = lines.transform(parse.parse_json_lines(schemas.IMPRESSION_FIELDS)).transform(
        parse.with_ingest_metadata(datetime(2026, 11, 2, 3, 4, 5), 7)
    )
    good = parsed.transform(parse.bronze_rows)
    bad = parsed.transform(parse.quarantine_rows("impressions"))
    assert good.columns == [f.name for f in schemas.BRONZE_IMPRESSIONS_SCHEMA.fields]
    assert [r["creative_id"] for r in good.collect()] == ["1"]
    assert bad.columns == [f.name for f in schemas.BRONZE_QUARANTINE_SCHEMA.fields]
    q = bad.collect()[0].asDict()
    assert q == {
        "source": "impressions",
        "raw_record": "{oops",
        schemas.SOURCE_FILE: F1,
        "reason": "malformed_json",
        "detail": None,
        schemas.INGESTED_AT: datetime(2026, 11, 2, 3, 4, 5),
        schemas.RUN_SEQ: 7,
        schemas.INGESTION_DATE: datetime(2026, 11, 2).date(),
    }


# -- runner transforms: parsed parts ------------------------


def test_union_parsed_aligns_parts_by_name(spark: SparkSession) -> None:
    first = spark.createDataFrame(
        [("1", "a", F1)], "creative_id string, _reject_reason string, _source_file string"
    )
    second = spark.createDataFrame(
        [(F2, "b", "x")], "_source_file string, _reject_reason string, extra string"
    )
    expected = spark.createDataFrame(
        [("1", "a", F1), (None, "b", F2)],
        "creative_id string, _reject_reason string, _source_file string",
    )
    assert_df_equality(parse.union_parsed([first, second]), expected, ignore_row_order=True)


def test_parsed_schema_is_what_the_parsers_produce(spark: SparkSession) -> None:
    parsed = spark.createDataFrame([], LINES).transform(
        parse.parse_json_lines(schemas.IMPRESSION_FIELDS)
    )
    empty = spark.createDataFrame([], parse.parsed_schema(schemas.BRONZE_IMPRESSIONS_SCHEMA))
    assert_df_equality(empty, parsed, ignore_nullable=True)
    header = ("user_id", "extra")
    parsed = _csv_rows(spark, 2, []).transform(
        parse.parse_csv_rows(schemas.CLICK_CONVERSION_FIELDS, header)
    )
    empty = spark.createDataFrame([], parse.parsed_schema(schemas.BRONZE_CLICKS_CONVERSIONS_SCHEMA))
    assert_df_equality(empty, parsed, ignore_nullable=True)


def test_reject_buckets_find_every_rejected_line_again(spark: SparkSession) -> None:
    """The bronze pass's `reject_buckets` let the quarantine pass parse a few lines only.

    The buckets are those of the rejected lines' hashes; `lines_in_buckets` keeps exactly
    the lines whose hash falls in one of them, and parsing what it keeps gives back every
    rejected record, nothing else (good lines sharing a bucket parse as good).
    """
    good = [f'{{"creative_id": "{i}", "user_id": "u{i}", "cost": "0.{i}"}}' for i in range(300)]
    bad = ['{"creative_id": "1", "cost": "lots"}', "{not json", '{"user_id": "a b"}']
    lines = spark.createDataFrame(
        [(v, F1) for v in good[:150]] + [(v, F2) for v in good[150:] + bad], LINES
    )
    parsed = lines.transform(parse.parse_json_lines(schemas.IMPRESSION_FIELDS))
    values = parsed.agg(*tally.tally_metrics([F1, F2], line_buckets=True)).first()
    assert values is not None
    counted = tally.Tally.from_metrics([F1, F2], values.asDict())
    assert counted.counts == {F1: (150, 0), F2: (150, 3)}
    expected = {
        r["b"]
        for r in spark.createDataFrame([(v,) for v in bad], "value string")
        .select(F.pmod(F.xxhash64("value"), F.lit(tally.REJECT_BUCKETS)).alias("b"))
        .collect()
    }
    assert counted.reject_buckets == frozenset(expected)
    assert len(expected) == 3

    buckets = spark.createDataFrame([(b,) for b in counted.reject_buckets], "_bucket int")
    kept = lines.transform(tally.lines_in_buckets(buckets))
    kept_values = [r["value"] for r in kept.collect()]
    assert set(bad) <= set(kept_values)
    assert len(kept_values) < 10  # 3 of 2**18 buckets: a good line lands in one by chance
    again = (
        kept.transform(parse.parse_json_lines(schemas.IMPRESSION_FIELDS))
        .transform(parse.with_ingest_metadata(datetime(2026, 12, 1), 1))
        .transform(parse.quarantine_rows("impressions"))
    )
    assert sorted((r["raw_record"], r["reason"]) for r in again.collect()) == sorted(
        [
            ('{"creative_id": "1", "cost": "lots"}', parse.WRONG_TYPE),
            ("{not json", parse.MALFORMED_JSON),
            ('{"user_id": "a b"}', parse.WRONG_TYPE),
        ]
    )
    # Without line buckets the tally carries none (CSV and Avro sources).
    plain = parsed.agg(*tally.tally_metrics([F1, F2])).first()
    assert plain is not None
    assert tally.Tally.from_metrics([F1, F2], plain.asDict()).reject_buckets is None
