"""Bronze ingestion runs against real Delta tables under tmp_path."""

from __future__ import annotations

import gzip
import io
import logging
from pathlib import Path
from typing import Any

import fastavro
import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from adlake import schemas
from adlake.bronze import parse, readers
from adlake.bronze.ingest import BronzeIngestor, run_batch
from adlake.config import SOURCES, AppConfig
from adlake.tables import BRONZE_QUARANTINE, COMMITTED, INGEST_FILE_LOG
from tests.conftest import config_for

SEED_IMPRESSIONS = (
    '{"creative_id": 1, "user_id": 101, "timestamp": "2023-11-01 10:00:00", "website": "example.com"}\n'
    '{"creative_id": 2, "user_id": 102, "timestamp": "2023-11-01 10:05:00", "website": "example.org"}\n'
)
SEED_CLICKS = (
    "timestamp,user_id,campaign_id,conversion_type\n"
    "2023-11-01 10:02:00,101,1,signup\n"
    "2023-11-01 10:06:00,102,2,purchase\n"
)
SEED_BIDS: list[dict[str, Any]] = [
    {
        "user_info": {"user_id": 201, "location": "USA"},
        "auction_details": {"auction_id": 1, "bid_amount": 0.1},
        "ad_targeting": {"creative_id": 3, "website": "example.net"},
    },
    {
        "user_info": {"user_id": 202, "location": "Canada"},
        "auction_details": {"auction_id": 2, "bid_amount": 0.15},
        "ad_targeting": {"creative_id": 4, "website": "example.org"},
    },
]


def avro_bytes(records: list[dict[str, Any]], schema: dict[str, Any] | None = None) -> bytes:
    buf = io.BytesIO()
    fastavro.writer(buf, schema or schemas.BID_REQUEST_AVRO_SCHEMA, records, sync_interval=1000)
    return buf.getvalue()


def land(cfg: AppConfig, source: str, name: str, content: str | bytes) -> str:
    """Write one landing file and return its path as Spark names it."""
    path = Path(cfg.landing_path(source)) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return "file:" + str(path)


def land_seed(cfg: AppConfig) -> None:
    land(cfg, "impressions", "seed.jsonl", SEED_IMPRESSIONS)
    land(cfg, "clicks_conversions", "seed.csv", SEED_CLICKS)
    land(cfg, "bid_requests", "seed.avro", avro_bytes(SEED_BIDS))


def table(spark: SparkSession, cfg: AppConfig, relative: str) -> DataFrame:
    return spark.read.format("delta").load(cfg.table_path(relative))


def versions(spark: SparkSession, cfg: AppConfig) -> dict[str, int]:
    out = {}
    for rel in [
        "bronze/impressions",
        "bronze/clicks_conversions",
        "bronze/bid_requests",
        BRONZE_QUARANTINE.relative_path,
        INGEST_FILE_LOG.relative_path,
    ]:
        out[rel] = (
            spark.sql(f"DESCRIBE HISTORY delta.`{cfg.table_path(rel)}`")
            .agg(F.max("version"))
            .first()[0]
        )
    return out


