"""Generated landing files -> bronze -> silver, checked against the generator's manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from adlake import deltalog
from adlake.bronze import ingest as bronze_ingest
from adlake.config import SOURCES, AppConfig
from adlake.silver import run as silver_run
from adlake.silver.batch import AuditRow
from adlake_datagen import DatagenConfig, generate_landing
from tests.conftest import config_for

SILVER = ("impressions", "clicks", "conversions", "bid_requests")


def _landing(cfg: AppConfig, impressions: int = 400) -> dict[str, Any]:
    return generate_landing(
        DatagenConfig(
            impressions=impressions, seed=11, files=2, duplicate_rate=0.03, malformed_rate=0.02
        ),
        Path(cfg.paths.landing),
    )


def _table(spark: SparkSession, cfg: AppConfig, rel: str) -> DataFrame:
    return spark.read.format("delta").load(cfg.table_path(rel))


def _expected(manifest: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """(distinct rows silver must hold, duplicates it must skip) per silver table."""
    files = manifest["files"]

    def total(source: str, key: str, *, skip_truncated: bool = False) -> int:
        return sum(
            (e["defects"]["duplicate"] if key == "duplicate" else e[key])
            for e in files.values()
            if e["source"] == source and not (skip_truncated and e.get("truncated"))
        )

    csv = [e for e in files.values() if e["source"] == "clicks_conversions"]
    seed_csv = sum(e["seed_records"] for e in csv)  # the seed rows are conversions
    return {
        "impressions": (
            total("impressions", "seed_records") + total("impressions", "clean_records"),
            total("impressions", "duplicate"),
        ),
        "clicks": (sum(e["clicks"] for e in csv), None),  # type: ignore[dict-item]
        "conversions": (sum(e["conversions"] for e in csv) + seed_csv, None),  # type: ignore[dict-item]
        "bid_requests": (
            total("bid_requests", "seed_records", skip_truncated=True)
            + total("bid_requests", "clean_records", skip_truncated=True),
            total("bid_requests", "duplicate", skip_truncated=True),
        ),
    }


@pytest.fixture(scope="module")
def pipeline(
    spark: SparkSession, tmp_path_factory: pytest.TempPathFactory
) -> tuple[AppConfig, dict[str, Any], list[AuditRow]]:
    cfg = config_for(tmp_path_factory.mktemp("silver_e2e"))
    manifest = _landing(cfg)
    bronze_ingest.run_batch(spark, cfg, SOURCES)
    audit = silver_run.run_batch(spark, cfg, SOURCES)
    return cfg, manifest, audit


def test_end_to_end_counts_match_the_manifest(spark: SparkSession, pipeline: Any) -> None:
    cfg, manifest, audit = pipeline
    expected = _expected(manifest)
    by_source = {a.source: a for a in audit}
    assert set(by_source) == set(SILVER)
    for name in SILVER:
        rows = _table(spark, cfg, f"silver/{name}").count()
        assert rows == expected[name][0], name
        assert by_source[name].rows_written == rows
    assert by_source["impressions"].duplicates == expected["impressions"][1]
    assert by_source["bid_requests"].duplicates == expected["bid_requests"][1]
    csv_dups = sum(
        e["defects"]["duplicate"]
        for e in manifest["files"].values()
        if e["source"] == "clicks_conversions"
    )
    assert by_source["clicks"].duplicates + by_source["conversions"].duplicates == csv_dups
    # The generated data is clean after bronze: nothing is quarantined in silver.
    assert _table(spark, cfg, "silver/quarantine").count() == 0
    # Keys are unique and never null.
    for name, key in [
        ("impressions", "impression_id"),
        ("clicks", "event_id"),
        ("conversions", "event_id"),
        ("bid_requests", "request_id"),
    ]:
        df = _table(spark, cfg, f"silver/{name}")
        assert df.where(F.col(key).isNull()).count() == 0
        assert df.select(key).distinct().count() == df.count()


def test_audit_reconciles_every_row(spark: SparkSession, pipeline: Any) -> None:
    cfg, _manifest, _audit = pipeline
    audit = _table(spark, cfg, "ops/batch_audit")
    assert audit.where("rows_in != rows_written + quarantined + duplicates").count() == 0
    bronze_rows = {s: _table(spark, cfg, f"bronze/{s}").count() for s in SOURCES}
    per_source = {
        r["source"]: r["n"]
        for r in audit.groupBy("source").agg(F.sum("rows_in").alias("n")).collect()
    }
    assert per_source["impressions"] == bronze_rows["impressions"]
    assert per_source["clicks"] + per_source["conversions"] == bronze_rows["clicks_conversions"]
    assert per_source["bid_requests"] == bronze_rows["bid_requests"]


def test_case_study_records_are_standardized(spark: SparkSession, pipeline: Any) -> None:
    cfg, _m, _a = pipeline
    imp = (
        _table(spark, cfg, "silver/impressions")
        .where("user_id IN ('101', '102')")
        .where("event_date = '2023-11-01'")
    )
    got = sorted(
        (
            r["user_id"],
            r["creative_id"],
            r["campaign_id"],
            r["website"],
            str(r["event_ts"]),
            r["impression_id"][:2],
        )
        for r in imp.collect()
    )
    assert got == [
        ("101", "1", "1", "example.com", "2023-11-01 10:00:00", "h:"),
        ("102", "2", "2", "example.org", "2023-11-01 10:05:00", "h:"),
    ]
    conv = _table(spark, cfg, "silver/conversions").where("event_date = '2023-11-01'")
    assert sorted(
        (r["user_id"], r["campaign_id"], r["conversion_type"], str(r["event_ts"]))
        for r in conv.collect()
    ) == [
        ("101", "1", "signup", "2023-11-01 10:02:00"),
        ("102", "2", "purchase", "2023-11-01 10:06:00"),
    ]
    bids = _table(spark, cfg, "silver/bid_requests").where("auction_id IN ('1', '2')")
    assert sorted(
        (r["user_id"], r["country"], str(r["bid_amount"]), r["creative_id"], r["website"])
        for r in bids.collect()
    ) == [
        ("201", "US", "0.100000", "3", "example.net"),
        ("202", "CA", "0.150000", "4", "example.org"),
    ]


def test_rerun_changes_nothing(spark: SparkSession, pipeline: Any) -> None:
    cfg, _m, _a = pipeline
    before = {n: _table(spark, cfg, f"silver/{n}").count() for n in SILVER}
    # Nothing new in bronze: every target reports zero rows in.
    assert all(a.rows_in == 0 for a in silver_run.run_batch(spark, cfg, SOURCES))
    # Re-processing all of bronze (as a replay after a crash would) writes nothing either.
    processor = silver_run.SilverProcessor(spark, cfg, "batch")
    replay = processor.process("impressions", _table(spark, cfg, "bronze/impressions"), batch_id=99)
    assert [(a.rows_written, a.quarantined, a.duplicates == a.rows_in) for a in replay] == [
        (0, 0, True)
    ]
    assert {n: _table(spark, cfg, f"silver/{n}").count() for n in SILVER} == before


def test_available_now_stream_equals_batch(
    spark: SparkSession, pipeline: Any, tmp_path: Path
) -> None:
    cfg, _m, _a = pipeline
    # Same bronze tables, a second silver written by the streaming path.
    stream_cfg = config_for(tmp_path, **{"paths.lakehouse": cfg.paths.lakehouse + "_stream"})
    import shutil

    for s in SOURCES:
        shutil.copytree(cfg.table_path(f"bronze/{s}"), stream_cfg.table_path(f"bronze/{s}"))
    shutil.copytree(
        Path(cfg.paths.landing) / "reference", Path(stream_cfg.paths.landing) / "reference"
    )
    processor = silver_run.SilverProcessor(spark, stream_cfg, "stream")
    for s in SOURCES:
        q = silver_run.start_stream(processor, s, "available-now")
        try:
            q.awaitTermination(600)
        finally:
            q.stop()
    for name in SILVER:
        assert_df_equality(
            _table(spark, cfg, f"silver/{name}"),
            _table(spark, stream_cfg, f"silver/{name}"),
            ignore_row_order=True,
        )


# ------------------------------------------------------------------------------------ gold
def test_gold_credits_sum_to_one_rerun_is_idempotent_and_late_clicks_restate(
    spark: SparkSession, pipeline: Any, tmp_path: Path
) -> None:
    import shutil
    from datetime import timedelta

    from adlake.gold.run import build_gold
    from adlake.settings.gold import ALL_MODELS
    from adlake.tables import GOLD_CONVERSION_ATTRIBUTION, GOLD_TABLES

    cfg, _m, _a = pipeline
    gold_cfg = config_for(tmp_path, **{"paths.lakehouse": str(tmp_path / "lake")})
    for name in (*SILVER, "creatives"):
        shutil.copytree(cfg.table_path(f"silver/{name}"), gold_cfg.table_path(f"silver/{name}"))

    gold = [spec.relative_path for spec in GOLD_TABLES]
    written = build_gold(spark, gold_cfg)
    assert set(written) == set(gold)
    attribution = _table(spark, gold_cfg, GOLD_CONVERSION_ATTRIBUTION.relative_path)
    conversions = _table(spark, gold_cfg, "silver/conversions").count()
    sums = attribution.groupBy("conversion_id", "model").agg(
        F.sum("credit").alias("s"), F.min("credit").alias("lo")
    )
    assert sums.count() == conversions * len(ALL_MODELS)
    assert sums.where("abs(s - 1.0) > 1e-9 OR lo < 0").count() == 0

    from adlake.deltalog import table_version

    before = {t: _table(spark, gold_cfg, t).collect() for t in gold}
    versions = {t: table_version(spark, gold_cfg.table_path(t)) for t in gold}
    assert build_gold(spark, gold_cfg) == written
    # Same silver versions and parameters: nothing is rewritten, not even a new version.
    assert {t: table_version(spark, gold_cfg.table_path(t)) for t in gold} == versions
    for t in gold:
        assert sorted(map(repr, _table(spark, gold_cfg, t).collect())) == sorted(
            map(repr, before[t])
        )

    # A late click just before a conversion credited to a view (or to nothing) becomes its
    # last touch on the next run: the conversion is restated, not duplicated.
    lonely = (
        attribution.where("model = 'last_touch' AND touch_type != 'click'")
        .orderBy("conversion_id")
        .first()
    )
    assert lonely is not None
    clicks = _table(spark, gold_cfg, "silver/clicks")
    late = spark.createDataFrame(
        [
            (
                "late-click-1",
                lonely["conversion_ts"] - timedelta(minutes=1),
                lonely["user_id"],
                lonely["campaign_id"],
                None,
                "click",
                "file:/late.csv",
                None,
                None,
            )
        ],
        "event_id string, event_ts timestamp, user_id string, campaign_id string, creative_id string,"
        " conversion_type string, _source_file string, _bronze_ingested_at timestamp, _rescued_data string",
    ).select(
        "event_id",
        "event_ts",
        F.to_date("event_ts").alias("event_date"),
        F.hour("event_ts").alias("event_hour"),
        "user_id",
        "campaign_id",
        "creative_id",
        "conversion_type",
        "_source_file",
        "_bronze_ingested_at",
        "_rescued_data",
    )
    late.select(*clicks.columns).write.format("delta").mode("append").save(
        gold_cfg.table_path("silver/clicks")
    )
    build_gold(spark, gold_cfg, "attribution")
    restated = _table(spark, gold_cfg, GOLD_CONVERSION_ATTRIBUTION.relative_path).where(
        F.col("conversion_id") == lonely["conversion_id"]
    )
    last = restated.where("model = 'last_touch'").collect()
    assert [(r["touch_id"], r["touch_type"], r["credit"]) for r in last] == [
        ("late-click-1", "click", 1.0)
    ]
    assert (
        restated.groupBy("model").agg(F.sum("credit").alias("s")).where("abs(s - 1) > 1e-9").count()
        == 0
    )
    assert _table(spark, gold_cfg, GOLD_CONVERSION_ATTRIBUTION.relative_path).count() >= len(
        before[GOLD_CONVERSION_ATTRIBUTION.relative_path]
    )


def test_gold_restates_every_table_when_the_logic_version_changes(
    spark: SparkSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unchanged silver and parameters keep gold only while the transform logic is the same."""
    import json
    from datetime import date, datetime, timezone
    from decimal import Decimal

    from adlake import storage
    from adlake.gold import run
    from adlake.tables import (
        GOLD_CAMPAIGN_DAILY,
        GOLD_TABLES,
        SILVER_BID_REQUESTS,
        SILVER_CLICKS,
        SILVER_CONVERSIONS,
        SILVER_CREATIVES,
        SILVER_IMPRESSIONS,
    )

    cfg = config_for(tmp_path)
    for spec in (SILVER_IMPRESSIONS, SILVER_CLICKS, SILVER_CREATIVES):
        storage.ensure_table(spark, spec, spec.location(cfg))
    when = {
        "event_ts": datetime(2024, 1, 10, 12, tzinfo=timezone.utc),
        "event_date": date(2024, 1, 10),
        "event_hour": 12,
        "user_id": "u1",
        "campaign_id": "k1",
    }
    one_row = {
        SILVER_CONVERSIONS: {
            **when, "event_id": "v1", "conversion_type": "purchase", "revenue": Decimal("9.5")
        },
        SILVER_BID_REQUESTS: {
            **when, "request_id": "r1", "auction_id": "a1", "bid_amount": Decimal("2")
        },
    }  # fmt: skip
    for spec, values in one_row.items():
        row = tuple(values.get(f.name) for f in spec.schema.fields)
        spark.createDataFrame([row], spec.schema).write.format("delta").partitionBy(
            *spec.partition_by
        ).save(spec.location(cfg))

    def gold_versions() -> dict[str, int | None]:
        return {
            s.relative_path: deltalog.table_version(spark, s.location(cfg)) for s in GOLD_TABLES
        }

    run.build_gold(spark, cfg)
    first = gold_versions()
    assert None not in first.values()
    run.build_gold(spark, cfg)
    assert gold_versions() == first  # same silver, parameters and logic: nothing rewritten

    monkeypatch.setattr(run, "GOLD_LOGIC_VERSION", "test-changed-logic")
    run.build_gold(spark, cfg)
    assert gold_versions() == {t: v + 1 for t, v in first.items() if v is not None}
    stamp, _rows = deltalog.derived_commit(spark, GOLD_CAMPAIGN_DAILY.location(cfg))
    assert stamp is not None
    assert json.loads(stamp)["logic"] == "test-changed-logic"


def test_top_campaigns_print_money_with_two_decimals() -> None:
    """People read currency in cents; the tables keep DECIMAL(18, 6)."""
    from decimal import Decimal

    from adlake.gold.aggregates import format_top_campaigns

    rows: list[dict[str, object]] = [
        {
            "campaign_id": "k1",
            "spend": Decimal("9.005486"),
            "revenue": Decimal("21.615"),
            "conversions": 3,
            "last_touch": 3.0,
            "linear": 2.5,
            "roas": 2.400196,
        },
        {
            "campaign_id": "k22",
            "spend": Decimal("1234567.125"),
            "revenue": None,
            "conversions": 0,
            "last_touch": None,
            "linear": None,
            "roas": None,
        },
    ]
    assert format_top_campaigns(rows).splitlines() == [
        "  campaign     k1  roas    2.40  spend         9.01  revenue        21.62"
        "  last_touch     3.00  linear     2.50",
        "  campaign    k22  roas       -  spend 1,234,567.13  revenue            -"
        "  last_touch     0.00  linear     0.00",
    ]
    assert format_top_campaigns([]) == "  (no campaigns yet)"
