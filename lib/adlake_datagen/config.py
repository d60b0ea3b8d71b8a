"""Generator arguments: DatagenConfig (every knob, with defaults derived from the number of
impressions and validation), parse_timestamp_mix for the command line, and the errors the
generator raises.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any, Final

from adlake_datagen.constants import TIMESTAMP_FORMATS

DEFAULT_TIMESTAMP_MIX: Final[Mapping[str, float]] = {
    "plain": 0.55,
    "iso_offset": 0.15,
    "iso_utc": 0.15,
    "epoch_ms": 0.15,
}


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
