"""Benchmark bronze and silver batch throughput on generated data; appends results to a JSON file.

    .venv/bin/python scripts/benchmark.py --impressions 1000000 --workdir /tmp/adlake-bench

Performance targets live here, never in timed tests. Each stage runs in this process's one
SparkSession (local[*]); generation time is reported separately and not counted.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from adlake import bronze_ingest, silver_run
from adlake.cli import configure_logging
from adlake.config import DEFAULT_CONFIG, SOURCES, parse_config
from adlake.datagen import DatagenConfig, generate_landing
from adlake.session import build_spark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--impressions", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/adlake-bench"))
    parser.add_argument("--keep-landing", action="store_true", help="reuse generated files")
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results.json"))
    args = parser.parse_args()
    configure_logging("INFO")

    data: dict[str, Any] = yaml.safe_load(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    data["paths"] = {
        "landing": str(args.workdir / "landing"),
        "lakehouse": str(args.workdir / "lakehouse"),
        "checkpoints": str(args.workdir / "checkpoints"),
    }
    cfg = parse_config(data, args.workdir)
    shutil.rmtree(args.workdir / "lakehouse", ignore_errors=True)
    shutil.rmtree(args.workdir / "checkpoints", ignore_errors=True)

    result: dict[str, Any] = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "impressions": args.impressions,
        "machine": f"{platform.machine()} {platform.processor() or ''} cores={_cores()}",
        "spark_master": cfg.spark.master,
    }
    if not (args.keep_landing and (args.workdir / "landing" / "_manifest.json").exists()):
        started = time.monotonic()
        generate_landing(
            DatagenConfig(impressions=args.impressions, seed=args.seed, files=args.files),
            args.workdir / "landing",
        )
        result["generate_seconds"] = round(time.monotonic() - started, 1)

    spark = build_spark(cfg)
    for source in SOURCES:
        started = time.monotonic()
        runs = bronze_ingest.run_batch(spark, cfg, [source])
        seconds = time.monotonic() - started
        records = sum(r.records for r in runs)
        result[f"bronze_{source}"] = {
            "records": records,
            "seconds": round(seconds, 1),
            "rows_per_second": round(records / seconds),
        }
    for source in SOURCES:
        started = time.monotonic()
        audit = silver_run.run_batch(spark, cfg, [source])
        seconds = time.monotonic() - started
        rows_in = sum(a.rows_in for a in audit)
        result[f"silver_{source}"] = {
            "rows_in": rows_in,
            "seconds": round(seconds, 1),
            "rows_per_second": round(rows_in / seconds),
            "audit": [
                {
                    "source": a.source,
                    "rows_in": a.rows_in,
                    "rows_written": a.rows_written,
                    "quarantined": a.quarantined,
                    "duplicates": a.duplicates,
                    "late_rows": a.late_rows,
                    "warned_rows": a.warned_rows,
                    "unknown_countries": a.unknown_countries,
                }
                for a in audit
            ],
        }
    spark.stop()
    print(json.dumps(result, indent=2))
    history = json.loads(args.results.read_text()) if args.results.exists() else []
    history.append(result)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(history, indent=2) + "\n", encoding="utf-8")


def _cores() -> int:
    import os

    return os.cpu_count() or 0


if __name__ == "__main__":
    main()
