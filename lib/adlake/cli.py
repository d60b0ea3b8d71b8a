"""Shared plumbing of the `jobs/*.py` entry points: arguments, logging, config, exit codes."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

from adlake.config import DEFAULT_CONFIG, AppConfig, ConfigError, load_config, parse_trigger
from adlake.lease import LeaseHeldError

# Exit code of a run that did not start because another run holds its lease: a scheduler
# can tell "skipped, try later" from a failure (1) and a bad configuration (2).
EXIT_LEASE_HELD = 3

log = logging.getLogger("adlake")


def base_parser(description: str) -> argparse.ArgumentParser:
    """A parser with the flags every job takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--config", default=str(DEFAULT_CONFIG), help="YAML config file (default: conf/local.yaml)"
    )
    parser.add_argument("--log-level", default="INFO", help="Python log level (default: INFO)")
    return parser


def configure_logging(level: str) -> None:
    """stdlib logging to stderr with timestamps; Spark's own log4j output stays separate."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("py4j").setLevel(logging.WARNING)


def run_job(name: str, args: argparse.Namespace, body: Callable[[AppConfig], None]) -> int:
    """Load the config, run the job body, and map failures to a non-zero exit code."""
    configure_logging(args.log_level)
    # Which code runs: the checkout, an installed wheel, or a --py-files zip on a cluster.
    log.info("%s: adlake from %s", name, Path(__file__).parent)
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        log.error("%s: bad configuration: %s", name, exc)
        return 2
    from adlake import metrics  # local: keeps `--help` free of the Spark import

    sources = str(getattr(args, "source", None) or "all")
    started = time.monotonic()
    ok = False
    code = 1
    try:
        body(cfg)
        ok = True
    except LeaseHeldError as exc:  # expected when runs overlap: one line, no traceback
        log.error("%s (sources=%s) not started: %s", name, sources, exc)
        code = EXIT_LEASE_HELD
    except Exception:
        log.exception("%s failed (sources=%s)", name, sources)
    finally:
        # Also on failure, so the failure gauge and counter reach Prometheus.
        metrics.record_run(name, sources, time.monotonic() - started, ok=ok)
        where = metrics.publish(cfg.metrics, name, sources)
        if where:
            log.info("%s: metrics published to %s", name, where)
    return 0 if ok else code


def exit_with(code: int) -> None:
    """Flush logs and exit; a separate function so tests can call `main()` without exiting."""
    logging.shutdown()
    sys.exit(code)


def source_mode_parser(description: str, sources: tuple[str, ...]) -> argparse.ArgumentParser:
    """The flags of the bronze and silver jobs: --source, --mode and --trigger."""
    parser = base_parser(description)
    parser.add_argument("--source", choices=[*sources, "all"], default="all")
    parser.add_argument("--mode", choices=["batch", "stream"], default="batch")
    parser.add_argument(
        "--trigger", default=None, help="stream trigger: available-now or an interval such as 10s"
    )
    return parser


def parse_source_mode_args(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse and validate --trigger the same way the config's stream.trigger is validated."""
    args = parser.parse_args(argv)
    if args.trigger is not None:
        try:
            parse_trigger(args.trigger, "--trigger")
        except ValueError as exc:
            parser.error(str(exc))
    return args
