"""Write synthetic AdLake landing data (the logic lives in adlake_datagen).

python scripts/generate_data.py --out data/landing --impressions 100000 --seed 7
python scripts/generate_data.py --config conf/local.yaml --end now   # data ending now
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import yaml

from adlake_datagen import (
    DatagenConfig,
    DatagenConfigError,
    generate_landing,
    parse_timestamp_mix,
)

logger = logging.getLogger("generate_data")

# `--end now` rounds down to this, so re-running within the same half hour writes
# byte-identical files (and a pipeline re-run adds nothing), while the newest events are at
# most this old when the data lands.
END_NOW_GRANULARITY = timedelta(minutes=30)


def parse_end(text: str, now: datetime | None = None) -> datetime:
    """`now` (UTC, rounded down to the half hour) or an ISO-8601 time (UTC when no offset)."""
    if text == "now":
        current = now or datetime.now(timezone.utc)
        epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
        return epoch + (current - epoch) // END_NOW_GRANULARITY * END_NOW_GRANULARITY
    try:
        end = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected 'now' or an ISO-8601 time, got {text!r}"
        ) from None
    return end if end.tzinfo is not None else end.replace(tzinfo=timezone.utc)


def landing_dir_from_config(config_path: Path) -> Path:
    """`paths.landing` of a YAML config, relative to the current directory.

    Deliberately minimal until the shared config loader exists.
    """
    with open(config_path, encoding="utf-8") as fo:
        config = yaml.safe_load(fo)
    try:
        landing = config["paths"]["landing"]
    except (KeyError, TypeError):
        raise DatagenConfigError(f"{config_path}: missing key paths.landing") from None
    return Path(landing)


def build_parser() -> argparse.ArgumentParser:
    defaults = DatagenConfig()
    parser = argparse.ArgumentParser(description="Write synthetic AdLake landing data.")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", type=Path, help="output (landing) directory")
    target.add_argument("--config", type=Path, help="YAML config; writes to its paths.landing")

    size = parser.add_argument_group("size and time")
    size.add_argument("--impressions", type=int, default=defaults.impressions)
    size.add_argument("--seed", type=int, default=defaults.seed)
    size.add_argument(
        "--files", type=int, default=defaults.files, help="files per source, one per arrival window"
    )
    size.add_argument("--days", type=int, default=defaults.days)
    start = size.add_mutually_exclusive_group()
    start.add_argument(
        "--start-date",
        type=date.fromisoformat,
        default=defaults.start_date,
        help="first event day (UTC), YYYY-MM-DD",
    )
    start.add_argument(
        "--end",
        type=parse_end,
        help="when the data ends instead: 'now' (rounded down to the half hour) or an ISO "
        "time; the data then starts --days before it",
    )
    size.add_argument("--users", type=int, help="default: impressions / 20, at least 100")
    size.add_argument("--campaigns", type=int, help="default: impressions / 2500, 4..1000")
    size.add_argument("--creatives-per-campaign", type=int, default=defaults.creatives_per_campaign)
    size.add_argument("--advertisers", type=int, help="default: campaigns / 4, at least 2")
    size.add_argument("--websites", type=int, help="default: impressions / 400, 20..5000")

    behaviour = parser.add_argument_group("behaviour (fractions)")
    behaviour.add_argument("--ctr", type=float, default=defaults.ctr)
    behaviour.add_argument(
        "--conversion-rate",
        type=float,
        default=defaults.conversion_rate,
        help="share of clicks followed by a conversion",
    )
    behaviour.add_argument(
        "--view-through-rate",
        type=float,
        default=defaults.view_through_rate,
        help="share of unclicked impressions followed by a conversion",
    )
    behaviour.add_argument(
        "--win-rate",
        type=float,
        default=defaults.win_rate,
        help="share of bid requests (auctions won) whose impression is served",
    )

    defects = parser.add_argument_group("defects (fractions of clean records)")
    defects.add_argument("--duplicate-rate", type=float, default=defaults.duplicate_rate)
    defects.add_argument("--malformed-rate", type=float, default=defaults.malformed_rate)
    defects.add_argument("--late-rate", type=float, default=defaults.late_rate)
    defects.add_argument("--schema-drift-rate", type=float, default=defaults.schema_drift_rate)
    defects.add_argument(
        "--truncated-avro-files",
        type=int,
        help="last K Avro files cut mid-block; default 1 if files >= 2",
    )
    defects.add_argument(
        "--truncated-avro-copies",
        type=int,
        default=defaults.truncated_avro_copies,
        help="last K Avro files also land as a cut-off copy (<name>.retry.avro), as from an "
        "interrupted upload that was retried: corrupt, but nothing is lost",
    )
    defects.add_argument(
        "--timestamp-mix",
        type=str,
        default=",".join(f"{k}={v}" for k, v in defaults.timestamp_mix.items()),
        help="weights of plain, iso_offset, iso_utc, epoch_ms",
    )

    output = parser.add_argument_group("output")
    output.add_argument("--gzip", action="store_true", help="write impressions as .jsonl.gz")
    seeds = output.add_mutually_exclusive_group()
    seeds.add_argument(
        "--include-seed-records",
        dest="include_seed_records",
        action="store_true",
        default=True,
        help="write the case-study records first (default)",
    )
    seeds.add_argument("--no-seed-records", dest="include_seed_records", action="store_false")
    parser.add_argument("--log-level", default="INFO")
    return parser


def config_from_args(args: argparse.Namespace) -> DatagenConfig:
    return DatagenConfig(
        impressions=args.impressions,
        seed=args.seed,
        files=args.files,
        days=args.days,
        start_date=args.start_date if args.end is None else args.end - timedelta(days=args.days),
        users=args.users,
        campaigns=args.campaigns,
        creatives_per_campaign=args.creatives_per_campaign,
        advertisers=args.advertisers,
        websites=args.websites,
        ctr=args.ctr,
        conversion_rate=args.conversion_rate,
        view_through_rate=args.view_through_rate,
        win_rate=args.win_rate,
        duplicate_rate=args.duplicate_rate,
        malformed_rate=args.malformed_rate,
        late_rate=args.late_rate,
        schema_drift_rate=args.schema_drift_rate,
        truncated_avro_files=args.truncated_avro_files,
        truncated_avro_copies=args.truncated_avro_copies,
        timestamp_mix=parse_timestamp_mix(args.timestamp_mix),
        gzip=args.gzip,
        include_seed_records=args.include_seed_records,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        out_dir = args.out if args.out is not None else landing_dir_from_config(args.config)
        manifest = generate_landing(config_from_args(args), out_dir)
    except (DatagenConfigError, FileNotFoundError) as exc:
        logger.error("%s", exc)
        return 2
    totals = manifest["totals"]["all"]
    logger.info("wrote %d files, %d records to %s", totals["files"], totals["records"], out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
