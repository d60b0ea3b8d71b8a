"""SilverProcessor on hand-built bronze batches: quarantine, rule lists, late rows, fail rules,
and the audit of a micro-batch replayed after a crash."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
from pyspark.sql import DataFrame, SparkSession

from adlake import faults, metrics, schemas
from adlake.config import AppConfig
from adlake.quality import checks, grading, reconciliation
from adlake.quality import run as quality_run
from adlake.silver.batch import AuditRow
from adlake.silver.rules import RuleError
from adlake.silver.run import JOB, SilverProcessor, ValidationFailedError
from adlake.tables import BATCH_AUDIT, BRONZE_IMPRESSIONS, SILVER_IMPRESSIONS, SILVER_QUARANTINE
from tests.conftest import base_config_dict, config_for

INGESTED = datetime(2026, 11, 20, 8, 0, 0)


def _bronze_impressions(
    spark: SparkSession,
    rows: list[dict[str, str | None]],
    run_seq: int = 1,
    source_file: str = "file:/l/a.jsonl",
) -> DataFrame:
    names = [f.name for f in schemas.IMPRESSION_FIELDS]
    data = [
        (*[r.get(n) for n in names], None, source_file, INGESTED, run_seq, INGESTED.date())
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
    # Silver keeps min/max stats only on the columns it is filtered by (time, campaign).
    log = Path(cfg.table_path("silver/impressions")) / "_delta_log"
    adds = [
        json.loads(json.loads(line)["add"]["stats"])
        for commit in sorted(log.glob("*.json"))
        for line in commit.read_text(encoding="utf-8").splitlines()
        if '"add"' in line
    ]
    assert adds and all(
        set(stats["minValues"]) == {"event_ts", "event_hour", "campaign_id", "creative_id"}
        and stats["numRecords"] >= 1
        for stats in adds
    )

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


# -- a micro-batch replayed after a crash -----------------------------------------------------
class _Crash(BaseException):
    """Stands in for the crash point's SIGKILL: nothing after it runs in this attempt."""


def _crash_instead_of_kill(*_: object) -> None:
    raise _Crash


def _replay_batches(spark: SparkSession) -> dict[int, DataFrame]:
    """Bronze runs 1..3 of impressions, one landing file each, as micro-batches 0..2."""
    rows = {
        1: [_imp("a", "2026-11-10 12:00:00")],
        2: [
            _imp("a", "2026-11-10 12:00:00"),  # stored by batch 0: an existing duplicate
            _imp("b", "2026-11-10 13:00:00"),
            _imp("b", "2026-11-10 13:00:00"),  # in-batch duplicate
            _imp("c", "2026-11-10 14:00:00"),
            _imp("x", "not a time"),
            _imp("x", "not a time"),  # the same rejected record: one quarantine row
            _imp("y", "2026-11-10 14:00:00", user_id=None),
        ],
        3: [_imp("d", "2026-11-10 15:00:00")],
    }
    return {
        run - 1: _bronze_impressions(spark, r, run_seq=run, source_file=f"file:/l/run{run}.jsonl")
        for run, r in rows.items()
    }


# Batch 1 as its first attempt stores it: b and c inserted, a stored already (batch 0), one b
# and one x duplicated within the batch, x and y quarantined.
BATCH_1 = AuditRow(
    source="impressions",
    batch_id=1,
    rows_in=7,
    rows_written=2,
    quarantined=2,
    late_rows=0,
    warned_rows=0,
    unknown_countries=0,
    rule_counts={"timestamp_parsable": 2, "user_id_present": 1},
    duplicates_in_batch=2,
    duplicates_existing=1,
)


def _metric(name: str) -> float:
    labels = {"job_name": JOB, "source": "impressions", "table": SILVER_IMPRESSIONS.relative_path}
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


# Tables after batch 1 crashed (batch 0 stored "a" and its audit row): (silver impressions
# rows, silver quarantine rows, audit rows). Its first write inserts b and c.
CRASHED_STATE = {
    faults.SILVER_AFTER_MERGE: (3, 0, 1),
    faults.SILVER_AFTER_QUARANTINE: (3, 2, 1),
    faults.SILVER_BEFORE_AUDIT: (3, 2, 1),
    faults.SILVER_AFTER_AUDIT: (3, 2, 2),
}


