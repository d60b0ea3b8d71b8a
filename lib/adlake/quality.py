"""Data-quality checks (placeholder until the quality monitor lands)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from adlake.config import ConfigError


@dataclass(frozen=True)
class QualitySettings:
    """Thresholds of the data-quality checks."""

    raw: dict[str, Any]


def parse_quality(data: dict[str, Any], prefix: str) -> QualitySettings:
    """Validate the `quality` section."""
    if not isinstance(data, dict):
        raise ConfigError(prefix, "must be a mapping")
    return QualitySettings(raw=data)
