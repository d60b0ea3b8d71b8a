"""Benchmark the gold build on an existing silver lakehouse, optionally scaled up N times.

    # gold on the 1M-impression lakehouse left by scripts/benchmark.py
    .venv/bin/python scripts/benchmark_gold.py --silver /tmp/adlake-bench/lakehouse
    # 10M impressions: silver replicated 10x (user ids suffixed per copy) into --workdir
    .venv/bin/python scripts/benchmark_gold.py --silver /tmp/adlake-bench/lakehouse \\
        --scale 10 --workdir /tmp/adlake-bench-10x

Replicating silver (rather than generating, ingesting and standardizing 10M impressions) keeps
the gold input realistic per user (each copy is the original population under new user ids,
so paths, windows and ties are those of the generator) at a tenth of the set-up time.
Times a full build, a re-run with nothing new and a 1 % increment (as scripts/benchmark.py
does at 1M). Appends {"stage": "gold", ...} to benchmarks/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import runpy
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml
from pyspark.sql import functions as F

from adlake import storage
from adlake.cli import configure_logging
from adlake.config import DEFAULT_CONFIG, parse_config
from adlake.gold.run import build_gold
from adlake.session import build_spark
from adlake.tables import GOLD_TABLES

SILVER = ("impressions", "clicks", "conversions", "bid_requests", "creatives")
# Columns that identify a user or an event: suffixed per copy so copies never collide.
PER_COPY = ("user_id", "impression_id", "event_id", "request_id", "auction_id")


def workdir_overlap(silver: Path, workdir: Path) -> str | None:
    """Why `workdir` must not be used with the lakehouse at `silver`; None when they are apart.

    The benchmark deletes and rewrites tables under `<workdir>/lakehouse`, so a work directory
    equal to, inside or containing the lakehouse it reads (symlinks and `..` resolved) could
    delete the very silver tables it is about to read.
    """
    source, work = silver.resolve(), workdir.resolve()
    if work == source or source in work.parents or work in source.parents:
        return (
            f"--workdir {workdir} overlaps the lakehouse it reads ({silver}): the benchmark "
            f"deletes tables under <workdir>/lakehouse; choose a directory outside {source} "
            "that does not contain it either"
        )
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--silver", type=Path, required=True, help="lakehouse with silver/*")
    parser.add_argument("--scale", type=int, default=1)
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="needed when --scale > 1; its lakehouse/ is deleted and rewritten, so it must not "
        "overlap --silver",
    )
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results.json"))
    args = parser.parse_args()
    configure_logging("INFO")
    if args.workdir is not None:
        overlap = workdir_overlap(args.silver, args.workdir)
        if overlap is not None:
            parser.error(overlap)

    lakehouse = args.silver if args.scale == 1 else (args.workdir or Path()) / "lakehouse"
    if args.scale > 1 and args.workdir is None:
        parser.error("--workdir is required with --scale > 1")
    data: dict[str, Any] = yaml.safe_load(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    data["paths"] = {
        "landing": str(lakehouse.parent / "landing"),
        "lakehouse": str(lakehouse),
        "checkpoints": str(lakehouse.parent / "checkpoints"),
    }
    cfg = parse_config(data, lakehouse.parent)
    spark = build_spark(cfg)
    result: dict[str, Any] = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "stage": "gold",
        "scale": args.scale,
        "machine": f"{platform.machine()} cores={os.cpu_count()}",
        "spark_master": cfg.spark.master,
    }
    if args.scale > 1:
        started = time.monotonic()
        for name in SILVER:
            target = lakehouse / "silver" / name
            shutil.rmtree(target, ignore_errors=True)
            source = storage.read_table(spark, str(args.silver / "silver" / name))
            if name != "creatives":
                copies = spark.range(args.scale).select(F.col("id").cast("string").alias("_c"))
                source = source.crossJoin(copies).select(
                    *[
                        F.concat(F.col(c), F.lit("~"), F.col("_c")).alias(c)
                        if c in PER_COPY
                        else F.col(c)
                        for c in source.columns
                    ]
                )
            writer = source.write.format("delta")
            if name != "creatives":
                writer = writer.partitionBy("event_date")
            writer.save(str(target))
        result["replicate_seconds"] = round(time.monotonic() - started, 1)
    for spec in GOLD_TABLES:
        shutil.rmtree(lakehouse / spec.relative_path, ignore_errors=True)
    result["silver_rows"] = {
        n: storage.read_table(spark, str(lakehouse / "silver" / n)).count() for n in SILVER
    }
    started = time.monotonic()
    result["gold_rows"] = build_gold(spark, cfg)
    result["gold_seconds"] = round(time.monotonic() - started, 1)
    started = time.monotonic()
    build_gold(spark, cfg)
    result["gold_rerun_unchanged_seconds"] = round(time.monotonic() - started, 1)
    # A 1 % increment, as scripts/benchmark.py measures it at 1M: appended silver rows of
    # returning users on the newest day, then an incremental build.
    bench = runpy.run_path(str(Path(__file__).with_name("benchmark.py")))  # not a package
    result["increment_rows"] = bench["append_silver_increment"](
        spark, cfg, bench["INCREMENT_SHARE"]
    )
    started = time.monotonic()
    build_gold(spark, cfg)
    result["gold_increment_seconds"] = round(time.monotonic() - started, 1)
    result["increment_share"] = round(result["gold_increment_seconds"] / result["gold_seconds"], 3)
    spark.stop()
    print(json.dumps(result, indent=2))
    history = json.loads(args.results.read_text()) if args.results.exists() else []
    history.append(result)
    args.results.write_text(json.dumps(history, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