@pytest.mark.parametrize("crash_at", list(CRASHED_STATE))
def test_a_batch_replayed_after_a_crash_is_audited_as_its_first_attempt_wrote_it(
    spark: SparkSession, cfg: AppConfig, monkeypatch: pytest.MonkeyPatch, crash_at: str
) -> None:
    """The replay's MERGEs find the crashed attempt's rows and insert nothing; the audit, the
    metrics and the reconciliation must still count them as written and quarantined once."""
    _landing_creatives(cfg)
    batches = _replay_batches(spark)
    bronze_path = cfg.table_path(BRONZE_IMPRESSIONS.relative_path)
    for batch in batches.values():
        batch.write.format("delta").mode("append").save(bronze_path)
    query = "query-1"  # a stream's query id: kept by its checkpoint across restarts
    SilverProcessor(spark, cfg, "batch").process("impressions", batches[0], 0, txn_app=query)

    monkeypatch.setattr(faults.os, "kill", _crash_instead_of_kill)
    monkeypatch.setattr(faults, "_hits", {})
    monkeypatch.setenv(faults.ENV_VAR, crash_at)
    with pytest.raises(_Crash):
        SilverProcessor(spark, cfg, "batch").process("impressions", batches[1], 1, txn_app=query)
    monkeypatch.delenv(faults.ENV_VAR)
    # Where the crash landed: (silver rows, quarantine rows, audit rows) after it.
    counts = tuple(
        spark.read.format("delta").load(cfg.table_path(spec.relative_path)).count()
        for spec in (SILVER_IMPRESSIONS, SILVER_QUARANTINE, BATCH_AUDIT)
    )
    assert counts == CRASHED_STATE[crash_at]

    written, duplicates = (
        _metric("adlake_records_written_total"),
        _metric("adlake_duplicates_removed_total"),
    )
    restarted = SilverProcessor(spark, cfg, "batch")
    [replayed] = restarted.process("impressions", batches[1], 1, txn_app=query)
    assert replayed == BATCH_1
    assert replayed.unreconciled == 0
    # Metrics count the batch once, as written (the crashed attempt recorded nothing).
    assert _metric("adlake_records_written_total") - written == 2
    assert _metric("adlake_duplicates_removed_total") - duplicates == 3

    audit = spark.read.format("delta").load(cfg.table_path(BATCH_AUDIT.relative_path))
    got = sorted(
        (
            r["batch_id"],
            r["rows_in"],
            r["rows_written"],
            r["quarantined"],
            r["duplicates"],
            r["duplicates_in_batch"],
            r["duplicates_existing"],
        )
        for r in audit.collect()
    )
    assert got == [(0, 1, 1, 0, 0, 0, 0), (1, 7, 2, 2, 3, 2, 1)]
    silver_rows = spark.read.format("delta").load(cfg.table_path(SILVER_IMPRESSIONS.relative_path))
    assert sorted(r["impression_id"] for r in silver_rows.collect()) == ["a", "b", "c"]
    quarantine = spark.read.format("delta").load(cfg.table_path(SILVER_QUARANTINE.relative_path))
    records = sorted(json.loads(r["record"])["impression_id"] for r in quarantine.collect())
    assert records == ["x", "y"]

    # Batch 2 closes bronze run 2 for the bronze-vs-silver check: every row accounted once.
    restarted.process("impressions", batches[2], 2, txn_app=query)

    def table(relative: str) -> DataFrame:
        return spark.read.format("delta").load(cfg.table_path(relative))

    contributions = reconciliation.bronze_silver_reconciliation(
        {"impressions": table(BRONZE_IMPRESSIONS.relative_path)},
        {"impressions": table(SILVER_IMPRESSIONS.relative_path)},
        table(SILVER_QUARANTINE.relative_path),
        table(BATCH_AUDIT.relative_path),
        quality_run.reconciled_cuts(table(BATCH_AUDIT.relative_path)),
    )
    [measure] = checks.aggregate_measures(contributions).collect()
    check = grading.grade_reconciliation("impressions", checks.Measure(*measure))
    assert (check.observed, check.status) == (0.0, "pass")
    assert check.detail == (
        "bronze runs <= 2: 8 rows vs silver + quarantine + duplicates 8: 0 missing"
    )
