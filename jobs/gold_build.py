"""Gold job: silver tables -> conversion attribution and campaign aggregates.

spark-submit jobs/gold_build.py --config conf/local.yaml --table all [--full]

Incremental from the silver rows appended since the last build when possible; --full
recomputes every table from all of silver.
"""

from __future__ import annotations

import argparse
import sys

from adlake.cli import base_parser, exit_with, run_job
from adlake.config import AppConfig
from adlake.gold.run import build_gold
from adlake.lease import holding
from adlake.session import build_spark


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--table", choices=["attribution", "aggregates", "all"], default="all")
    parser.add_argument(
        "--full", action="store_true", help="rebuild from all of silver instead of incrementally"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)

    def body(cfg: AppConfig) -> None:
        spark = build_spark(cfg)
        with holding(spark, cfg, "gold"):  # one gold writer: replaces must not interleave
            build_gold(spark, cfg, args.table, full=args.full)

    return run_job("gold_build", args, body)


if __name__ == "__main__":
    exit_with(main())