def test_case_study_records_land_with_exact_values(spark: SparkSession, cfg: AppConfig) -> None:
    land_seed(cfg)
    results = run_batch(spark, cfg, SOURCES)
    assert [(r.source, r.files, r.bronze_rows, r.quarantined_rows) for r in results] == [
        ("impressions", 1, 2, 0),
        ("clicks_conversions", 1, 2, 0),
        ("bid_requests", 1, 2, 0),
    ]

    imp = table(spark, cfg, "bronze/impressions").select(
        "creative_id",
        "user_id",
        "timestamp",
        "website",
        "impression_id",
        "cost",
        schemas.RESCUED_DATA,
    )
    expected_imp = spark.createDataFrame(
        [
            ("1", "101", "2023-11-01 10:00:00", "example.com", None, None, None),
            ("2", "102", "2023-11-01 10:05:00", "example.org", None, None, None),
        ],
        imp.schema,
    )
    assert_df_equality(imp, expected_imp, ignore_row_order=True)

    clicks = table(spark, cfg, "bronze/clicks_conversions").select(
        "timestamp", "user_id", "campaign_id", "conversion_type", "event_id", "revenue"
    )
    expected_clicks = spark.createDataFrame(
        [
            ("2023-11-01 10:02:00", "101", "1", "signup", None, None),
            ("2023-11-01 10:06:00", "102", "2", "purchase", None, None),
        ],
        clicks.schema,
    )
    assert_df_equality(clicks, expected_clicks, ignore_row_order=True)

    bids = table(spark, cfg, "bronze/bid_requests")
    got = sorted(
        (
            (
                r["user_info"].asDict(),
                r["auction_details"].asDict(),
                r["ad_targeting"].asDict(),
                r["request_id"],
                r["timestamp"],
            )
            for r in bids.collect()
        ),
        key=repr,
    )
    assert got == sorted(
        [
            (
                {"user_id": "201", "location": "USA"},
                {"auction_id": "1", "bid_amount": "0.1"},
                {"creative_id": "3", "website": "example.net"},
                None,
                None,
            ),
            (
                {"user_id": "202", "location": "Canada"},
                {"auction_id": "2", "bid_amount": "0.15"},
                {"creative_id": "4", "website": "example.org"},
                None,
                None,
            ),
        ],
        key=repr,
    )
    meta = (
        bids.select(
            schemas.SOURCE_FILE,
            schemas.RUN_SEQ,
            schemas.INGESTION_DATE,
            F.to_date(schemas.INGESTED_AT).alias("d"),
        )
        .distinct()
        .collect()
    )
    assert len(meta) == 1
    assert meta[0][schemas.SOURCE_FILE].endswith("/landing/bid_requests/seed.avro")
    assert meta[0][schemas.RUN_SEQ] == 1
    assert meta[0][schemas.INGESTION_DATE] == meta[0]["d"]
    partitions = spark.sql(
        f"DESCRIBE DETAIL delta.`{cfg.table_path('bronze/impressions')}`"
    ).first()
    assert partitions["partitionColumns"] == [schemas.INGESTION_DATE]


def test_malformed_input_is_quarantined_with_reasons_and_reconciles(
    spark: SparkSession, cfg: AppConfig
) -> None:
    jsonl = (
        SEED_IMPRESSIONS
        + '{"creative_id": 3, "user_id"\n'
        + '{"creative_id": 4, "user_id": 9, "cost": "abc"}\n'
    )
    land(cfg, "impressions", "a.jsonl", jsonl)
    land(cfg, "impressions", "b.jsonl.gz", gzip.compress(SEED_IMPRESSIONS.encode()))
    land(cfg, "impressions", "broken.jsonl.gz", gzip.compress(SEED_IMPRESSIONS.encode() * 50)[:60])
    land(
        cfg,
        "clicks_conversions",
        "a.csv",
        SEED_CLICKS + "2023-11-01 10:09:00,103,3\n"
        "2023-11-01 10:09:00,103,3,click,x\n2023-11-01 10:09:00,n/a x,3,click\n",
    )
    land(cfg, "bid_requests", "good.avro", avro_bytes(SEED_BIDS))
    many = [dict(SEED_BIDS[0], request_id=f"r-{i}") for i in range(2000)]
    whole = avro_bytes(many)
    land(cfg, "bid_requests", "truncated.avro", whole[: int(len(whole) * 0.6)])
    land(cfg, "bid_requests", "not_avro.avro", b"this is not avro at all")

    run_batch(spark, cfg, SOURCES)

    q = table(spark, cfg, BRONZE_QUARANTINE.relative_path)
    got = sorted(
        (
            r["source"],
            r[schemas.SOURCE_FILE].rsplit("/", 1)[1],
            r["reason"],
            r["detail"] if r["reason"] != "corrupt_file" else None,
        )
        for r in q.collect()
    )
    assert got == sorted(
        [
            ("impressions", "a.jsonl", "malformed_json", None),
            ("impressions", "a.jsonl", "wrong_type", "cost"),
            ("impressions", "broken.jsonl.gz", "corrupt_file", None),
            (
                "clicks_conversions",
                "a.csv",
                "csv_column_count",
                "expected 4 fields (header), got 3",
            ),
            (
                "clicks_conversions",
                "a.csv",
                "csv_column_count",
                "expected 4 fields (header), got 5",
            ),
            ("clicks_conversions", "a.csv", "wrong_type", "user_id"),
            ("bid_requests", "truncated.avro", "corrupt_file", None),
            ("bid_requests", "not_avro.avro", "corrupt_file", None),
        ]
    )
    raw = {r["raw_record"] for r in q.where("reason = 'csv_column_count'").collect()}
    assert raw == {"2023-11-01 10:09:00,103,3", "2023-11-01 10:09:00,103,3,click,x"}

    # Per file: records in = bronze rows + quarantined rows, and the log agrees with the tables.
    log = table(spark, cfg, INGEST_FILE_LOG.relative_path).where(F.col("status") == COMMITTED)
    per_file = {
        r["file_path"].rsplit("/", 1)[1]: (r["bronze_rows"], r["quarantined_rows"])
        for r in log.collect()
    }
    assert per_file == {
        "a.jsonl": (2, 2),
        "b.jsonl.gz": (2, 0),
        "broken.jsonl.gz": (0, 1),
        "a.csv": (2, 3),
        "good.avro": (2, 0),
        "truncated.avro": (0, 1),
        "not_avro.avro": (0, 1),
    }
    bronze_total = sum(table(spark, cfg, f"bronze/{s}").count() for s in SOURCES)
    assert bronze_total == sum(v[0] for v in per_file.values()) == 8
    assert q.count() == sum(v[1] for v in per_file.values()) == 8


