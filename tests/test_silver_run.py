"""SilverProcessor on hand-built bronze batches: quarantine, rule lists, late rows, fail rules."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from pyspark.sql import DataFrame, SparkSession

from adlake import schemas
from adlake.config import AppConfig
from adlake.silver.rules import RuleError
from adlake.silver.run import SilverProcessor, ValidationFailedError
from tests.conftest import base_config_dict, config_for

INGESTED = datetime(2026, 11, 20, 8, 0, 0)


def _bronze_impressions(
    spark: SparkSession, rows: list[dict[str, str | None]], run_seq: int = 1
) -> DataFrame:
    names = [f.name for f in schemas.IMPRESSION_FIELDS]
    data = [
        (*[r.get(n) for n in names], None, "file:/l/a.jsonl", INGESTED, run_seq, INGESTED.date())
        for r in rows
    ]
    return spark.createDataFrame(data, schemas.BRONZE_IMPRESSIONS_SCHEMA)


def _imp(i: str, ts: str, **kv: str | None) -> dict[str, str | None]:
    row: dict[str, str | None] = {
        "impression_id": i,
        "creative_id": "1",
        "user_id": "u1",
        "timestamp": ts,
        "website": "https://www.Example.com/x",
        "cost": "0.5",
    }
    row.update(kv)
    return row


def _landing_creatives(cfg: AppConfig) -> None:
    ref = Path(cfg.landing_path("reference"))
    ref.mkdir(parents=True, exist_ok=True)
    (ref / "creatives.csv").write_text(
        "creative_id,campaign_id,advertiser_id,creative_name,ad_format\n1,10,100,c1,banner\n",
        encoding="utf-8",
    )


def test_quarantine_lists_every_failed_rule_and_late_rows_are_counted(
    spark: SparkSession, cfg: AppConfig
) -> None:
    _landing_creatives(cfg)
    processor = SilverProcessor(spark, cfg, "batch")
    first = _bronze_impressions(
        spark,
        [
            _imp("a", "2026-11-10 12:00:00"),
            _imp("a", "2026-11-10 12:00:00"),  # exact re-send: a duplicate
            _imp("b", "not a time", cost="-1"),  # two rules at once
            _imp(
                "c", "2026-11-10T13:00:00Z", user_id=None, creative_id="999"
            ),  # quarantined + warn
            _imp("d", "2026-11-10 14:00:00", creative_id="999"),  # unknown creative: kept, warned
        ],
    )
    [audit] = processor.process("impressions", first, batch_id=1)
    assert (audit.rows_in, audit.rows_written, audit.quarantined, audit.duplicates) == (5, 2, 2, 1)
    assert audit.warned_rows == 2
    assert audit.rule_counts == {
        "timestamp_parsable": 1,
        "non_negative_cost": 1,
        "user_id_present": 1,
        "creative_known": 2,
    }
    q = spark.read.format("delta").load(cfg.table_path("silver/quarantine"))
    rules = sorted(tuple(r["failed_rules"]) for r in q.collect())
    assert rules == [("timestamp_parsable", "non_negative_cost"), ("user_id_present",)]
    record = q.where("array_contains(failed_rules, 'user_id_present')").first()["record"]
    assert '"impression_id":"c"' in record and '"creative_id":"999"' in record
    kept = {
        r["impression_id"]: (r["website"], r["campaign_id"], r["advertiser_id"])
        for r in spark.read.format("delta").load(cfg.table_path("silver/impressions")).collect()
    }
    assert kept == {"a": ("example.com", "10", "100"), "d": ("example.com", None, None)}

    # Second batch: the newest event so far is 2026-11-10 14:00; late_after is 1 day.
    second = _bronze_impressions(
        spark,
        [
            _imp("e", "2026-11-09 13:59:59"),  # older than 2026-11-09 14:00: late, still written
            _imp("f", "2026-11-09 14:00:00"),  # exactly at the threshold: not late
        ],
        run_seq=2,
    )
    [audit2] = processor.process("impressions", second, batch_id=2)
    assert (audit2.rows_in, audit2.rows_written, audit2.late_rows) == (2, 2, 1)


def test_a_fail_rule_stops_the_batch_before_anything_is_written(
    spark: SparkSession, tmp_path: Path
) -> None:
    data = base_config_dict()
    cfg0 = config_for(tmp_path)
    rules = [r for r in data["silver"]["rules"]]
    rules.append(
        {
            "name": "cost_below_ten",
            "expr": "cost < 10",
            "action": "fail",
            "sources": ["impressions"],
        }
    )
    cfg = config_for(tmp_path, **{"silver.rules": rules})
    assert cfg0.paths == cfg.paths
    _landing_creatives(cfg)
    processor = SilverProcessor(spark, cfg, "batch")
    batch = _bronze_impressions(
        spark, [_imp("a", "2026-11-10 12:00:00"), _imp("b", "2026-11-10 12:00:00", cost="12")]
    )
    with pytest.raises(ValidationFailedError, match="cost_below_ten"):
        processor.process("impressions", batch, batch_id=1)
    assert spark.read.format("delta").load(cfg.table_path("silver/impressions")).count() == 0
    assert spark.read.format("delta").load(cfg.table_path("ops/batch_audit")).count() == 0


def test_unknown_silver_column_in_a_rule_fails_fast(spark: SparkSession, tmp_path: Path) -> None:
    rules = [
        {
            "name": "bad_rule",
            "expr": "no_such_column > 1",
            "action": "warn",
            "sources": ["impressions"],
        }
    ]
    cfg = config_for(tmp_path, **{"silver.rules": rules})
    _landing_creatives(cfg)
    processor = SilverProcessor(spark, cfg, "batch")
    with pytest.raises(RuleError, match="bad_rule"):
        processor.process(
            "impressions", _bronze_impressions(spark, [_imp("a", "2026-11-10 12:00:00")]), 1
        )
