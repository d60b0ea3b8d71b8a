"""generate_landing: synthetic landing files with known, counted defects, and their manifest.

See docs/datagen.md for the layout and the manifest's counting contract.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import fastavro

from adlake.schemas import IMPRESSION_FIELDS
from adlake_datagen.avro_encoding import PARSED_BID_SCHEMA, encode_bid_request
from adlake_datagen.config import ContractMismatchError, DatagenConfig
from adlake_datagen.constants import (
    BID_REQUESTS,
    CLICKS_CONVERSIONS,
    CREATIVES_FILE,
    DRIFT_CSV_COLUMN,
    DRIFT_JSON_FIELD,
    IMPRESSIONS,
    MANIFEST_FILE,
    MANIFEST_VERSION,
    REFERENCE,
    SEED_BID_REQUESTS,
    STAGING_DIR,
)
from adlake_datagen.events import CSV_HEADER
from adlake_datagen.generator import IMPRESSION_KEYS, LandingGenerator
from adlake_datagen.sinks import publish

logger = logging.getLogger(__name__)

# The manifest's "generator": the package that wrote it.
GENERATOR: Final = "adlake_datagen"


def _check_contracts() -> None:
    """Fail fast when schemas.py moved on and the generator did not follow."""
    contract = tuple(f.name for f in IMPRESSION_FIELDS)
    if contract != IMPRESSION_KEYS or DRIFT_JSON_FIELD in contract:
        raise ContractMismatchError(
            f"IMPRESSION_FIELDS changed to {contract}; update LandingGenerator._impression"
        )
    if DRIFT_CSV_COLUMN in CSV_HEADER:
        raise ContractMismatchError("the CSV drift column is now a contract column")
    probes: list[Mapping[str, Any]] = [
        *SEED_BID_REQUESTS,
        {
            "request_id": "req-1",
            "timestamp": 1_793_500_000_123,
            "user_info": {"user_id": 123_456, "location": "DEU"},
            "auction_details": {"auction_id": 99_999_999, "bid_amount": 2.75},
            "ad_targeting": {"creative_id": 77, "website": "https://www.Example.com:443/path?q=1"},
            "device": {"device_type": "mobile", "os": None},
        },
    ]
    for probe in probes:
        expected = io.BytesIO()
        fastavro.schemaless_writer(expected, PARSED_BID_SCHEMA, dict(probe))
        if expected.getvalue() != encode_bid_request(probe):
            raise ContractMismatchError(
                "BID_REQUEST_AVRO_SCHEMA changed; update BidEncoder to match it"
            )


def _manifest(cfg: DatagenConfig, files: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "manifest_version": MANIFEST_VERSION,
        "generator": GENERATOR,
        "arguments": cfg.as_manifest_arguments(),
        "files": files,
        "totals": _totals(files),
    }


def _add_counts(into: dict[str, Any], counts: Mapping[str, Any]) -> None:
    for key, value in counts.items():
        if isinstance(value, Mapping):
            _add_counts(into.setdefault(key, {}), value)
        else:
            into[key] = into.get(key, 0) + value


def _totals(files: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    summed = (
        "records",
        "seed_records",
        "clean_records",
        "defects",
        "timestamp_formats",
        "clicks",
        "conversions",
        "readable_records",
    )
    totals: dict[str, Any] = {}
    everything: dict[str, Any] = {"files": 0}
    for entry in files.values():
        source_total = totals.setdefault(entry["source"], {"files": 0})
        source_total["files"] += 1
        everything["files"] += 1
        counts = {key: entry[key] for key in summed if key in entry}
        _add_counts(source_total, counts)
        if entry.get("truncated"):
            source_total["truncated_files"] = source_total.get("truncated_files", 0) + 1
        _add_counts(everything, {k: v for k, v in counts.items() if k in summed[:4]})
    if BID_REQUESTS in totals:
        totals[BID_REQUESTS].setdefault("truncated_files", 0)
    totals["all"] = everything
    return totals


def _owned_paths(out_dir: Path) -> list[str]:
    """Relative paths of files this generator writes that exist under out_dir."""
    owned = [
        p.relative_to(out_dir).as_posix()
        for source in (IMPRESSIONS, CLICKS_CONVERSIONS, BID_REQUESTS)
        for p in sorted((out_dir / source).glob("part-*"))
    ]
    owned += [rel for rel in (CREATIVES_FILE, MANIFEST_FILE) if (out_dir / rel).exists()]
    return owned


def generate_landing(config: DatagenConfig, out_dir: Path) -> dict[str, Any]:
    """Make out_dir hold exactly this run's landing files and `_manifest.json`; returns the
    manifest.

    Deterministic: the same config gives byte-identical files. Each file is staged and moved
    into place when complete, and a landed file with identical bytes is left untouched, so
    re-running with the same arguments changes nothing. Generator-named files of earlier runs
    that this run does not produce (`<source>/part-*`) are deleted; other files are kept.
    """
    cfg = config.resolved()
    _check_contracts()
    staging = out_dir / STAGING_DIR
    if staging.exists():
        shutil.rmtree(staging)  # left by an interrupted run
    for root in (out_dir, staging):
        for sub in (IMPRESSIONS, CLICKS_CONVERSIONS, BID_REQUESTS, REFERENCE):
            (root / sub).mkdir(parents=True, exist_ok=True)

    began = time.perf_counter()
    generator = LandingGenerator(cfg, out_dir)
    manifest = _manifest(cfg, generator.run())
    produced = {*generator.published, MANIFEST_FILE}
    for rel in _owned_paths(out_dir):
        if rel not in produced:
            logger.info("datagen: removing %s from an earlier run", rel)
            (out_dir / rel).unlink()
    # Published last: its presence means the landing set is complete.
    (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    publish(staging / MANIFEST_FILE, out_dir / MANIFEST_FILE)
    shutil.rmtree(staging)
    everything = manifest["totals"]["all"]
    logger.info(
        "datagen: %d files, %d records under %s in %.1f s",
        everything["files"],
        everything["records"],
        out_dir,
        time.perf_counter() - began,
    )
    return manifest


def read_manifest(out_dir: Path) -> dict[str, Any]:
    """The manifest a previous generate_landing run wrote under out_dir."""
    manifest: dict[str, Any] = json.loads((out_dir / MANIFEST_FILE).read_text(encoding="utf-8"))
    return manifest