def test_a_truncated_avro_file_is_found_from_its_tail_before_spark_reads_it(
    spark: SparkSession, cfg: AppConfig, caplog: pytest.LogCaptureFixture
) -> None:
    """A complete Avro container ends with its header's sync marker; a cut-off upload does not.

    The check reads the file's two ends, so the run quarantines the file up front instead of
    failing a whole Spark read on it and reading every file again. A file with a header and no
    blocks is complete (0 records), and so is one cut exactly after a block.
    """
    many = [dict(SEED_BIDS[0], request_id=f"r-{i}") for i in range(2000)]
    whole = avro_bytes(many)  # sync_interval=1000 bytes: many blocks
    land(cfg, "bid_requests", "good.avro", avro_bytes(SEED_BIDS))
    land(cfg, "bid_requests", "cut.avro", whole[: int(len(whole) * 0.6)])
    land(cfg, "bid_requests", "header_only.avro", avro_bytes([]))
    first_blocks = list(fastavro.block_reader(io.BytesIO(whole)))[:2]
    land(cfg, "bid_requests", "two_blocks.avro", whole[: _end_of_second_block(whole)])

    caplog.set_level(logging.WARNING, logger="adlake")
    run_batch(spark, cfg, ["bid_requests"])

    warned = [r.getMessage() for r in caplog.records if "unreadable file" in r.getMessage()]
    assert len(warned) == 1 and "cut.avro (truncated Avro file:" in warned[0]
    q = table(spark, cfg, BRONZE_QUARANTINE.relative_path)
    got = sorted(
        (r[schemas.SOURCE_FILE].rsplit("/", 1)[1], r["reason"], r["detail"]) for r in q.collect()
    )
    assert got == [
        (
            "cut.avro",
            "corrupt_file",
            "truncated Avro file: it does not end with the sync marker of its header "
            "(an upload cut short)",
        )
    ]
    log = table(spark, cfg, INGEST_FILE_LOG.relative_path).where(F.col("status") == COMMITTED)
    per_file = {
        r["file_path"].rsplit("/", 1)[1]: (r["bronze_rows"], r["quarantined_rows"])
        for r in log.collect()
    }
    # Bronze keeps min/max stats only on the columns it is read by (run, file).
    detail = spark.sql(f"DESCRIBE DETAIL delta.`{cfg.table_path('bronze/bid_requests')}`")
    properties = detail.first()["properties"]  # type: ignore[index]
    assert properties.get("delta.dataSkippingStatsColumns") == "_run_seq,_source_file"
    two_blocks = sum(b.num_records for b in first_blocks)
    assert per_file == {
        "good.avro": (2, 0),
        "cut.avro": (0, 1),
        "header_only.avro": (0, 0),
        "two_blocks.avro": (two_blocks, 0),
    }


def _end_of_second_block(data: bytes) -> int:
    """Byte offset just after the second block's sync marker (the file's own marker)."""
    sync = data[-16:]  # a complete file ends with it
    after_header = data.index(sync) + len(sync)
    after_first = data.index(sync, after_header) + len(sync)
    return data.index(sync, after_first) + len(sync)


