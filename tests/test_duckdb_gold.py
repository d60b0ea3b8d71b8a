"""scripts/duckdb_gold.py: DuckDB's attribution and campaign_daily equal gold's on one lakehouse."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from adlake.bronze import ingest as bronze_ingest
from adlake.config import SOURCES
from adlake.gold.run import build_gold
from adlake.silver import run as silver_run
from adlake_datagen import DatagenConfig, generate_landing
from tests.conftest import config_for


def load_script() -> Any:
    """scripts/ is not a package; load the module from its file (as the benchmark would)."""
    path = Path(__file__).resolve().parents[1] / "scripts" / "duckdb_gold.py"
    spec = importlib.util.spec_from_file_location("duckdb_gold", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_duckdb_baseline_equals_gold(spark: SparkSession, tmp_path: Path) -> None:
    duckdb_gold = load_script()
    cfg = config_for(tmp_path)
    # Few users and high click/conversion rates: multi-touch paths mixing clicks and
    # impressions, and conversions with no eligible touch (38 conversions, 496 credit rows).
    generate_landing(
        DatagenConfig(
            impressions=400,
            seed=11,
            files=2,
            users=20,
            ctr=0.2,
            conversion_rate=0.3,
            view_through_rate=0.05,
        ),
        Path(cfg.paths.landing),
    )
    bronze_ingest.run_batch(spark, cfg, SOURCES)
    silver_run.run_batch(spark, cfg, SOURCES)
    build_gold(spark, cfg)

    parquet_dir = tmp_path / "duckdb" / "silver"
    versions = duckdb_gold.export_silver(spark, cfg.paths.lakehouse, parquet_dir)
    result = duckdb_gold.run_duckdb(parquet_dir, cfg.attribution, tmp_path / "duckdb" / "out")
    assert result["seconds"] > 0
    report = duckdb_gold.compare_with_gold(
        spark, cfg.paths.lakehouse, result, silver_versions=versions
    )

    attribution = report["conversion_attribution"]
    assert attribution["gold_rows"] > 0
    assert attribution["gold_rows"] == attribution["duckdb_rows"] == attribution["matched"]
    assert attribution["gold_rows"] == result["attribution_rows"]
    assert attribution["max_abs_diff"]["credit"] <= 1e-9
    # The data exercises every case: unattributed conversions, clicks, several touches.
    stats = (
        spark.read.parquet(str(result["attribution"]))
        .groupBy()
        .agg(
            F.count(F.when(F.col("touch_type") == "unattributed", 1)).alias("unattributed"),
            F.count(F.when(F.col("touch_type") == "click", 1)).alias("clicks"),
            F.count(F.when((F.col("model") == "linear") & (F.col("credit") < 0.5), 1)).alias(
                "shared"
            ),
        )
        .first()
    )
    assert stats is not None
    assert min(stats["unattributed"], stats["clicks"], stats["shared"]) > 0
    daily = report["campaign_daily"]
    assert daily["gold_rows"] > 0
    assert daily["gold_rows"] == daily["duckdb_rows"] == daily["matched"]
    assert daily["gold_rows"] == result["campaign_daily_rows"]
