"""Event time: the arrival windows the files of each source cover, and the rendering of epoch
millis in the landing timestamp formats (plain, ISO with an offset, ISO UTC, epoch millis).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Final

from adlake_datagen.constants import TIMESTAMP_FORMATS

DAY_MS: Final = 86_400_000
HOUR_MS: Final = 3_600_000
MINUTE_MS: Final = 60_000
_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
EPOCH_UTC: Final = datetime(1970, 1, 1, tzinfo=timezone.utc)
_OFFSETS_MIN: Final = (60, 120, -300, -480, 330, 540, -180)


@dataclass(frozen=True)
class Window:
    """The event-time range one file of each source covers (files arrive in window order)."""

    index: int
    start_ms: int
    end_ms: int


class TimestampRenderer:
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


def iso_utc_ms(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def start_epoch_ms(start: date) -> int:
    """Epoch milliseconds of a UTC day's midnight, or of an aware datetime."""
    if isinstance(start, datetime):
        return (start - EPOCH_UTC) // timedelta(milliseconds=1)
    return (start.toordinal() - _EPOCH_ORDINAL) * DAY_MS
