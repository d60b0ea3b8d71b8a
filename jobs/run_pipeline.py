"""End-to-end pipeline on one SparkSession: bronze, silver, gold, quality checks, then a
summary of every table.

scripts/spark_submit.sh jobs/run_pipeline.py
"""

from __future__ import annotations

import argparse
import sys

from adlake.bronze import ingest as bronze_ingest
from adlake.cli import base_parser, exit_with, run_job
from adlake.config import SOURCES, AppConfig
from adlake.gold.run import build_gold
from adlake.lease import holding
from adlake.ops.summary import closing_reports
from adlake.session import build_spark
from adlake.silver import run as silver_run

STAGES = ("bronze", "silver", "gold", "quality")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = base_parser(__doc__ or "")
    parser.add_argument(
        "--stages", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)}"
    )
    args = parser.parse_args(argv)
    unknown = set(args.stages.split(",")) - set(STAGES)
    if unknown:
        parser.error(f"unknown stage(s): {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    stages = args.stages.split(",")

    def body(cfg: AppConfig) -> None:
        spark = build_spark(cfg)
        # Each bronze run and silver batch logs its own counts (and exports them as metrics).
        # Each stage holds the leases its own job takes, so it never overlaps that job.
        if "bronze" in stages:
            with holding(spark, cfg, "bronze", SOURCES):
                bronze_ingest.run_batch(spark, cfg, SOURCES)
        if "silver" in stages:
            with holding(spark, cfg, "silver", SOURCES):
                silver_run.run_batch(spark, cfg, SOURCES)
        if "gold" in stages:
            with holding(spark, cfg, "gold"):
                build_gold(spark, cfg)
        for title, report in closing_reports(spark, cfg, stages):
            print(f"\n{title}")
            print(report)

    return run_job("run_pipeline", args, body)


if __name__ == "__main__":
    exit_with(main())
