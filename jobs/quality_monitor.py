"""Data-quality monitor: grade the lakehouse tables and append the results to ops/dq_results.

spark-submit jobs/quality_monitor.py --config conf/local.yaml               # once, after gold
spark-submit jobs/quality_monitor.py --config conf/local.yaml --mode stream --interval 15m

Failed checks are data, not job errors: the job exits 0 whatever the statuses, 1 when a run
raises, 2 on bad configuration. Stream mode starts a run every --interval until SIGTERM or
SIGINT, letting the running evaluation finish first.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone

from adlake import metrics
from adlake.cli import base_parser, exit_with, run_job
from adlake.config import AppConfig, ConfigError, parse_duration
from adlake.quality import run as quality
from adlake.session import build_spark
from adlake.streams import stop_on_signals


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--mode", choices=["batch", "stream"], default="batch")
    parser.add_argument(
        "--interval", default="15m", help="stream mode: time between run starts (e.g. 15m, 1 hour)"
    )
    args = parser.parse_args(argv)
    try:
        args.interval_seconds = parse_duration(args.interval, "--interval")
    except ConfigError as exc:
        parser.error(str(exc))
    if args.interval_seconds <= 0:
        parser.error("--interval must be longer than 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)

    def body(cfg: AppConfig) -> None:
        spark = build_spark(cfg)

        def run_once() -> None:
            run_ts = datetime.now(timezone.utc)
            results = quality.monitor_once(spark, cfg, now=run_ts)
            metrics.record_dq(results, run_ts)
            if args.mode == "stream":  # a batch run publishes once, at exit (run_job)
                metrics.publish(cfg.metrics, "quality_monitor", "all")
            print(quality.format_results(results), flush=True)

        if args.mode == "batch":
            run_once()
            return
        stop = stop_on_signals()
        metrics.serve(cfg.metrics)  # scraped between runs, like a streaming driver
        while not stop.is_set():
            started = time.monotonic()
            run_once()
            stop.wait(max(0.0, args.interval_seconds - (time.monotonic() - started)))

    return run_job("quality_monitor", args, body)


if __name__ == "__main__":
    exit_with(main())
