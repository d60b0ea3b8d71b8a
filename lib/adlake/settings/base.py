"""What every section parser shares: the key-naming error, a mapping reader and durations."""

from __future__ import annotations

import re
from typing import Any

_INTERVAL = re.compile(r"^\s*(\d+)\s*(ms|s|sec|seconds?|m|min|minutes?|h|hours?)\s*$")
_DURATION = re.compile(r"^\s*(\d+)\s*(s|sec|seconds?|m|min|minutes?|h|hours?|d|days?)\s*$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class ConfigError(ValueError):
    """A configuration key is missing, unknown or has a bad value; the message names the key."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"config key '{key}': {problem}")
        self.key = key


class ConfigSection:
    """Reads one mapping, remembering which keys were consumed so leftovers can be rejected.

    Every section parser uses it, so unknown keys and bad values fail with the dotted name.
    """

    def __init__(self, data: Any, prefix: str) -> None:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(prefix or "<root>", f"must be a mapping, got {type(data).__name__}")
        self.data: dict[str, Any] = data
        self.prefix = prefix
        self.seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def get(
        self,
        name: str,
        kind: type | tuple[type, ...],
        default: Any = ...,
        *,
        nullable: bool = False,
    ) -> Any:
        self.seen.add(name)
        if name not in self.data:
            if default is ...:
                raise ConfigError(self.key(name), "is required")
            return default
        value = self.data[name]
        if value is None and nullable:
            return None
        # bool is an int subclass; a YAML `yes` must not pass as a number.
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            raise ConfigError(self.key(name), f"expected {_kind_name(kind)}, got a boolean")
        if not isinstance(value, kind):
            raise ConfigError(self.key(name), f"expected {_kind_name(kind)}, got {value!r}")
        return value

    def section(self, name: str, *, required: bool = True) -> ConfigSection:
        self.seen.add(name)
        if name not in self.data and required:
            raise ConfigError(self.key(name), "is required")
        return ConfigSection(self.data.get(name), self.key(name))

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            raise ConfigError(self.key(unknown[0]), "unknown key")


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def parse_trigger(value: str, key: str = "stream.trigger") -> str:
    """Validate a trigger: `available-now` or an interval such as `10s` / `1 minute`."""
    if value == "available-now" or _INTERVAL.match(value):
        return value
    raise ConfigError(key, f"expected 'available-now' or an interval like '10s', got {value!r}")


def trigger_interval(value: str) -> str:
    """A validated interval trigger in the form Spark parses (`10s` -> `10 seconds`)."""
    match = _INTERVAL.match(value)
    if not match:
        raise ConfigError("trigger", f"not an interval: {value!r}")
    number, unit = match.groups()
    if unit == "ms":
        return f"{number} milliseconds"
    return f"{number} " + {"s": "seconds", "m": "minutes", "h": "hours"}[unit[0]]


def parse_duration(value: str, key: str) -> int:
    """Seconds in a duration such as `90s`, `10 minutes`, `2 hours`, `1 day`."""
    match = _DURATION.match(value) if isinstance(value, str) else None
    if not match:
        raise ConfigError(key, f"expected a duration like '2 hours', got {value!r}")
    return int(match.group(1)) * _SECONDS[match.group(2)[0]]


def positive_int(section: ConfigSection, name: str, default: int) -> int:
    value: int = section.get(name, int, default)
    if value <= 0:
        raise ConfigError(section.key(name), f"must be a positive integer, got {value}")
    return value
