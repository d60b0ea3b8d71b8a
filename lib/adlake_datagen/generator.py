"""Synthetic landing data for AdLake: impressions (JSONL), clicks/conversions (CSV), bid requests
(Avro) and the creatives reference, with known, counted defects.

Why: ingestion, silver and attribution need realistic raw files whose flaws are known exactly.
Output is byte-identical for the same arguments (one seeded RNG, no wall clock), rows are
streamed to disk so memory stays flat from a handful to 10M+ impressions, and `_manifest.json`
states per file what was written so tests can reconcile against it.

Layout under the output directory; file i of each source holds what arrived in time window i
of `days` days from `start_date` (a UTC day, or a timezone-aware datetime such as "now minus
days" for data that ends now):
    impressions/part-00000.jsonl[.gz]  clicks_conversions/part-00000.csv
    bid_requests/part-00000.avro       reference/creatives.csv            _manifest.json
    bid_requests/part-0000K.retry.avro (truncated_avro_copies: a cut-off copy of file K)

Manifest: {"manifest_version", "generator", "arguments", "files": {relative path: entry},
"totals": {source: summed entry fields, "all": ...}}. Every entry has source, records,
seed_records, clean_records; source files add file_index, window_start, window_end (and *_ms),
defects {duplicate, late, schema_drift (not Avro), malformed {kind: count}}; JSONL and CSV add
timestamp_formats; CSV adds columns, clicks, conversions; Avro adds truncated,
readable_records, bytes (and bytes_before_truncation, truncated_at_byte when truncated).

Counting contract, per file:
  records == seed_records + clean_records + defects.duplicate + sum(defects.malformed.values())
`late` and `schema_drift` count clean records only. A record is late when its event time is at
least one day before its file's window_start_ms; seed records and duplicates are never counted
as late even when their timestamps are older. In the CSV file with the extra `channel` header
column every clean row counts as schema_drift. A truncated Avro file's counts describe what was
written before the cut; readable_records is what a reader gets before the damaged block.
A truncated copy (`copy_of` names the complete file, which lands too) is an upload cut off
and retried: its records are all duplicates of that file, counted up to the cut.
"""

from __future__ import annotations

import csv
import filecmp
import gzip
import hashlib
import io
import json
import logging
import math
import os
import random
import shutil
import struct
import time
import zlib
from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Final

import fastavro
from fastavro.write import Writer as AvroWriter

from adlake.schemas import (
    BID_REQUEST_AVRO_SCHEMA,
    CLICK_CONVERSION_FIELDS,
    CREATIVE_COLUMNS,
    IMPRESSION_FIELDS,
)

logger = logging.getLogger(__name__)

IMPRESSIONS: Final = "impressions"
CLICKS_CONVERSIONS: Final = "clicks_conversions"
BID_REQUESTS: Final = "bid_requests"
REFERENCE: Final = "reference"
CREATIVES_FILE: Final = "reference/creatives.csv"
MANIFEST_FILE: Final = "_manifest.json"
# Files are written here and moved into place when complete; ingestion never sees partial
# files (Spark file sources also skip paths starting with "_").
STAGING_DIR: Final = "_datagen_staging"
MANIFEST_VERSION: Final = 1

TIMESTAMP_FORMATS: Final = ("plain", "iso_offset", "iso_utc", "epoch_ms")
DEFAULT_TIMESTAMP_MIX: Final[Mapping[str, float]] = {
    "plain": 0.55,
    "iso_offset": 0.15,
    "iso_utc": 0.15,
    "epoch_ms": 0.15,
}
JSON_MALFORMED_KINDS: Final = ("broken_json", "wrong_type")
CSV_MALFORMED_KINDS: Final = ("missing_columns", "extra_columns", "wrong_type")
CONVERSION_TYPES: Final = ("signup", "purchase", "install", "lead")
CLICK: Final = "click"
DRIFT_JSON_FIELD: Final = "placement_id"
DRIFT_CSV_COLUMN: Final = "channel"

# The case-study examples, written verbatim at the top of the first file of each source.
SEED_IMPRESSIONS: Final[tuple[Mapping[str, Any], ...]] = (
    {
        "creative_id": 1,
        "user_id": 101,
        "timestamp": "2023-11-01 10:00:00",
        "website": "example.com",
    },
    {
        "creative_id": 2,
        "user_id": 102,
        "timestamp": "2023-11-01 10:05:00",
        "website": "example.org",
    },
)
# Only the case study's four columns; the other CSV columns are written empty.
SEED_CLICKS_CONVERSIONS: Final[tuple[Mapping[str, str], ...]] = (
    {
        "timestamp": "2023-11-01 10:02:00",
        "user_id": "101",
        "campaign_id": "1",
        "conversion_type": "signup",
    },
    {
        "timestamp": "2023-11-01 10:06:00",
        "user_id": "102",
        "campaign_id": "2",
        "conversion_type": "purchase",
    },
)
SEED_BID_REQUESTS: Final[tuple[Mapping[str, Any], ...]] = (
    {
        "request_id": None,
        "timestamp": None,
        "user_info": {"user_id": 201, "location": "USA"},
        "auction_details": {"auction_id": 1, "bid_amount": 0.1},
        "ad_targeting": {"creative_id": 3, "website": "example.net"},
        "device": None,
    },
    {
        "request_id": None,
        "timestamp": None,
        "user_info": {"user_id": 202, "location": "Canada"},
        "auction_details": {"auction_id": 2, "bid_amount": 0.15},
        "ad_targeting": {"creative_id": 4, "website": "example.org"},
        "device": None,
    },
)
# Creatives the seed records reference; always present in reference/creatives.csv.
SEED_CREATIVES: Final[tuple[Mapping[str, Any], ...]] = (
    {
        "creative_id": 1,
        "campaign_id": 1,
        "advertiser_id": 1,
        "creative_name": "Seed campaign 1 banner",
        "ad_format": "banner",
    },
    {
        "creative_id": 2,
        "campaign_id": 2,
        "advertiser_id": 1,
        "creative_name": "Seed campaign 2 banner",
        "ad_format": "banner",
    },
    {
        "creative_id": 3,
        "campaign_id": 1,
        "advertiser_id": 1,
        "creative_name": "Seed campaign 1 video",
        "ad_format": "video",
    },
    {
        "creative_id": 4,
        "campaign_id": 2,
        "advertiser_id": 1,
        "creative_name": "Seed campaign 2 native",
        "ad_format": "native",
    },
)

# Generated ids start above the seed ids so the case-study examples keep their meaning.
FIRST_ADVERTISER_ID: Final = 2
FIRST_CAMPAIGN_ID: Final = 3
FIRST_CREATIVE_ID: Final = 5
FIRST_AUCTION_ID: Final = 3
FIRST_USER_ID: Final = 1000  # seed users are 101, 102, 201, 202

_DAY_MS: Final = 86_400_000
_HOUR_MS: Final = 3_600_000
_MINUTE_MS: Final = 60_000
_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
_EPOCH_UTC: Final = datetime(1970, 1, 1, tzinfo=timezone.utc)

_AUCTION_SHARE: Final = 0.95  # the rest are direct (non-RTB) buys without an auction_id
RETRY_SUFFIX: Final = ".retry.avro"  # name of a truncated copy: part-0000K.retry.avro
_CAMPAIGN_ID_SHARE: Final = 0.6  # the rest rely on the creatives reference
_ORPHAN_SHARE: Final = 0.1  # conversions with no prior touch, relative to touched ones
_CASE_VARIANT_SHARE: Final = 0.03
_DUPLICATE_POOL_SIZE: Final = 1000
_JSON_FLUSH_LINES: Final = 8192
_AVRO_BLOCK_BYTES: Final = 64 * 1024
_AVRO_TRUNCATE_AT: Final = 0.6
_AD_FORMATS: Final = ("banner", "video", "native", "interstitial")
_OFFSETS_MIN: Final = (60, 120, -300, -480, 330, 540, -180)
_CHANNELS: Final = ("web", "app", "ctv", "")


