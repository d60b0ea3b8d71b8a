"""Silver job: bronze Delta tables -> validated, standardized, deduplicated silver tables.

spark-submit jobs/silver_transform.py --config conf/local.yaml --source all --mode batch
"""

from __future__ import annotations

import argparse
import sys

from adlake.cli import exit_with, parse_source_mode_args, run_job, source_mode_parser
from adlake.config import SOURCES, AppConfig
from adlake.lease import holding
from adlake.session import build_spark
from adlake.silver.run import run_batch, run_streams


def parse_args(argv: list[str]) -> argparse.Namespace:
    return parse_source_mode_args(source_mode_parser(__doc__ or "", SOURCES), argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    sources = list(SOURCES) if args.source == "all" else [args.source]

    def body(cfg: AppConfig) -> None:
        spark = build_spark(cfg)
        # One writer per source: Spark does not stop two processes sharing a checkpoint.
        with holding(spark, cfg, "silver", sources):
            if args.mode == "batch":
                run_batch(spark, cfg, sources)
            else:
                run_streams(spark, cfg, sources, args.trigger or cfg.stream.trigger)

    return run_job("silver_transform", args, body)


if __name__ == "__main__":
    exit_with(main())
