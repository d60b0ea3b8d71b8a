"""Maintenance job: Delta OPTIMIZE (Z-order where possible) and VACUUM of the lakehouse tables.

spark-submit jobs/maintain_tables.py --config conf/local.yaml --tables all --retention 7d
spark-submit jobs/maintain_tables.py --config conf/local.yaml --tables gold,silver --dry-run

Tables that do not exist yet are skipped. Exit code 0 on success, 1 when a table failed (the
others are still maintained), 2 on a bad flag or configuration, such as --retention below
7 days.
"""

from __future__ import annotations

import argparse
import sys

from adlake.cli import base_parser, exit_with, run_job
from adlake.config import AppConfig, ConfigError
from adlake.ops import maintenance
from adlake.session import build_spark


class MaintenanceFailedError(RuntimeError):
    """At least one table could not be optimized or vacuumed; the summary names them."""


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = base_parser(__doc__ or "")
    parser.add_argument(
        "--tables",
        default=maintenance.ALL,
        help="all, bronze, silver, gold, ops or table paths such as gold/campaign_daily, "
        "comma-separated (default: all)",
    )
    parser.add_argument(
        "--retention",
        default=None,
        help="VACUUM retention such as 7d or 240 hours, at least 7 days "
        "(default: maintenance.vacuum_retention)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="report what would be done; change nothing"
    )
    args = parser.parse_args(argv)
    try:
        args.selected = maintenance.select_tables(args.tables)
        # Checked here, before config or Spark: a too-short retention never gets near a table.
        args.retention_seconds = (
            None if args.retention is None else maintenance.parse_retention_flag(args.retention)
        )
    except ConfigError as exc:
        parser.error(str(exc))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)

    def body(cfg: AppConfig) -> None:
        retention = (
            cfg.maintenance.vacuum_retention_seconds
            if args.retention_seconds is None
            else args.retention_seconds
        )
        outcomes = maintenance.run_maintenance(
            build_spark(cfg), cfg, args.selected, retention, dry_run=args.dry_run
        )
        print(maintenance.format_outcomes(outcomes), flush=True)
        failed = [o.name for o in outcomes if o.status == maintenance.FAILED]
        if failed:
            raise MaintenanceFailedError(f"maintenance failed for {', '.join(failed)}")

    return run_job("maintain_tables", args, body)


if __name__ == "__main__":
    exit_with(main())
