"""Bronze ingestion job: landing files -> bronze Delta tables + quarantine (batch or stream).

spark-submit jobs/bronze_ingest.py --config conf/local.yaml --source all --mode batch
"""

from __future__ import annotations

import argparse
import sys

from adlake.bronze.ingest import run_batch, run_streams
from adlake.cli import exit_with, parse_source_mode_args, run_job, source_mode_parser
from adlake.config import SOURCES, AppConfig
from adlake.lease import holding
from adlake.session import build_spark


def parse_args(argv: list[str]) -> argparse.Namespace:
    return parse_source_mode_args(source_mode_parser(__doc__ or "", SOURCES), argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    sources = list(SOURCES) if args.source == "all" else [args.source]

    def body(cfg: AppConfig) -> None:
        spark = build_spark(cfg)
        with holding(spark, cfg, "bronze", sources):  # one bronze writer per source
            if args.mode == "batch":
                run_batch(spark, cfg, sources)  # each run logs its own counts
            else:
                run_streams(spark, cfg, sources, args.trigger or cfg.stream.trigger)

    return run_job("bronze_ingest", args, body)


if __name__ == "__main__":
    exit_with(main())
