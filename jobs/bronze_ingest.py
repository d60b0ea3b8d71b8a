"""Bronze ingestion job: landing files -> bronze Delta tables + quarantine (batch or stream).

spark-submit jobs/bronze_ingest.py --config conf/local.yaml --source all --mode batch
"""

from __future__ import annotations

import argparse
import logging
import sys

from adlake.bronze_ingest import run_batch, run_streams
from adlake.cli import base_parser, exit_with, run_job
from adlake.config import SOURCES, AppConfig, parse_trigger
from adlake.session import build_spark

log = logging.getLogger("adlake.jobs.bronze_ingest")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--source", choices=[*SOURCES, "all"], default="all")
    parser.add_argument("--mode", choices=["batch", "stream"], default="batch")
    parser.add_argument(
        "--trigger", default=None, help="stream trigger: available-now or an interval such as 10s"
    )
    args = parser.parse_args(argv)
    if args.trigger is not None:
        try:
            parse_trigger(args.trigger, "--trigger")
        except ValueError as exc:
            parser.error(str(exc))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    sources = list(SOURCES) if args.source == "all" else [args.source]

    def body(cfg: AppConfig) -> None:
        spark = build_spark(cfg)
        if args.mode == "batch":
            for r in run_batch(spark, cfg, sources):
                log.info(
                    "bronze %s run %d: %d files, %d rows, %d quarantined, %.1fs",
                    r.source,
                    r.run_seq,
                    r.files,
                    r.bronze_rows,
                    r.quarantined_rows,
                    r.seconds,
                )
        else:
            run_streams(spark, cfg, sources, args.trigger or cfg.stream.trigger)

    return run_job("bronze_ingest", args, body)


if __name__ == "__main__":
    exit_with(main())