class DatagenConfigError(ValueError):
    """A generator argument is out of range; the message names the argument."""


class ContractMismatchError(RuntimeError):
    """The generator no longer matches a field contract in adlake.schemas."""


@dataclass(frozen=True)
class DatagenConfig:
    """All generator knobs. None means "derive from the number of impressions" (see resolved)."""

    impressions: int = 10_000
    seed: int = 42
    files: int = 4
    days: int = 7
    start_date: date = date(2026, 11, 1)  # or a timezone-aware datetime
    users: int | None = None
    campaigns: int | None = None
    creatives_per_campaign: int = 3
    advertisers: int | None = None
    websites: int | None = None
    ctr: float = 0.01
    conversion_rate: float = 0.08
    view_through_rate: float = 0.0005
    # Share of bid requests whose auction_id shows up on an impression. The feed is the
    # auctions won; a few never render an impression (page left, ad blocked), as in real RTB.
    win_rate: float = 0.97
    duplicate_rate: float = 0.01
    malformed_rate: float = 0.01
    late_rate: float = 0.01
    schema_drift_rate: float = 0.01
    truncated_avro_files: int | None = None
    truncated_avro_copies: int = 0
    timestamp_mix: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_TIMESTAMP_MIX))
    gzip: bool = False
    include_seed_records: bool = True

    def resolved(self) -> DatagenConfig:
        """A copy with every derived default filled in and every knob validated."""
        n = self.impressions
        campaigns = self.campaigns if self.campaigns is not None else max(4, min(1000, n // 2500))
        out = replace(
            self,
            users=self.users if self.users is not None else max(100, n // 20),
            campaigns=campaigns,
            advertisers=(
                self.advertisers if self.advertisers is not None else max(2, campaigns // 4)
            ),
            websites=self.websites if self.websites is not None else max(20, min(5000, n // 400)),
            truncated_avro_files=(
                self.truncated_avro_files
                if self.truncated_avro_files is not None
                else (1 if self.files >= 2 else 0)
            ),
            timestamp_mix=_normalized_mix(self.timestamp_mix),
        )
        out._validate()
        return out

    def _validate(self) -> None:
        _require(self.impressions >= 0, "impressions", "must be >= 0")
        _require(self.files >= 1, "files", "must be >= 1")
        _require(self.days >= 1, "days", "must be >= 1")
        for name in ("users", "campaigns", "advertisers", "websites"):
            value = getattr(self, name)
            _require(value is not None and value >= 1, name, "must be >= 1")
        _require(self.creatives_per_campaign >= 1, "creatives_per_campaign", "must be >= 1")
        for name in (
            "ctr",
            "conversion_rate",
            "view_through_rate",
            "duplicate_rate",
            "malformed_rate",
            "late_rate",
            "schema_drift_rate",
        ):
            value = getattr(self, name)
            _require(0.0 <= value <= 1.0, name, "must be a fraction in [0, 1]")
        _require(0.0 < self.win_rate <= 1.0, "win_rate", "must be in (0, 1]")
        truncated = self.truncated_avro_files
        _require(
            truncated is not None and 0 <= truncated <= self.files,
            "truncated_avro_files",
            f"must be between 0 and files ({self.files})",
        )
        _require(
            0 <= self.truncated_avro_copies <= self.files,
            "truncated_avro_copies",
            f"must be between 0 and files ({self.files})",
        )
        if isinstance(self.start_date, datetime):
            _require(self.start_date.tzinfo is not None, "start_date", "needs a UTC offset")

    def as_manifest_arguments(self) -> dict[str, Any]:
        """The arguments as plain JSON values (no output path, so manifests stay comparable)."""
        return {
            "impressions": self.impressions,
            "seed": self.seed,
            "files": self.files,
            "days": self.days,
            "start_date": self.start_date.isoformat(),
            "users": self.users,
            "campaigns": self.campaigns,
            "creatives_per_campaign": self.creatives_per_campaign,
            "advertisers": self.advertisers,
            "websites": self.websites,
            "ctr": self.ctr,
            "conversion_rate": self.conversion_rate,
            "view_through_rate": self.view_through_rate,
            "win_rate": self.win_rate,
            "duplicate_rate": self.duplicate_rate,
            "malformed_rate": self.malformed_rate,
            "late_rate": self.late_rate,
            "schema_drift_rate": self.schema_drift_rate,
            "truncated_avro_files": self.truncated_avro_files,
            "truncated_avro_copies": self.truncated_avro_copies,
            "timestamp_mix": dict(self.timestamp_mix),
            "gzip": self.gzip,
            "include_seed_records": self.include_seed_records,
        }


def _require(ok: bool, name: str, problem: str) -> None:
    if not ok:
        raise DatagenConfigError(f"{name}: {problem}")


def _normalized_mix(mix: Mapping[str, float]) -> dict[str, float]:
    unknown = sorted(set(mix) - set(TIMESTAMP_FORMATS))
    _require(not unknown, "timestamp_mix", f"unknown formats {unknown}; use {TIMESTAMP_FORMATS}")
    _require(all(w >= 0 for w in mix.values()), "timestamp_mix", "weights must be >= 0")
    total = sum(mix.values())
    _require(total > 0, "timestamp_mix", "at least one weight must be > 0")
    return {name: mix.get(name, 0.0) / total for name in TIMESTAMP_FORMATS}


def parse_timestamp_mix(text: str) -> dict[str, float]:
    """Parse `plain=0.6,iso_offset=0.2,epoch_ms=0.2` (unnamed formats get weight 0)."""
    mix: dict[str, float] = {}
    for part in text.split(","):
        name, sep, weight = part.partition("=")
        _require(bool(sep), "timestamp_mix", f"expected name=weight, got {part!r}")
        try:
            mix[name.strip()] = float(weight)
        except ValueError:
            raise DatagenConfigError(f"timestamp_mix: weight {weight!r} is not a number") from None
    return _normalized_mix(mix)


# ----------------------------------------------------------------------------- bid encoding
# fastavro's generic writer resolves every union by validating the datum against each branch,
# which costs ~25 us per bid request on a small VM; bids are ~3x as many as impressions. So
# records are encoded here for this one schema and fastavro writes the container (header,
# deflate blocks, sync markers). `_check_contracts` compares both encoders before each run.

_PACK_DOUBLE = struct.Struct("<d").pack
_NULL: Final = b"\x00"
_SECOND: Final = b"\x02"  # union branch 1 (the non-null branch of ["null", T])


def _varint_slow(z: int) -> bytes:
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


# Varints by table: the final group(s) below 2**14, and 14-bit groups that are continued.
_VARINT_FINAL: Final = tuple(_varint_slow(z) for z in range(1 << 14))
_VARINT_CONTINUED: Final = tuple(
    bytes(((z & 0x7F) | 0x80, (z >> 7) | 0x80)) for z in range(1 << 14)
)


def _avro_long(n: int) -> bytes:
    z = (n << 1) ^ (n >> 63)  # zig-zag
    if z < 0x4000:
        return _VARINT_FINAL[z]
    parts = []
    while z >= 0x4000:
        parts.append(_VARINT_CONTINUED[z & 0x3FFF])
        z >>= 14
    parts.append(_VARINT_FINAL[z])
    return b"".join(parts)


def _avro_optional_string(s: str | None) -> bytes:
    if s is None:
        return _NULL
    data = s.encode("utf-8")
    return _SECOND + _avro_long(len(data)) + data


class _BidEncoder:
    """Encodes bid requests; memoizes the encodings of repeating strings (bounded)."""

    _MEMO_LIMIT: Final = 100_000

    def __init__(self) -> None:
        self._strings: dict[str | None, bytes] = {None: _NULL}
        self._devices: dict[tuple[str | None, str | None] | None, bytes] = {None: _NULL}

    def _string(self, s: str | None) -> bytes:
        encoded = self._strings.get(s)
        if encoded is None:
            encoded = _avro_optional_string(s)
            if len(self._strings) < self._MEMO_LIMIT:
                self._strings[s] = encoded
        return encoded

    def user_part(self, user_id: int, location: str | None) -> bytes:
        """The encoded user_info record."""
        return _avro_long(user_id) + self._string(location)

    def context_part(
        self, website: str | None, device: tuple[str | None, str | None] | None
    ) -> bytes:
        """The encoded ad_targeting.website and device fields (adjacent in the schema)."""
        device_bytes = self._devices.get(device)
        if device_bytes is None:
            assert device is not None
            device_bytes = _SECOND + self._string(device[0]) + self._string(device[1])
            self._devices[device] = device_bytes
        return self._string(website) + device_bytes

    def encode(
        self,
        request_id: str | None,
        timestamp_ms: int | None,
        user_part: bytes,
        auction_id: int,
        bid_amount: float,
        creative_id: int,
        context_part: bytes,
    ) -> bytes:
        if request_id is None:
            request_bytes = _NULL
        else:
            data = request_id.encode("utf-8")
            request_bytes = _SECOND + _avro_long(len(data)) + data
        return b"".join(
            (
                request_bytes,
                _NULL if timestamp_ms is None else _SECOND + _avro_long(timestamp_ms),
                user_part,
                _avro_long(auction_id),
                _PACK_DOUBLE(bid_amount),
                _avro_long(creative_id),
                context_part,
            )
        )


def encode_bid_request(record: Mapping[str, Any]) -> bytes:
    """Avro binary of one bid request (BID_REQUEST_AVRO_SCHEMA); timestamp as millis or datetime."""
    ts = record.get("timestamp")
    if isinstance(ts, datetime):
        ts = (ts - _EPOCH_UTC) // timedelta(milliseconds=1)
    device = record.get("device")
    encoder = _BidEncoder()
    return encoder.encode(
        record.get("request_id"),
        ts,
        encoder.user_part(record["user_info"]["user_id"], record["user_info"].get("location")),
        record["auction_details"]["auction_id"],
        record["auction_details"]["bid_amount"],
        record["ad_targeting"]["creative_id"],
        encoder.context_part(
            record["ad_targeting"].get("website"),
            None if device is None else (device.get("device_type"), device.get("os")),
        ),
    )


_PARSED_BID_SCHEMA = fastavro.parse_schema(BID_REQUEST_AVRO_SCHEMA)


def _check_contracts() -> None:
    """Fail fast when schemas.py moved on and the generator did not follow."""
    contract = tuple(f.name for f in IMPRESSION_FIELDS)
    if contract != _IMPRESSION_KEYS or DRIFT_JSON_FIELD in contract:
        raise ContractMismatchError(
            f"IMPRESSION_FIELDS changed to {contract}; update _LandingGenerator._impression"
        )
    if DRIFT_CSV_COLUMN in _CSV_HEADER:
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
        fastavro.schemaless_writer(expected, _PARSED_BID_SCHEMA, dict(probe))
        if expected.getvalue() != encode_bid_request(probe):
            raise ContractMismatchError(
                "BID_REQUEST_AVRO_SCHEMA changed; update _BidEncoder to match it"
            )


@dataclass
class _EncodedBlock:
    """Duck-types fastavro's read.Block for Writer.write_block: pre-encoded records."""

    bytes_: io.BytesIO
    num_records: int


# ----------------------------------------------------------------------------- catalog
@dataclass(frozen=True)
class _Country:
    alpha2: str
    alpha3: str
    name: str
    weight: int
    regions: tuple[str, ...]


_COUNTRIES: Final = (
    _Country("US", "USA", "United States", 34, ("California", "New York", "Texas", "Florida")),
    _Country("CA", "CAN", "Canada", 9, ("Ontario", "Quebec", "British Columbia")),
    _Country("GB", "GBR", "United Kingdom", 9, ("England", "Scotland", "Wales")),
    _Country("DE", "DEU", "Germany", 9, ("Bavaria", "Berlin", "Hesse")),
    _Country("FR", "FRA", "France", 7, ("Ile-de-France", "Occitanie")),
    _Country("ES", "ESP", "Spain", 5, ("Madrid", "Catalonia")),
    _Country("IT", "ITA", "Italy", 5, ("Lazio", "Lombardy")),
    _Country("NL", "NLD", "Netherlands", 4, ("North Holland", "Utrecht")),
    _Country("BR", "BRA", "Brazil", 5, ("Sao Paulo", "Rio de Janeiro")),
    _Country("MX", "MEX", "Mexico", 4, ("Jalisco", "Nuevo Leon")),
    _Country("IN", "IND", "India", 5, ("Maharashtra", "Karnataka")),
    _Country("JP", "JPN", "Japan", 4, ("Tokyo", "Osaka")),
)
# (device_type, weight in %, operating systems)
_DEVICES: Final = (
    ("mobile", 55, ("iOS", "Android")),
    ("desktop", 35, ("Windows", "macOS", "Linux")),
    ("tablet", 7, ("iPadOS", "Android")),
    ("ctv", 3, ("tvOS", "Roku OS", "Tizen")),
)
_BROWSERS: Final[Mapping[str, tuple[str, ...]]] = {
    "iOS": ("Safari", "Safari", "Chrome"),
    "Android": ("Chrome", "Chrome", "Samsung Internet"),
    "Windows": ("Chrome", "Edge", "Firefox"),
    "macOS": ("Safari", "Chrome", "Firefox"),
    "Linux": ("Firefox", "Chrome"),
    "iPadOS": ("Safari",),
}
# Users keep one country and device across events: both come from a hash of the user id,
# so no per-user state is stored.
_COUNTRY_SLOTS: Final = tuple(c for c in _COUNTRIES for _ in range(c.weight))
_DEVICE_SLOTS: Final = tuple(d for d in _DEVICES for _ in range(d[1]))
_SITE_WORDS_A: Final = (
    "news",
    "daily",
    "tech",
    "sport",
    "game",
    "food",
    "travel",
    "money",
    "health",
    "style",
    "auto",
    "movie",
    "music",
    "home",
    "weather",
    "science",
    "city",
    "world",
    "local",
    "smart",
)
_SITE_WORDS_B: Final = (
    "hub",
    "site",
    "times",
    "post",
    "zone",
    "wire",
    "today",
    "point",
    "guide",
    "lab",
    "corner",
    "digest",
    "world",
    "feed",
    "mag",
    "central",
    "planet",
    "spot",
    "line",
    "watch",
)
_TLDS: Final = ("com", "org", "net", "io", "co.uk")


@dataclass(frozen=True)
class _Creative:
    creative_id: int
    campaign_id: int
    advertiser_id: int
    name: str
    ad_format: str


@dataclass(frozen=True)
class _Campaign:
    campaign_id: int
    objective: str  # the conversion type most of its conversions have
    direct_cost: float  # price of a direct (non-auction) impression


class _Catalog:
    """Advertisers -> campaigns -> creatives, plus websites; all small, built once per run."""

    def __init__(self, cfg: DatagenConfig, rng: random.Random) -> None:
        assert cfg.campaigns is not None and cfg.advertisers is not None
        assert cfg.websites is not None
        self.campaigns: dict[int, _Campaign] = {}
        self.creatives: list[_Creative] = []
        cumulative: list[float] = []
        total = 0.0
        next_creative = FIRST_CREATIVE_ID
        for c in range(cfg.campaigns):
            campaign_id = FIRST_CAMPAIGN_ID + c
            advertiser_id = FIRST_ADVERTISER_ID + rng.randrange(cfg.advertisers)
            # Budgets are lognormal: a few campaigns buy most of the traffic.
            budget = rng.lognormvariate(0.0, 1.0)
            self.campaigns[campaign_id] = _Campaign(
                campaign_id,
                CONVERSION_TYPES[rng.randrange(len(CONVERSION_TYPES))],
                round(rng.uniform(1.0, 4.0) / 1000, 6),
            )
            for k in range(cfg.creatives_per_campaign):
                ad_format = _AD_FORMATS[rng.randrange(len(_AD_FORMATS))]
                self.creatives.append(
                    _Creative(
                        next_creative,
                        campaign_id,
                        advertiser_id,
                        f"Campaign {campaign_id} {ad_format} {k + 1}",
                        ad_format,
                    )
                )
                next_creative += 1
                total += budget * rng.uniform(0.5, 1.5)
                cumulative.append(total)
        self.creative_cumulative = cumulative
        self.creative_total = total
        self.domains = _domain_names(cfg.websites)
        rng.shuffle(self.domains)  # popularity rank must not follow the naming pattern

    def reference_rows(self) -> list[tuple[Any, ...]]:
        rows = [tuple(seed[c] for c in CREATIVE_COLUMNS) for seed in SEED_CREATIVES]
        rows.extend(
            (c.creative_id, c.campaign_id, c.advertiser_id, c.name, c.ad_format)
            for c in self.creatives
        )
        return rows


def _domain_names(n: int) -> list[str]:
    names = ["example.com", "example.org", "example.net", "news-site.org"][:n]
    a, b, t = len(_SITE_WORDS_A), len(_SITE_WORDS_B), len(_TLDS)
    i = 0
    while len(names) < n:
        rep = i // (a * b * t)
        suffix = str(rep + 1) if rep else ""
        first, second = _SITE_WORDS_A[i % a], _SITE_WORDS_B[(i // a) % b]
        names.append(f"{first}-{second}{suffix}.{_TLDS[(i // (a * b)) % t]}")
        i += 1
    return names


# ----------------------------------------------------------------------------- time
@dataclass(frozen=True)
class _Window:
    """The event-time range one file of each source covers (files arrive in window order)."""

    index: int
    start_ms: int
    end_ms: int


class _TimestampRenderer:
    """Renders epoch millis in the landing formats; dates are cached (few distinct days)."""

    def __init__(self, mix: Mapping[str, float], rng: random.Random) -> None:
        self._rng = rng
        self._dates: dict[int, str] = {}
        self._thresholds: list[tuple[float, str]] = []
        acc = 0.0
        for name in TIMESTAMP_FORMATS:
            acc += mix[name]
            if mix[name] > 0:
                self._thresholds.append((acc, name))

    def _date_time(self, sec: int) -> tuple[str, str]:
        day, sod = divmod(sec, 86_400)
        day_text = self._dates.get(day)
        if day_text is None:
            day_text = date.fromordinal(_EPOCH_ORDINAL + day).isoformat()
            self._dates[day] = day_text
        hours, rest = divmod(sod, 3600)
        minutes, seconds = divmod(rest, 60)
        return day_text, f"{hours:02d}:{minutes:02d}:{seconds:02d}"

    def plain(self, ts_ms: int) -> str:
        day, clock = self._date_time(ts_ms // 1000)
        return f"{day} {clock}"

    def render(self, ts_ms: int) -> tuple[str | int, str]:
        """(value, format name): epoch millis stay an int so JSON writes a number."""
        u = self._rng.random()
        name = self._thresholds[-1][1]
        for bound, candidate in self._thresholds:
            if u < bound:
                name = candidate
                break
        if name == "plain":
            return self.plain(ts_ms), name
        if name == "epoch_ms":
            return ts_ms, name
        if name == "iso_utc":
            day, clock = self._date_time(ts_ms // 1000)
            return f"{day}T{clock}Z", name
        offset = _OFFSETS_MIN[self._rng.randrange(len(_OFFSETS_MIN))]
        day, clock = self._date_time(ts_ms // 1000 + offset * 60)
        sign = "+" if offset >= 0 else "-"
        hours, minutes = divmod(abs(offset), 60)
        return f"{day}T{clock}{sign}{hours:02d}:{minutes:02d}", name


def _iso_utc_ms(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ----------------------------------------------------------------------------- sinks
@dataclass
class _FileStats:
    """What one landing file holds; becomes its manifest entry."""

    path: str
    source: str
    window: _Window | None
    malformed_kinds: tuple[str, ...]
    records: int = 0
    seed_records: int = 0
    clean_records: int = 0
    duplicate: int = 0
    late: int = 0
    schema_drift: int = 0
    malformed: dict[str, int] = field(default_factory=dict)
    timestamp_formats: dict[str, int] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.malformed = {kind: 0 for kind in self.malformed_kinds}
        # Event times at or before this are late for this file.
        self.late_at_or_before_ms = (
            self.window.start_ms - _DAY_MS if self.window is not None else -(2**63)
        )

    def count_clean(self, ts_ms: int, fmt: str | None, drift: bool) -> None:
        self.records += 1
        self.clean_records += 1
        if ts_ms <= self.late_at_or_before_ms:
            self.late += 1
        if drift:
            self.schema_drift += 1
        if fmt is not None and self.timestamp_formats is not None:
            self.timestamp_formats[fmt] += 1

    def to_manifest(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"source": self.source}
        if self.window is not None:
            entry.update(
                file_index=self.window.index,
                window_start=_iso_utc_ms(self.window.start_ms),
                window_end=_iso_utc_ms(self.window.end_ms),
                window_start_ms=self.window.start_ms,
                window_end_ms=self.window.end_ms,
            )
        entry.update(
            records=self.records,
            seed_records=self.seed_records,
            clean_records=self.clean_records,
        )
        if self.window is not None:
            defects: dict[str, Any] = {"duplicate": self.duplicate, "late": self.late}
            if self.source != BID_REQUESTS:
                defects["schema_drift"] = self.schema_drift
            defects["malformed"] = dict(self.malformed)
            entry["defects"] = defects
        if self.timestamp_formats is not None:
            entry["timestamp_formats"] = dict(self.timestamp_formats)
        entry.update(self.extra)
        return entry


class _JsonlSink:
    """Impression lines, buffered and written as bytes (optionally gzip with a fixed mtime)."""

    def __init__(self, path: Path, stats: _FileStats, use_gzip: bool) -> None:
        self.stats = stats
        self._raw = open(path, "wb")  # noqa: SIM115 - closed in close()
        # mtime=0 and no file name in the gzip header keep the output byte-identical.
        self._gz = (
            gzip.GzipFile(filename="", mode="wb", compresslevel=6, fileobj=self._raw, mtime=0)
            if use_gzip
            else None
        )
        self._lines: list[str] = []

    def _add(self, line: str) -> None:
        self._lines.append(line)
        if len(self._lines) >= _JSON_FLUSH_LINES:
            self._flush()

    def _flush(self) -> None:
        if self._lines:
            self._lines.append("")  # trailing newline after the last line
            data = "\n".join(self._lines).encode("utf-8")
            if self._gz is not None:
                self._gz.write(data)
            else:
                self._raw.write(data)
            self._lines = []

    def write_seed(self, line: str) -> None:
        self._add(line)
        self.stats.records += 1
        self.stats.seed_records += 1

    def write_clean(self, line: str, ts_ms: int, fmt: str, drift: bool) -> None:
        self._add(line)
        self.stats.count_clean(ts_ms, fmt, drift)

    def write_duplicate(self, line: str) -> None:
        self._add(line)
        self.stats.records += 1
        self.stats.duplicate += 1

    def write_malformed(self, kind: str, line: str) -> None:
        self._add(line)
        self.stats.records += 1
        self.stats.malformed[kind] += 1

    def close(self) -> None:
        self._flush()
        if self._gz is not None:
            self._gz.close()
        self._raw.close()


def _channel_for(event_id: str) -> str:
    # A function of the row, so a re-sent row is identical in the drifted file too.
    return _CHANNELS[zlib.crc32(event_id.encode("utf-8")) % len(_CHANNELS)]


class _CsvSink:
    """Click/conversion rows under a header; a drifted file carries one extra column."""

    def __init__(self, path: Path, stats: _FileStats, columns: tuple[str, ...]) -> None:
        self.stats = stats
        self._drifted = len(columns) > len(CLICK_CONVERSION_FIELDS)
        self._fo = open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115
        self._writer = csv.writer(self._fo, lineterminator="\n")
        self._writer.writerow(columns)

    def fit(self, row: Sequence[str]) -> list[str]:
        """The row padded to this file's header (the drift column for drifted files)."""
        return [*row, _channel_for(row[0])] if self._drifted else list(row)

    def write_seed(self, row: Sequence[str]) -> None:
        self._writer.writerow(self.fit(row))
        self.stats.records += 1
        self.stats.seed_records += 1

    def write_clean(self, row: Sequence[str], ts_ms: int, fmt: str, is_click: bool) -> None:
        self._writer.writerow(self.fit(row))
        self.stats.count_clean(ts_ms, fmt, self._drifted)
        self.stats.extra["clicks" if is_click else "conversions"] += 1

    def write_duplicate(self, row: Sequence[str]) -> None:
        self._writer.writerow(self.fit(row))
        self.stats.records += 1
        self.stats.duplicate += 1

    def write_malformed(self, kind: str, row: Sequence[str]) -> None:
        self._writer.writerow(row)
        self.stats.records += 1
        self.stats.malformed[kind] += 1

    def close(self) -> None:
        self._fo.close()


class _AvroSink:
    """Bid requests in an Avro container (deflate); remembers block ends to truncate mid-block."""

    def __init__(self, path: Path, stats: _FileStats, sync_marker: bytes) -> None:
        self.stats = stats
        self._path = path
        self._fo = open(path, "wb")  # noqa: SIM115
        self._writer = AvroWriter(
            self._fo, _PARSED_BID_SCHEMA, codec="deflate", sync_marker=sync_marker
        )
        self._block: list[bytes] = []
        self._block_bytes = 0
        self._written = 0
        # (file offset where a block ends, records in the file up to that offset)
        self._block_ends: list[tuple[int, int]] = [(self._fo.tell(), 0)]

    def _add(self, record: bytes) -> None:
        self._block.append(record)
        self._block_bytes += len(record)
        if self._block_bytes >= _AVRO_BLOCK_BYTES:
            self._flush_block()

    def _flush_block(self) -> None:
        if not self._block:
            return
        self._writer.write_block(_EncodedBlock(io.BytesIO(b"".join(self._block)), len(self._block)))
        self._written += len(self._block)
        self._block_ends.append((self._fo.tell(), self._written))
        self._block = []
        self._block_bytes = 0

    def write_seed(self, record: bytes) -> None:
        self._add(record)
        self.stats.records += 1
        self.stats.seed_records += 1

    def write_clean(self, record: bytes, ts_ms: int) -> None:
        # The hot path (three bid requests per impression): _add and count_clean inlined.
        self._block.append(record)
        self._block_bytes += len(record)
        if self._block_bytes >= _AVRO_BLOCK_BYTES:
            self._flush_block()
        stats = self.stats
        stats.records += 1
        stats.clean_records += 1
        if ts_ms <= stats.late_at_or_before_ms:
            stats.late += 1

    def write_duplicate(self, record: bytes) -> None:
        self._add(record)
        self.stats.records += 1
        self.stats.duplicate += 1

    def close(
        self, truncate: bool, copy: _FileStats | None = None, copy_path: Path | None = None
    ) -> None:
        """Finish the file; `truncate` cuts it mid-block, `copy` also writes a cut-off copy."""
        self._flush_block()
        self._writer.flush()
        self._fo.close()
        size = self._path.stat().st_size
        cut, readable = self._cut_point(size)
        if copy is not None and copy_path is not None:
            with open(self._path, "rb") as src, open(copy_path, "wb") as dst:
                dst.write(src.read(cut))
            copy.records = copy.duplicate = readable
            copy.extra.update(
                copy_of=self.stats.path,
                truncated=True,
                readable_records=readable,
                bytes_before_truncation=size,
                truncated_at_byte=cut,
                bytes=cut,
            )
        self.stats.extra.update(truncated=truncate, readable_records=self.stats.records)
        if truncate:
            os.truncate(self._path, cut)
            self.stats.extra.update(
                readable_records=readable, bytes_before_truncation=size, truncated_at_byte=cut
            )
        self.stats.extra["bytes"] = self._path.stat().st_size

    def _cut_point(self, size: int) -> tuple[int, int]:
        """Middle of the block holding the 60% mark: inside compressed data, not a sync marker,
        so every Avro reader yields exactly the records of the blocks before it."""
        target = int(size * _AVRO_TRUNCATE_AT)
        ends = [offset for offset, _ in self._block_ends]
        k = bisect_right(ends, target)
        if k == 0 or k >= len(ends):  # no records at all: the cut falls in the header
            return target, 0
        return (ends[k - 1] + ends[k]) // 2, self._block_ends[k - 1][1]


class _Pool:
    """Uniform sample (reservoir) of already-written records to re-send as duplicates.

    Algorithm L: after the pool fills, only the records that enter it cost random draws.
    """

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._items: list[Any] = []
        self._seen = 0
        self._next = 0
        self._w = 1.0

    def offer(self, item: Any) -> None:
        self._seen += 1
        if len(self._items) < _DUPLICATE_POOL_SIZE:
            self._items.append(item)
            if len(self._items) == _DUPLICATE_POOL_SIZE:
                self._skip()
        elif self._seen == self._next:
            self._items[int(self._rng.random() * _DUPLICATE_POOL_SIZE)] = item
            self._skip()

    def _skip(self) -> None:
        r = self._rng.random  # "or 0.5" keeps log() defined if random() returns exactly 0
        self._w *= math.exp(math.log(r() or 0.5) / _DUPLICATE_POOL_SIZE)
        self._next = self._seen + int(math.log(r() or 0.5) / math.log1p(-self._w)) + 1

    def sample(self) -> Any | None:
        return self._items[int(self._rng.random() * len(self._items))] if self._items else None


# ----------------------------------------------------------------------------- generator
@dataclass(frozen=True)
class _Event:
    """A click or conversion waiting for the file of the window it arrives in."""

    ts_ms: int
    fmt: str
    row: tuple[str, ...]  # CLICK_CONVERSION_FIELDS order
    is_click: bool


_CSV_HEADER: Final = tuple(f.name for f in CLICK_CONVERSION_FIELDS)
# Keys _impression writes, in order; checked against IMPRESSION_FIELDS before each run.
_IMPRESSION_KEYS: Final = (
    "impression_id",
    "creative_id",
    "user_id",
    "timestamp",
    "website",
    "auction_id",
    "campaign_id",
    "cost",
    "device_type",
    "os",
    "browser",
    "country",
    "region",
)
_CASE_VARIANTS: Final[Mapping[str, tuple[str, ...]]] = {
    CLICK: (" click ", "Click", "CLICK"),
    "purchase": ("Purchase", " purchase", "PURCHASE"),
    "signup": ("Signup", "SignUp "),
    "install": ("Install", "INSTALL"),
    "lead": ("Lead", " lead"),
}


class _LandingGenerator:
    """Walks the windows in arrival order, writing file i of every source for window i.

    State kept across windows is bounded: a duplicate pool per source and the clicks and
    conversions whose event (or late arrival) time falls in a later window.
    """

    # The files of the window being written (set by _write_window).
    _window: _Window
    _imp: _JsonlSink
    _evt: _CsvSink
    _bid: _AvroSink

    def __init__(self, cfg: DatagenConfig, out_dir: Path) -> None:
        assert cfg.users is not None and cfg.truncated_avro_files is not None
        self._cfg = cfg
        self._out = out_dir
        self._staging = out_dir / STAGING_DIR
        self.published: list[str] = []
        self._not_arrived = 0
        self._rng = random.Random(f"adlake-datagen:{cfg.seed}")
        self._r = self._rng.random
        self._catalog = _Catalog(cfg, random.Random(f"adlake-datagen:{cfg.seed}:catalog"))
        self._ts = _TimestampRenderer(cfg.timestamp_mix, self._rng)

        start_ms = _start_ms(cfg.start_date)
        span = cfg.days * _DAY_MS
        bounds = [start_ms + span * i // cfg.files for i in range(cfg.files + 1)]
        self._windows = [_Window(i, bounds[i], bounds[i + 1]) for i in range(cfg.files)]
        self._starts = bounds[:-1]
        self._end_ms = bounds[-1]
        self._drift_csv_index = cfg.files // 2 if cfg.files >= 2 and cfg.schema_drift_rate else -1

        self._n_users = cfg.users
        self._user_head = max(5.0, cfg.users / 1000)
        self._user_log = math.log1p(cfg.users / self._user_head)
        self._user_stride = _coprime_stride(cfg.users)
        self._orphan_users = max(10, cfg.users // 10)
        n_sites = len(self._catalog.domains)
        self._site_head = 2.0
        self._site_log = math.log1p(n_sites / self._site_head)
        self._lost_per_win = (1.0 - cfg.win_rate) / cfg.win_rate
        self._lost_carry = 0.0
        self._orphan_rate = _ORPHAN_SHARE * (cfg.ctr * cfg.conversion_rate + cfg.view_through_rate)

        self._next_impression = 1
        self._next_event = 1
        self._next_auction = FIRST_AUCTION_ID
        self._pending: dict[int, list[_Event]] = {}
        self._impression_pool = _Pool(self._rng)
        self._event_pool = _Pool(self._rng)
        self._bid_pool = _Pool(self._rng)
        self._encoder = _BidEncoder()
        self._stats: list[_FileStats] = []

    # -- draws -------------------------------------------------------------------------
    def _draw_user(self) -> int:
        # Log-uniform rank with a flattened head: heavy-tailed like Zipf, O(1) and stateless.
        rank = int(self._user_head * (math.exp(self._r() * self._user_log) - 1.0))
        rank = min(rank, self._n_users - 1)
        return FIRST_USER_ID + (rank * self._user_stride) % self._n_users

    def _draw_creative(self) -> _Creative:
        cat = self._catalog
        i = bisect_right(cat.creative_cumulative, self._r() * cat.creative_total)
        return cat.creatives[min(i, len(cat.creatives) - 1)]

    def _draw_domain(self) -> str:
        domains = self._catalog.domains
        rank = int(self._site_head * (math.exp(self._r() * self._site_log) - 1.0))
        return domains[min(rank, len(domains) - 1)]

    def _raw_website(self, domain: str) -> str:
        """The domain as some producer wrote it; silver must canonicalize all of these."""
        u = self._r()
        if u < 0.55:
            return domain
        if u < 0.65:
            return f"www.{domain}"
        if u < 0.75:
            return f"https://www.{domain.capitalize()}:443/path?q={int(self._r() * 9) + 1}"
        if u < 0.83:
            return f"http://{domain}/"
        if u < 0.90:
            return f"WWW.{domain}/"
        if u < 0.96:
            return f"https://{domain}/articles/{int(self._r() * 900) + 100}"
        return domain.upper()

    def _country_text(self, country: _Country, alpha2_share: float, alpha3_share: float) -> str:
        u = self._r()
        if u < alpha2_share:
            return country.alpha2
        if u < alpha2_share + alpha3_share:
            return country.alpha3
        return country.name

    def _bid_amount(self) -> float:
        u = self._r()
        return (5_000 + int(75_000 * u * u * u)) / 10_000  # CPM in [0.5, 8), most bids low

    # -- windows -----------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        self._write_reference()
        for window in self._windows:
            self._write_window(window)
        logger.info(
            "datagen: %d clicks/conversions happen after the last window; not written",
            self._not_arrived,
        )
        return self._manifest()

    def _write_reference(self) -> None:
        path = self._staging / CREATIVES_FILE
        rows = self._catalog.reference_rows()
        with open(path, "w", encoding="utf-8", newline="") as fo:
            writer = csv.writer(fo, lineterminator="\n")
            writer.writerow(CREATIVE_COLUMNS)
            writer.writerows(rows)
        stats = _FileStats(CREATIVES_FILE, REFERENCE, None, ())
        stats.records = len(rows)
        stats.seed_records = len(SEED_CREATIVES)
        stats.clean_records = len(rows) - len(SEED_CREATIVES)
        stats.extra["columns"] = list(CREATIVE_COLUMNS)
        self._stats.append(stats)
        self._publish(CREATIVES_FILE)

    def _publish(self, rel: str) -> None:
        """Move a finished file into place, leaving an identical landed file untouched."""
        _publish(self._staging / rel, self._out / rel)
        self.published.append(rel)

    def _write_window(self, window: _Window) -> None:
        cfg = self._cfg
        began = time.perf_counter()
        name = f"part-{window.index:05d}"
        imp_rel = f"{IMPRESSIONS}/{name}.jsonl" + (".gz" if cfg.gzip else "")
        evt_rel = f"{CLICKS_CONVERSIONS}/{name}.csv"
        bid_rel = f"{BID_REQUESTS}/{name}.avro"
        imp_stats = _FileStats(imp_rel, IMPRESSIONS, window, JSON_MALFORMED_KINDS)
        imp_stats.timestamp_formats = dict.fromkeys(TIMESTAMP_FORMATS, 0)
        evt_stats = _FileStats(evt_rel, CLICKS_CONVERSIONS, window, CSV_MALFORMED_KINDS)
        evt_stats.timestamp_formats = dict.fromkeys(TIMESTAMP_FORMATS, 0)
        columns = _CSV_HEADER + (
            (DRIFT_CSV_COLUMN,) if window.index == self._drift_csv_index else ()
        )
        evt_stats.extra.update(columns=list(columns), clicks=0, conversions=0)
        bid_stats = _FileStats(bid_rel, BID_REQUESTS, window, ())
        self._stats += [imp_stats, evt_stats, bid_stats]

        self._imp = _JsonlSink(self._staging / imp_rel, imp_stats, cfg.gzip)
        self._evt = _CsvSink(self._staging / evt_rel, evt_stats, columns)
        sync = hashlib.sha256(f"adlake-datagen:{cfg.seed}:{bid_rel}".encode()).digest()[:16]
        self._bid = _AvroSink(self._staging / bid_rel, bid_stats, sync)
        self._window = window

        if window.index == 0 and cfg.include_seed_records:
            self._write_seeds()
        for event in self._pending.pop(window.index, []):
            self._write_event(event)
        n = cfg.impressions * (window.index + 1) // cfg.files
        n -= cfg.impressions * window.index // cfg.files
        for k in range(n):
            self._impression(
                window.start_ms + (window.end_ms - window.start_ms) * k // n,
                (window.end_ms - window.start_ms) / n,
            )

        self._imp.close()
        self._evt.close()
        assert cfg.truncated_avro_files is not None
        published = [imp_rel, evt_rel, bid_rel]
        copy = None
        if window.index >= cfg.files - cfg.truncated_avro_copies:
            copy = _FileStats(f"{BID_REQUESTS}/{name}{RETRY_SUFFIX}", BID_REQUESTS, window, ())
            published.append(copy.path)
            self._stats.append(copy)
        self._bid.close(
            truncate=window.index >= cfg.files - cfg.truncated_avro_files,
            copy=copy,
            copy_path=self._staging / copy.path if copy is not None else None,
        )
        for rel in published:
            self._publish(rel)
        for stats in (imp_stats, evt_stats, bid_stats):
            logger.info(
                "datagen: wrote %s records=%d duplicate=%d malformed=%d late=%d",
                stats.path,
                stats.records,
                stats.duplicate,
                sum(stats.malformed.values()),
                stats.late,
            )
        logger.info("datagen: window %d done in %.1f s", window.index, time.perf_counter() - began)

    def _write_seeds(self) -> None:
        for seed in SEED_IMPRESSIONS:
            self._imp.write_seed(json.dumps(dict(seed)))
        for row in SEED_CLICKS_CONVERSIONS:
            self._evt.write_seed(tuple(row.get(column, "") for column in _CSV_HEADER))
        for record in SEED_BID_REQUESTS:
            self._bid.write_seed(encode_bid_request(record))

    # -- impressions and bids ----------------------------------------------------------
    def _impression(self, slot_start_ms: int, slot_ms: float) -> None:
        """One impression at a random time in its slot (or 1-3 days earlier when late),
        with its bid requests and any click and conversions it leads to."""
        r = self._r
        cfg = self._cfg
        ts = self._late_ts() if r() < cfg.late_rate else slot_start_ms + int(r() * slot_ms)
        user_id = self._draw_user()
        creative = self._draw_creative()
        domain = self._draw_domain()
        ts_value, fmt = self._ts.render(ts)
        impression_id = f"imp-{self._next_impression}"
        self._next_impression += 1
        obj: dict[str, Any] = {
            "impression_id": impression_id,
            "creative_id": creative.creative_id,
            "user_id": user_id,
            "timestamp": ts_value,
            "website": self._raw_website(domain),
        }
        auction_id = 0
        bid = 0.0
        if r() < _AUCTION_SHARE:
            auction_id = self._next_auction
            self._next_auction += 1
            bid = self._bid_amount()
            obj["auction_id"] = auction_id
            cost = round(bid * (0.55 + 0.45 * r()) / 1000, 6)  # second price <= bid, per mille
        else:
            cost = self._catalog.campaigns[creative.campaign_id].direct_cost
        if r() < _CAMPAIGN_ID_SHARE:
            obj["campaign_id"] = creative.campaign_id
        if r() < 0.97:
            obj["cost"] = cost
        country, device_type, os_name, browser, region = _profile(user_id)
        if r() < 0.92:
            obj["device_type"] = device_type
            obj["os"] = os_name
        if browser is not None and r() < 0.85:
            obj["browser"] = browser
        if r() < 0.95:
            obj["country"] = self._country_text(country, 0.45, 0.25)
        if r() < 0.7:
            obj["region"] = region
        drift = r() < cfg.schema_drift_rate
        if drift:
            obj[DRIFT_JSON_FIELD] = f"p-{int(r() * 40) + 1}"
        line = json.dumps(obj)
        self._imp.write_clean(line, ts, fmt, drift)
        if r() < cfg.duplicate_rate:
            resent = self._impression_pool.sample()
            if resent is not None:
                self._imp.write_duplicate(resent)
        self._impression_pool.offer(line)
        if r() < cfg.malformed_rate:
            self._malformed_impression(obj)

        if auction_id:
            self._page_bids(
                ts, auction_id, bid, user_id, creative, domain, country, (device_type, os_name)
            )
        self._touch_events(ts, user_id, creative)

    def _malformed_impression(self, clean: dict[str, Any]) -> None:
        obj = dict(clean)
        obj["impression_id"] = f"imp-{self._next_impression}"  # never mistaken for a duplicate
        self._next_impression += 1
        if self._r() < 0.5:
            line = json.dumps(obj)
            # Any proper prefix of a JSON object is invalid JSON.
            self._imp.write_malformed(
                "broken_json", line[: self._rng.randrange(len(line) // 3, len(line) - 1)]
            )
            return
        u = self._r()
        if u < 1 / 3:
            obj["user_id"] = {"id": obj["user_id"]}
        elif u < 2 / 3:
            obj["creative_id"] = [obj["creative_id"]]
        else:
            obj["cost"] = "abc"
        self._imp.write_malformed("wrong_type", json.dumps(obj))

    def _write_bid(self, record: bytes, ts: int) -> None:
        self._bid.write_clean(record, ts)
        if self._r() < self._cfg.duplicate_rate:
            resent = self._bid_pool.sample()
            if resent is not None:
                self._bid.write_duplicate(resent)
        self._bid_pool.offer(record)

    def _page_bids(
        self,
        impression_ts: int,
        auction_id: int,
        bid: float,
        user_id: int,
        creative: _Creative,
        domain: str,
        country: _Country,
        device: tuple[str, str],
    ) -> None:
        """The won bid request of an impression plus the lost ones of the same page view.

        Lost auctions are other slots of the page: same user, site and device, another
        creative and bid. The lost count per win is (1 - win_rate) / win_rate, carried over
        fractionally so the total is exact.
        """
        r = self._r
        encoder = self._encoder
        user_part = encoder.user_part(user_id, self._country_text(country, 0.3, 0.35))
        website = None if r() < 0.02 else self._raw_website(domain)
        context_part = encoder.context_part(website, device if r() < 0.9 else None)
        ts = impression_ts - 20 - int(r() * 780)  # the request precedes the impression
        self._write_bid(
            encoder.encode(
                f"req-{auction_id}",
                ts,
                user_part,
                auction_id,
                bid,
                creative.creative_id,
                context_part,
            ),
            ts,
        )
        self._lost_carry += self._lost_per_win
        late_rate = self._cfg.late_rate
        while self._lost_carry >= 1.0:
            self._lost_carry -= 1.0
            lost_ts = self._late_ts() if r() < late_rate else ts + int((r() - 0.5) * 4000)
            lost_id = self._next_auction
            self._next_auction += 1
            self._write_bid(
                encoder.encode(
                    f"req-{lost_id}",
                    lost_ts,
                    user_part,
                    lost_id,
                    self._bid_amount(),
                    self._draw_creative().creative_id,
                    context_part,
                ),
                lost_ts,
            )

    def _late_ts(self) -> int:
        """An event time 1 day + 1 hour to 3 days before the current window: a late arrival."""
        return (
            self._window.start_ms - _DAY_MS - _HOUR_MS - int(self._r() * (2 * _DAY_MS - _HOUR_MS))
        )

    # -- clicks and conversions ----------------------------------------------------------
    def _touch_events(self, ts: int, user_id: int, creative: _Creative) -> None:
        r = self._r
        cfg = self._cfg
        campaign = self._catalog.campaigns[creative.campaign_id]
        if r() < cfg.ctr:
            click_ts = ts + 1000 + min(int(self._rng.expovariate(1 / 60_000)), 30 * _MINUTE_MS)
            self._new_event(
                click_ts, user_id, creative.campaign_id, str(creative.creative_id), CLICK, ""
            )
            if r() < cfg.conversion_rate:
                if r() < 0.3:
                    delay = 10 * _MINUTE_MS + int(r() * (_DAY_MS - 10 * _MINUTE_MS))
                else:
                    delay = _DAY_MS + int(r() * 6 * _DAY_MS)
                self._new_conversion(click_ts + delay, user_id, campaign, creative)
        elif r() < cfg.view_through_rate:
            delay = _MINUTE_MS + int(r() * (_DAY_MS - _MINUTE_MS))
            self._new_conversion(ts + delay, user_id, campaign, creative)
        if r() < self._orphan_rate:
            # Users outside the impression population never had a touch.
            orphan = FIRST_USER_ID + self._n_users + int(r() * self._orphan_users)
            other = self._draw_creative()
            self._new_conversion(ts, orphan, self._catalog.campaigns[other.campaign_id], None)

    def _new_conversion(
        self, ts: int, user_id: int, campaign: _Campaign, creative: _Creative | None
    ) -> None:
        r = self._r
        kind = campaign.objective if r() < 0.8 else CONVERSION_TYPES[int(r() * 4)]
        if kind == "purchase":
            revenue = "" if r() < 0.1 else f"{self._rng.lognormvariate(3.5, 0.8):.2f}"
        elif kind == "install":
            revenue = "" if r() < 0.5 else f"{0.5 + 2.5 * r():.2f}"
        else:
            revenue = "" if r() < 0.7 else f"{1 + 24 * r():.2f}"
        creative_id = str(creative.creative_id) if creative is not None and r() < 0.7 else ""
        self._new_event(ts, user_id, campaign.campaign_id, creative_id, kind, revenue)

    def _new_event(
        self, ts: int, user_id: int, campaign_id: int, creative_id: str, kind: str, revenue: str
    ) -> None:
        ts_value, fmt = self._ts.render(ts)
        event_id = f"ev-{self._next_event}"
        self._next_event += 1
        is_click = kind == CLICK
        if self._r() < _CASE_VARIANT_SHARE:
            variants = _CASE_VARIANTS[kind]
            kind = variants[int(self._r() * len(variants))]
        row = (event_id, str(ts_value), str(user_id), str(campaign_id), creative_id, kind, revenue)
        event = _Event(ts, fmt, row, is_click)
        target = self._arrival_file(ts)
        if target is None:  # happens after the generated period
            self._not_arrived += 1
            return
        if target == self._window.index:
            self._write_event(event)
        else:
            self._pending.setdefault(target, []).append(event)

    def _arrival_file(self, ts: int) -> int | None:
        """File index the event lands in: its own window, or (late) the first window starting
        1-3 days after it; never a file already written."""
        current = self._window.index
        if ts >= self._end_ms:
            return None
        if self._r() < self._cfg.late_rate:
            j = bisect_left(self._starts, ts + _DAY_MS)
            if current <= j < len(self._starts) and self._starts[j] - ts <= 3 * _DAY_MS:
                return j
        return max(bisect_right(self._starts, ts) - 1, current)

    def _write_event(self, event: _Event) -> None:
        self._evt.write_clean(event.row, event.ts_ms, event.fmt, event.is_click)
        if self._r() < self._cfg.duplicate_rate:
            resent = self._event_pool.sample()
            if resent is not None:
                self._evt.write_duplicate(resent)
        self._event_pool.offer(event.row)
        if self._r() < self._cfg.malformed_rate:
            self._malformed_event(event.row)

    def _malformed_event(self, clean: tuple[str, ...]) -> None:
        r = self._r
        row = self._evt.fit((f"ev-{self._next_event}", *clean[1:]))
        self._next_event += 1
        u = r()
        if u < 1 / 3:
            # Cut before conversion_type, so even a lenient reader misses a required field.
            self._evt.write_malformed("missing_columns", row[: 3 + int(r() * 3)])
        elif u < 2 / 3:
            extra = ["promo", "x"][: 1 + int(r() * 2)]
            self._evt.write_malformed("extra_columns", [*row, *extra])
        else:
            if r() < 0.5:
                row[2] = "n/a x"  # user_id
            else:
                row[6] = "abc"  # revenue
            self._evt.write_malformed("wrong_type", row)

    # -- manifest ------------------------------------------------------------------------
    def _manifest(self) -> dict[str, Any]:
        files = {s.path: s.to_manifest() for s in self._stats}
        return {
            "manifest_version": MANIFEST_VERSION,
            "generator": __name__,
            "arguments": self._cfg.as_manifest_arguments(),
            "files": files,
            "totals": _totals(files),
        }


def _start_ms(start: date) -> int:
    """Epoch milliseconds of a UTC day's midnight, or of an aware datetime."""
    if isinstance(start, datetime):
        return (start - _EPOCH_UTC) // timedelta(milliseconds=1)
    return (start.toordinal() - _EPOCH_ORDINAL) * _DAY_MS


def _profile(user_id: int) -> tuple[_Country, str, str, str | None, str]:
    """(country, device_type, os, browser, region) of a user, stable across events."""
    h = (user_id * 2_654_435_761) & 0xFFFFFFFF  # Knuth's multiplicative hash
    country = _COUNTRY_SLOTS[h % 100]
    device_type, _, systems = _DEVICE_SLOTS[(h >> 7) % 100]
    os_name = systems[(h >> 14) % len(systems)]
    browsers = _BROWSERS.get(os_name)
    browser = browsers[(h >> 18) % len(browsers)] if browsers else None
    return country, device_type, os_name, browser, country.regions[(h >> 22) % len(country.regions)]


def _coprime_stride(n: int) -> int:
    # Maps popularity ranks to scattered user ids (a bijection on [0, n)).
    stride = 1_000_003
    while math.gcd(stride, n) != 1:
        stride += 2
    return stride


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


# ----------------------------------------------------------------------------- entry points
def _publish(staged: Path, final: Path) -> None:
    if final.exists() and filecmp.cmp(staged, final, shallow=False):
        staged.unlink()  # same bytes already landed: keep that file and its mtime
        return
    if final.exists():
        logger.warning(
            "datagen: replacing %s with different content; ingestion that tracks files by "
            "name will not read it again",
            final,
        )
    os.replace(staged, final)


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
    generator = _LandingGenerator(cfg, out_dir)
    manifest = generator.run()
    produced = {*generator.published, MANIFEST_FILE}
    for rel in _owned_paths(out_dir):
        if rel not in produced:
            logger.info("datagen: removing %s from an earlier run", rel)
            (out_dir / rel).unlink()
    # Published last: its presence means the landing set is complete.
    (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    _publish(staging / MANIFEST_FILE, out_dir / MANIFEST_FILE)
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
