"""A smoke run of scripts/benchmark.py on a few thousand rows, so the benchmark never rots.

Only the plumbing and the result's shape and counts are checked here: timings and targets
live in the benchmark's own output, never in tests.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pyspark.sql import SparkSession

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def test_benchmark_smoke_run_measures_every_part(spark: SparkSession, tmp_path: Path) -> None:
    sys.path.insert(0, str(SCRIPTS))
    try:
        import benchmark
    finally:
        sys.path.remove(str(SCRIPTS))
    args = benchmark.parse_args(
        ["--smoke", "--workdir", str(tmp_path / "w"), "--results-dir", str(tmp_path / "r")]
    )
    result = benchmark.run(spark, args)

    manifest = json.loads((tmp_path / "w" / "landing" / "_manifest.json").read_text())
    stages = result["stages"]
    for source in ("impressions", "clicks_conversions", "bid_requests"):
        # A truncated (corrupt) file is one corrupt_file quarantine row.
        expected = sum(
            1 if entry.get("truncated") else entry["records"]
            for entry in manifest["files"].values()
            if entry["source"] == source
        )
        assert stages[f"bronze_{source}"]["records"] == expected, source
        assert stages[f"bronze_{source}"]["baseline_seconds"] > 0
    imp = stages["silver_impressions"]
    assert imp["rows_in"] == stages["bronze_impressions"]["bronze_rows"]
    assert imp["rows_in"] == imp["rows_written"] + imp["duplicates"] + imp["quarantined"]
    assert result["small_batches"]["small_file_rows_written"] == 1000
    assert result["small_batches"]["nothing_new_batches"] == 0
    assert set(result["flat_batches"]) >= {"history_1000", "history_10000", "ratio"}
    check = result["gold"]["duckdb_check"]
    for table in ("conversion_attribution", "campaign_daily"):
        assert check[table]["matched"] == check[table]["gold_rows"] == check[table]["duckdb_rows"]
        assert check[table]["gold_rows"] > 0
    queries = result["analyst_queries"]
    for name in ("one_campaign_one_week", "all_campaigns_one_day"):
        assert 1 <= queries[name]["files_scanned"] <= queries["total_files"]
    assert result["streaming"]["files_seen_in_silver"] == 2
    assert set(result["targets"]) >= {"bronze_all_ratio", "silver_impressions_ratio"}
    written = sorted(p.suffix for p in (tmp_path / "r").iterdir())
    assert written == [".json", ".md"]
