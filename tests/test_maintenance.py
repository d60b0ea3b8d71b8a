"""Table maintenance: planning rules without Spark, then one OPTIMIZE + VACUUM run on a tiny table."""

from __future__ import annotations

import importlib.util
import os
import time
from datetime import date
from pathlib import Path
from types import ModuleType

import pytest
from delta.tables import DeltaTable
from pyspark.sql import SparkSession
from pyspark.sql.types import DateType, LongType, StringType, StructField, StructType

from adlake.config import ConfigError
from adlake.ops import maintenance
from adlake.ops.maintenance import MaintainedTable, TableOutcome
from adlake.tables import ALL_TABLES, GOLD_CAMPAIGN_DAILY, GOLD_STATE_TABLES, GOLD_TABLES
from tests.conftest import write_config

DAY = 86_400


def _job() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "jobs" / "maintain_tables.py"
    spec = importlib.util.spec_from_file_location("maintain_tables_job", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _paths(tables: tuple[MaintainedTable, ...]) -> list[str]:
    return [t.relative_path for t in tables]


def test_catalog_is_the_declared_tables_then_gold() -> None:
    catalog = maintenance.maintained_tables()
    assert _paths(catalog) == [s.relative_path for s in ALL_TABLES]
    assert _paths(catalog)[-6:] == [s.relative_path for s in (*GOLD_TABLES, *GOLD_STATE_TABLES)]
    assert catalog[-1] == MaintainedTable("gold.conversion_channels", "gold/conversion_channels")


def test_select_tables_by_group_path_and_all_in_catalog_order_once() -> None:
    assert _paths(maintenance.select_tables("gold")) == [
        "gold/conversion_attribution",
        "gold/campaign_daily",
        "gold/campaign_attribution_daily",
        "gold/bid_funnel_daily",
        "gold/markov_transitions",
        "gold/conversion_channels",
    ]
    assert _paths(maintenance.select_tables(" gold/campaign_daily , silver/clicks,gold ")) == [
        "silver/clicks",
        "gold/conversion_attribution",
        "gold/campaign_daily",
        "gold/campaign_attribution_daily",
        "gold/bid_funnel_daily",
        "gold/markov_transitions",
        "gold/conversion_channels",
    ]
    assert maintenance.select_tables("all,ops") == maintenance.maintained_tables()
    assert {t.group for t in maintenance.select_tables("ops")} == {"ops"}


@pytest.mark.parametrize("value", ["gold/nope", "_checkpoints/bronze/impressions", " , "])
def test_select_tables_refuses_anything_else_naming_the_flag(value: str) -> None:
    with pytest.raises(ConfigError) as exc:
        maintenance.select_tables(value)
    assert exc.value.key == "--tables"


def test_zorder_columns_skip_partition_and_absent_columns() -> None:
    gold_daily = ["campaign_id", "advertiser_id", "event_date", "impressions"]
    assert maintenance.zorder_columns(["campaign_id"], gold_daily, ["event_date"]) == (
        "campaign_id",
    )
    assert maintenance.zorder_columns(
        ["event_date", "Campaign_ID", "campaign_id", "advertiser_id"], gold_daily, ["event_date"]
    ) == ("campaign_id", "advertiser_id")
    funnel = ["event_date", "country", "website", "bid_requests"]
    assert maintenance.zorder_columns(["campaign_id"], funnel, ["event_date"]) == ()
    assert maintenance.zorder_columns(["campaign_id"], gold_daily, [], ["campaign_id"]) == ()


def test_retention_flag_is_at_least_seven_days() -> None:
    assert maintenance.parse_retention_flag("7d") == 7 * DAY
    assert maintenance.parse_retention_flag("240 hours") == 10 * DAY
    for value in ("6d", "167 hours", "soon"):
        with pytest.raises(ConfigError) as exc:
            maintenance.parse_retention_flag(value)
        assert exc.value.key == "--retention"


def test_vacuum_hours_round_up_and_keep_a_longer_table_retention() -> None:
    assert maintenance.vacuum_retention_hours(7 * DAY) == 168
    assert maintenance.vacuum_retention_hours(7 * DAY + 1) == 169
    assert maintenance.vacuum_retention_hours(7 * DAY, "interval 30 days") == 720
    assert maintenance.vacuum_retention_hours(7 * DAY, "interval 1 week 1 day") == 192
    assert maintenance.vacuum_retention_hours(10 * DAY, "interval 1 week") == 240
    assert maintenance.vacuum_retention_hours(10 * DAY, "interval 1 month") == 240
    with pytest.raises(ValueError):
        maintenance.vacuum_retention_hours(7 * DAY - 1)


def test_checkpoint_locations_overlap_only_by_whole_directories() -> None:
    assert maintenance.paths_overlap("/l/silver/clicks", "/l/silver/clicks/")
    assert maintenance.paths_overlap("/l/silver/clicks", "/l/silver/clicks/_ckpt")
    assert maintenance.paths_overlap("/l/silver/clicks", "/l")
    assert not maintenance.paths_overlap("/l/silver/clicks", "/l/_checkpoints")
    assert not maintenance.paths_overlap("/l/silver/clicks", "/l/silver/clicks2")


def test_summary_table() -> None:
    text = maintenance.format_outcomes(
        [
            TableOutcome("gold.campaign_daily", "/l", "done", 6, ("campaign_id",), 6, 2, 168, 1),
            TableOutcome("ops.batch_audit", "/l", "dry-run", 3, (), None, None, 168, 0),
            TableOutcome("silver.clicks", "/l", "missing"),
        ]
    )
    assert text.splitlines() == [
        "table                status   files  optimize            opt_removed  opt_added  retain_h  vacuum_files",
        "gold.campaign_daily  done         6  zorder:campaign_id            6          2       168             1",
        "ops.batch_audit      dry-run      3  compaction                    -          -       168             0",
        "silver.clicks        missing      -  -                             -          -         -             -",
    ]


@pytest.mark.parametrize(
    ("flags", "message"),
    [(["--retention", "6d"], "--retention"), (["--tables", "gold,nope"], "--tables")],
)
def test_job_refuses_bad_flags_with_exit_code_2(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        _job().main(["--config", "unused.yaml", *flags])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


_DAILY = StructType(
    [
        StructField("campaign_id", StringType()),
        StructField("event_date", DateType()),
        StructField("impressions", LongType()),
    ]
)


def _stray_file(table: Path, name: str, age_days: float) -> Path:
    """A data file no commit references, last modified `age_days` ago (VACUUM's only input)."""
    path = table / "event_date=2024-01-01" / name
    path.write_bytes(b"not referenced by the Delta log")
    stamp = time.time() - age_days * DAY
    os.utime(path, (stamp, stamp))
    return path


def test_optimize_and_vacuum_a_partitioned_gold_table(
    spark: SparkSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, **{"maintenance.vacuum_retention": "10 days"})
    location = tmp_path / "lakehouse" / GOLD_CAMPAIGN_DAILY.relative_path
    d1, d2 = date(2024, 1, 1), date(2024, 1, 2)
    expected: list[tuple[str, date, int]] = []
    for i in range(3):  # three appends of one row per partition: six small files
        rows = [(f"c{i}", d1, i), (f"c{i + 1}", d2, 10 + i)]
        expected += rows
        spark.createDataFrame(rows, _DAILY).write.format("delta").mode("append").partitionBy(
            "event_date"
        ).save(str(location))
    old = _stray_file(location, "part-stray-old.parquet", age_days=11)
    recent = _stray_file(location, "part-stray-recent.parquet", age_days=9)
    table = DeltaTable.forPath(spark, str(location))

    def files() -> int:
        detail = table.detail().first()
        assert detail is not None
        return int(detail["numFiles"])

    def summary_line() -> list[str]:
        lines = capsys.readouterr().out.splitlines()
        assert len(lines) == 1 + len(maintenance.maintained_tables())
        others = [
            line.split()[1] for line in lines[1:] if not line.startswith("gold.campaign_daily")
        ]
        assert set(others) == {"missing"}  # every other table does not exist: skipped
        return next(line.split() for line in lines if line.startswith("gold.campaign_daily"))

    job = _job()
    assert job.main(["--config", str(config), "--log-level", "WARNING", "--dry-run"]) == 0
    assert summary_line() == [
        "gold.campaign_daily",
        "dry-run",
        "6",
        "zorder:campaign_id",
        "-",
        "-",
        "240",
        "1",
    ]
    assert (files(), table.history().count(), old.exists()) == (6, 3, True)

    assert job.main(["--config", str(config), "--log-level", "WARNING"]) == 0
    assert summary_line() == [
        "gold.campaign_daily",
        "done",
        "6",
        "zorder:campaign_id",
        "6",
        "2",
        "240",
        "1",
    ]
    got = [tuple(r) for r in spark.read.format("delta").load(str(location)).collect()]
    assert sorted(got) == sorted(expected)
    assert files() == 2
    history = {
        r["operation"]: (r["operationParameters"], r["operationMetrics"])
        for r in table.history().where("version >= 3").collect()
    }
    assert set(history) == {"OPTIMIZE", "VACUUM START", "VACUUM END"}
    assert history["OPTIMIZE"][0]["zOrderBy"] == '["campaign_id"]'
    assert history["VACUUM START"][0]["specifiedRetentionMillis"] == str(10 * DAY * 1000)
    assert history["VACUUM START"][0]["retentionCheckEnabled"] == "true"
    assert history["VACUUM END"][1]["numDeletedFiles"] == "1"
    # 11 days old went, 9 days old stayed: the 10-day retention was the one applied.
    assert (old.exists(), recent.exists()) == (False, True)
    assert spark.conf.get("spark.databricks.delta.vacuum.retentionWindowIgnore.enabled") == "true"