def test_rerun_adds_nothing_and_new_files_are_picked_up(
    spark: SparkSession, cfg: AppConfig
) -> None:
    land_seed(cfg)
    run_batch(spark, cfg, SOURCES)
    before = versions(spark, cfg)
    assert run_batch(spark, cfg, SOURCES) == []
    assert versions(spark, cfg) == before

    land(
        cfg,
        "impressions",
        "later.jsonl",
        '{"creative_id": 9, "user_id": 5, "timestamp": "2026-11-01T10:00:00Z", "website": "n.com"}\n',
    )
    results = run_batch(spark, cfg, ["impressions"])
    assert [(r.run_seq, r.files, r.bronze_rows) for r in results] == [(2, 1, 1)]
    imp = table(spark, cfg, "bronze/impressions")
    assert imp.count() == 3
    assert imp.where("creative_id = '9'").select(schemas.RUN_SEQ).first()[0] == 2


@pytest.mark.parametrize("crash_at", ["bronze", "quarantine", "commit_log"])
def test_crash_mid_run_is_repaired_exactly_once(
    spark: SparkSession, cfg: AppConfig, crash_at: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    land(cfg, "impressions", "a.jsonl", SEED_IMPRESSIONS + "{bad\n")
    from adlake import storage

    real_append = storage.append_idempotent
    target = {
        "bronze": "bronze.impressions",
        "quarantine": "bronze.quarantine",
        "commit_log": "ops.ingest_file_log",
    }[crash_at]

    def crashing_append(
        df: DataFrame, spec: Any, location: str, app_id: str, version: int, **kw: Any
    ) -> None:
        real_append(df, spec, location, app_id, version, **kw)
        # Crash right after the target commit (for the log: after the commit row, i.e. odd version).
        if spec.name == target and (spec.name != "ops.ingest_file_log" or version % 2 == 1):
            raise RuntimeError("simulated crash")

    monkeypatch.setattr(storage, "append_idempotent", crashing_append)
    with pytest.raises(RuntimeError, match="simulated crash"):
        BronzeIngestor(spark, cfg, "impressions").run_batch()
    monkeypatch.setattr(storage, "append_idempotent", real_append)

    land(cfg, "impressions", "b.jsonl", SEED_IMPRESSIONS)
    BronzeIngestor(spark, cfg, "impressions").run_batch()
    imp = table(spark, cfg, "bronze/impressions")
    assert sorted(
        (r[schemas.SOURCE_FILE].rsplit("/", 1)[1], r["user_id"]) for r in imp.collect()
    ) == [("a.jsonl", "101"), ("a.jsonl", "102"), ("b.jsonl", "101"), ("b.jsonl", "102")]
    assert table(spark, cfg, BRONZE_QUARANTINE.relative_path).count() == 1
    log = table(spark, cfg, INGEST_FILE_LOG.relative_path).where(F.col("status") == COMMITTED)
    assert sorted((r["run_seq"], r["file_path"].rsplit("/", 1)[1]) for r in log.collect()) == [
        (1, "a.jsonl"),
        (2, "b.jsonl"),
    ]


def test_available_now_stream_equals_batch(spark: SparkSession, tmp_path: Path) -> None:
    batch_cfg = config_for(tmp_path / "batch", **{"paths.landing": str(tmp_path / "landing")})
    stream_cfg = config_for(
        tmp_path / "stream",
        **{
            "paths.landing": str(tmp_path / "landing"),
            "sources.impressions.max_files_per_trigger": 1,
        },
    )
    land_seed(batch_cfg)
    land(batch_cfg, "impressions", "more.jsonl", SEED_IMPRESSIONS + "{bad\n")
    run_batch(spark, batch_cfg, SOURCES)
    for source in SOURCES:
        q = BronzeIngestor(spark, stream_cfg, source).start_stream("available-now")
        try:
            q.awaitTermination(300)
        finally:
            q.stop()
    drop = [schemas.INGESTED_AT, schemas.INGESTION_DATE, schemas.RUN_SEQ]
    for rel in [
        "bronze/impressions",
        "bronze/clicks_conversions",
        "bronze/bid_requests",
        "bronze/quarantine",
    ]:
        assert_df_equality(
            table(spark, batch_cfg, rel).drop(*drop),
            table(spark, stream_cfg, rel).drop(*drop),
            ignore_row_order=True,
        )
    # max_files_per_trigger=1: two impression files arrive in two micro-batches, two runs.
    runs = table(spark, stream_cfg, INGEST_FILE_LOG.relative_path).where(
        "source = 'impressions' AND status = 'committed'"
    )
    assert runs.select("run_seq").distinct().count() == 2
    assert {r["mode"] for r in runs.collect()} == {"stream"}
    # A batch run after the stream finds nothing new: the file log is shared by both modes.
    assert run_batch(spark, stream_cfg, SOURCES) == []


def test_byte_order_marks_are_stripped_and_an_empty_avro_file_is_corrupt(
    spark: SparkSession, cfg: AppConfig
) -> None:
    """Files as Excel and Notepad save them (UTF-8 with a BOM), and an Avro file that arrived
    empty (zero bytes: a failed upload) which must be reported, not skipped without a word."""
    bom = b"\xef\xbb\xbf"
    land(cfg, "clicks_conversions", "excel.csv", bom + SEED_CLICKS.encode("utf-8"))
    land(cfg, "impressions", "notepad.jsonl", bom + SEED_IMPRESSIONS.encode("utf-8"))
    land(cfg, "bid_requests", "good.avro", avro_bytes(SEED_BIDS))
    land(cfg, "bid_requests", "empty.avro", b"")

    run_batch(spark, cfg, SOURCES)

    clicks = table(spark, cfg, "bronze/clicks_conversions")
    assert sorted(
        (r["timestamp"], r["user_id"], r[schemas.RESCUED_DATA]) for r in clicks.collect()
    ) == [
        ("2023-11-01 10:02:00", "101", None),
        ("2023-11-01 10:06:00", "102", None),
    ]
    impressions = table(spark, cfg, "bronze/impressions")
    assert sorted(r["user_id"] for r in impressions.collect()) == ["101", "102"]
    q = table(spark, cfg, BRONZE_QUARANTINE.relative_path)
    assert [
        (r["source"], r[schemas.SOURCE_FILE].rsplit("/", 1)[1], r["reason"], r["raw_record"])
        for r in q.collect()
    ] == [("bid_requests", "empty.avro", "corrupt_file", None)]
    assert q.first()["detail"] == (
        "cannot read Avro header: empty file (0 bytes), an Avro file starts with a header"
    )
    log = table(spark, cfg, INGEST_FILE_LOG.relative_path).where(F.col("status") == COMMITTED)
    assert {
        r["file_path"].rsplit("/", 1)[1]: (r["bronze_rows"], r["quarantined_rows"])
        for r in log.collect()
    } == {"excel.csv": (2, 0), "notepad.jsonl": (2, 0), "good.avro": (2, 0), "empty.avro": (0, 1)}


def test_csv_files_are_read_by_header_with_sparks_reader(
    spark: SparkSession, cfg: AppConfig
) -> None:
    """Headers that differ in case, quoting, order and extra columns; blank lines and a BOM
    before the header; a header naming a column twice; a file of blank lines."""
    upper = '\r\n \r\n"Timestamp","USER_ID",Campaign_ID,conversion_type\r\n' + (
        "2023-11-01 10:02:00,101,1,signup\r\n"
    )
    land(cfg, "clicks_conversions", "upper.csv", b"\xef\xbb\xbf" + upper.encode("utf-8"))
    reordered = (
        "conversion_type,channel,user_id,timestamp,campaign_id,revenue\n"
        'purchase,"email, weekly",102,2023-11-01 10:06:00,2,9.5\n'
        "purchase,,103,2023-11-01 10:07:00,2,lots\n"
    )
    land(cfg, "clicks_conversions", "reordered.csv", reordered)
    land(cfg, "clicks_conversions", "twice.csv", "timestamp,user_id,User_ID\n1,2,3\n")
    land(cfg, "clicks_conversions", "blank.csv", "\n  \n")

    run_batch(spark, cfg, ["clicks_conversions"])

    clicks = table(spark, cfg, "bronze/clicks_conversions")
    assert sorted(
        (r["timestamp"], r["user_id"], r["campaign_id"], r["revenue"], r[schemas.RESCUED_DATA])
        for r in clicks.collect()
    ) == [
        ("2023-11-01 10:02:00", "101", "1", None, None),
        ("2023-11-01 10:06:00", "102", "2", "9.5", '{"channel":"email, weekly"}'),
    ]
    q = table(spark, cfg, BRONZE_QUARANTINE.relative_path)
    assert sorted(
        (r[schemas.SOURCE_FILE].rsplit("/", 1)[1], r["reason"], r["detail"], r["raw_record"])
        for r in q.collect()
    ) == [
        (
            "reordered.csv",
            "wrong_type",
            "revenue",
            "purchase,,103,2023-11-01 10:07:00,2,lots",
        ),
        (
            "twice.csv",
            "corrupt_file",
            "CSV header names a column more than once: user_id",
            None,
        ),
    ]
    log = table(spark, cfg, INGEST_FILE_LOG.relative_path).where(F.col("status") == COMMITTED)
    assert {
        r["file_path"].rsplit("/", 1)[1]: (r["bronze_rows"], r["quarantined_rows"])
        for r in log.collect()
    } == {"upper.csv": (1, 0), "reordered.csv": (1, 1), "twice.csv": (0, 1), "blank.csv": (0, 0)}


def test_a_large_csv_file_is_read_in_splits_with_its_header_dropped_once(
    spark: SparkSession, cfg: AppConfig
) -> None:
    """Spark's CSV reader splits a file across tasks (a whole-file read could not), and only
    the task at the file's start drops the header line."""
    rows = [f"2023-11-01 10:{i % 60:02d}:00,{i},{i % 7},click" for i in range(2000)]
    path = land(
        cfg, "clicks_conversions", "big.csv", SEED_CLICKS.splitlines()[0] + "\n" + "\n".join(rows)
    )
    key = "spark.sql.files.maxPartitionBytes"
    before = spark.conf.get(key)
    spark.conf.set(key, "8k")
    try:
        parsed = readers.read_parsed(
            spark, "clicks_conversions", schemas.BRONZE_CLICKS_CONVERSIONS_SCHEMA, [path], {}
        )
        assert parsed.rdd.getNumPartitions() >= 5
        got = parsed.select("user_id", parse.REJECT_REASON).collect()
    finally:
        spark.conf.set(key, before)
    assert sorted(int(r["user_id"]) for r in got) == list(range(2000))
    assert {r[parse.REJECT_REASON] for r in got} == {None}


def _committed(spark: SparkSession, cfg: AppConfig) -> list[tuple[int, str, int]]:
    log = table(spark, cfg, INGEST_FILE_LOG.relative_path).where(F.col("status") == COMMITTED)
    return sorted(
        (r["run_seq"], r["file_path"].rsplit("/", 1)[1], r["bronze_rows"]) for r in log.collect()
    )


def test_two_writers_planning_the_same_run_never_log_foreign_files_as_committed(
    spark: SparkSession, cfg: AppConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writer A plans run 1 over x and y; before its bronze append, writer B, which read the
    file log before A planned, runs over x alone with the same run number. B must stop before
    writing, and every file logged as committed must have its rows in bronze."""
    from adlake import storage
    from adlake.bronze.filelog import ConcurrentRunError

    x = storage.LandingFile(land(cfg, "impressions", "x.jsonl", SEED_IMPRESSIONS), 1, 1)
    y = storage.LandingFile(land(cfg, "impressions", "y.jsonl", SEED_IMPRESSIONS), 1, 1)
    writer_a, writer_b = (BronzeIngestor(spark, cfg, "impressions") for _ in range(2))
    writer_a.ensure_tables()
    real_append = storage.append_idempotent
    raced: list[str] = []

    def racing_append(df: DataFrame, spec: Any, location: str, *args: Any, **kw: Any) -> None:
        if spec.name == "bronze.impressions" and not raced:
            raced.append("B")
            with pytest.raises(ConcurrentRunError, match="impressions run 1: another run"):
                writer_b._ingest_new([], [x], "batch")
        real_append(df, spec, location, *args, **kw)

    monkeypatch.setattr(storage, "append_idempotent", racing_append)
    [result] = writer_a._ingest_new([], [x, y], "batch")
    assert raced == ["B"]
    assert (result.run_seq, result.files, result.bronze_rows) == (1, 2, 4)
    assert _committed(spark, cfg) == [(1, "x.jsonl", 2), (1, "y.jsonl", 2)]
    bronze_files = table(spark, cfg, "bronze/impressions").groupBy(schemas.SOURCE_FILE).count()
    assert sorted((r[0].rsplit("/", 1)[1], r[1]) for r in bronze_files.collect()) == [
        ("x.jsonl", 2),
        ("y.jsonl", 2),
    ]


def _changed_total(source: str) -> float:
    from adlake import metrics

    value = metrics.REGISTRY.get_sample_value(
        "adlake_bronze_changed_files_total", {"source": source}
    )
    return value or 0.0


def _reland(cfg: AppConfig, name: str, content: str, mtime: int) -> None:
    import os

    land(cfg, "impressions", name, content)
    os.utime(Path(cfg.landing_path("impressions")) / name, (mtime, mtime))


@pytest.mark.parametrize("reingest", [False, True])
def test_relanded_file_is_reported_once_and_reingested_only_when_configured(
    spark: SparkSession, tmp_path: Path, caplog: pytest.LogCaptureFixture, reingest: bool
) -> None:
    cfg = config_for(tmp_path, **{"sources.impressions.reingest_changed": reingest})
    _reland(cfg, "a.jsonl", SEED_IMPRESSIONS, 1_700_000_000)
    run_batch(spark, cfg, ["impressions"])
    before = _changed_total("impressions")

    third = '{"creative_id": 3, "user_id": 103, "timestamp": "2023-11-01 10:09:00", "website": "e.net"}\n'
    _reland(cfg, "a.jsonl", SEED_IMPRESSIONS + third, 1_700_000_600)
    with caplog.at_level(logging.WARNING, logger="adlake.bronze.ingest"):
        results = run_batch(spark, cfg, ["impressions"])
    size = len((SEED_IMPRESSIONS + third).encode())
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].startswith(
        f"impressions: file:{cfg.landing_path('impressions')}/a.jsonl was re-landed with "
        f"different content (size {len(SEED_IMPRESSIONS)} -> {size} bytes, "
        "modified 1700000000000 -> 1700000600000 ms); "
    )
    assert _changed_total("impressions") == before + 1
    file_log = table(spark, cfg, INGEST_FILE_LOG.relative_path)
    assert sorted(
        (r["run_seq"], r["status"], r["file_size"], r["file_modified_ms"])
        for r in file_log.collect()
    ) == sorted(
        [
            (1, "planned", len(SEED_IMPRESSIONS), 1_700_000_000_000),
            (1, "committed", len(SEED_IMPRESSIONS), 1_700_000_000_000),
            (2, "changed", size, 1_700_000_600_000),
        ]
        + (
            [(2, "planned", size, 1_700_000_600_000), (2, "committed", size, 1_700_000_600_000)]
            if reingest
            else []
        )
    )
    bronze_rows = table(spark, cfg, "bronze/impressions")
    if reingest:
        assert [(r.run_seq, r.files, r.bronze_rows, r.changed_files) for r in results] == [
            (2, 1, 3, 1)
        ]
        # The new version is a new run; the old rows stay (silver deduplicates on keys).
        assert sorted((r[schemas.RUN_SEQ], r["user_id"]) for r in bronze_rows.collect()) == [
            (1, "101"),
            (1, "102"),
            (2, "101"),
            (2, "102"),
            (2, "103"),
        ]
    else:
        assert results == []
        assert "not re-ingested (sources.impressions.reingest_changed is false)" in warnings[0]
        assert bronze_rows.count() == 2

    # Reported once: the next run compares against the changed row and finds nothing.
    assert run_batch(spark, cfg, ["impressions"]) == []
    assert _changed_total("impressions") == before + 1
    assert table(spark, cfg, INGEST_FILE_LOG.relative_path).count() == file_log.count()


def test_file_log_written_before_the_stats_columns_keeps_working(
    spark: SparkSession, cfg: AppConfig
) -> None:
    """An existing log without file_size / file_modified_ms: read, compared where possible,
    and given the columns by the next write."""
    from datetime import datetime, timezone

    from pyspark.sql.types import StructType

    old_schema = StructType(INGEST_FILE_LOG.schema.fields[:8])
    path = land(cfg, "impressions", "old.jsonl", SEED_IMPRESSIONS + "{bad\n")
    logged_at = datetime(2026, 1, 1, tzinfo=timezone.utc)
    spark.createDataFrame(
        [
            ("impressions", 1, path, status, "batch", 2, 1, logged_at)
            for status in ("planned", COMMITTED)
        ],
        old_schema,
    ).write.format("delta").save(INGEST_FILE_LOG.location(cfg))

    land(cfg, "impressions", "new.jsonl", SEED_IMPRESSIONS)
    results = run_batch(spark, cfg, ["impressions"])
    # old.jsonl has no stats to compare with: neither re-ingested nor reported.
    assert [(r.run_seq, r.files, r.bronze_rows, r.changed_files) for r in results] == [(2, 1, 2, 0)]
    rows = table(spark, cfg, INGEST_FILE_LOG.relative_path).where(F.col("run_seq") == 2).collect()
    assert {(r["file_path"].rsplit("/", 1)[1], r["file_size"]) for r in rows} == {
        ("new.jsonl", len(SEED_IMPRESSIONS))
    }
    assert run_batch(spark, cfg, ["impressions"]) == []


def test_a_running_ingestor_reads_the_file_log_once_unless_another_writer_logged(
    spark: SparkSession, cfg: AppConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream's micro-batches reuse the ingestor's copy of the file log (with the rows it
    appended), so their cost does not grow with the log; a run of another writer of the
    same source, or a failed run, makes the next one read the log again."""
    from adlake import storage

    log_reads: list[str] = []
    real_read = storage.read_table

    def counting_read(spark_: SparkSession, location: str) -> DataFrame:
        if location == INGEST_FILE_LOG.location(cfg):
            log_reads.append(location)
        return real_read(spark_, location)

    monkeypatch.setattr(storage, "read_table", counting_read)

    def listed(*names: str) -> list[storage.LandingFile]:
        return [
            storage.LandingFile(land(cfg, "impressions", n, SEED_IMPRESSIONS), 10, 1) for n in names
        ]

    stream = BronzeIngestor(spark, cfg, "impressions")
    stream.ensure_tables()
    other = BronzeIngestor(spark, cfg, "clicks_conversions")
    other.ensure_tables()
    land(cfg, "clicks_conversions", "c.csv", SEED_CLICKS)

    def runs(results: list[Any]) -> list[tuple[int, int, int]]:
        return [(r.run_seq, r.files, r.bronze_rows) for r in results]

    assert runs(stream.ingest_files(listed("a.jsonl"), "stream")) == [(1, 1, 2)]
    assert len(log_reads) == 1
    other.ingest_landing()  # another source's commits in the shared log change nothing
    assert len(log_reads) == 2  # (the other ingestor's own first read)
    # a.jsonl listed again is known from the copy: only b.jsonl is new.
    assert runs(stream.ingest_files(listed("a.jsonl", "b.jsonl"), "stream")) == [(2, 1, 2)]
    assert runs(stream.ingest_files(listed("a.jsonl", "b.jsonl"), "stream")) == []
    assert len(log_reads) == 2

    # Another writer of the same source logs run 3: the copy is stale, the log is read again.
    assert runs(
        BronzeIngestor(spark, cfg, "impressions").ingest_files(listed("c.jsonl"), "batch")
    ) == [(3, 1, 2)]
    assert len(log_reads) == 3
    assert runs(
        stream.ingest_files(listed("a.jsonl", "b.jsonl", "c.jsonl", "d.jsonl"), "stream")
    ) == [(4, 1, 2)]
    assert len(log_reads) == 4

    # A failed run drops the copy: the next micro-batch reads the log.
    real_append = storage.append_idempotent

    def failing_append(df: DataFrame, spec: Any, *args: Any, **kw: Any) -> None:
        if spec.name == "bronze.impressions":
            raise RuntimeError("simulated failure")
        real_append(df, spec, *args, **kw)

    monkeypatch.setattr(storage, "append_idempotent", failing_append)
    with pytest.raises(RuntimeError, match="simulated failure"):
        stream.ingest_files(listed("e.jsonl"), "stream")
    monkeypatch.setattr(storage, "append_idempotent", real_append)
    assert runs(stream.ingest_files(listed("e.jsonl"), "stream")) == [(5, 1, 2)]  # redone
    assert len(log_reads) == 5
    assert [c for c in _committed(spark, cfg) if c[1].endswith(".jsonl")] == [
        (1, "a.jsonl", 2),
        (2, "b.jsonl", 2),
        (3, "c.jsonl", 2),
        (4, "d.jsonl", 2),
        (5, "e.jsonl", 2),
    ]
