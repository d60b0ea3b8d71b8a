"""Clicks and conversions: EventWriter schedules them from the impressions that lead to them
(plus a few orphan conversions) and writes each to the CSV file of the window it arrives in, its
own or, when late, one 1-3 days later; events for a later window wait in memory until then.
"""

from __future__ import annotations

import random
from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from adlake.schemas import CLICK_CONVERSION_FIELDS
from adlake_datagen.catalog import Campaign, Catalog, Creative, Draws
from adlake_datagen.config import DatagenConfig
from adlake_datagen.constants import CLICK, CONVERSION_TYPES, FIRST_USER_ID
from adlake_datagen.sinks import CsvSink, Pool
from adlake_datagen.timestamps import DAY_MS, MINUTE_MS, TimestampRenderer, Window

_ORPHAN_SHARE: Final = 0.1  # conversions with no prior touch, relative to touched ones
_CASE_VARIANT_SHARE: Final = 0.03


@dataclass(frozen=True)
class Event:
    """A click or conversion waiting for the file of the window it arrives in."""

    ts_ms: int
    fmt: str
    row: tuple[str, ...]  # CLICK_CONVERSION_FIELDS order
    is_click: bool


CSV_HEADER: Final = tuple(f.name for f in CLICK_CONVERSION_FIELDS)
_CASE_VARIANTS: Final[Mapping[str, tuple[str, ...]]] = {
    CLICK: (" click ", "Click", "CLICK"),
    "purchase": ("Purchase", " purchase", "PURCHASE"),
    "signup": ("Signup", "SignUp "),
    "install": ("Install", "INSTALL"),
    "lead": ("Lead", " lead"),
}


class EventWriter:
    """Clicks and conversions, from the impression touches that lead to them to the CSV file
    they arrive in. Holds the events of later windows until open_window reaches them.
    """

    # The window being written and its CSV file (set by open_window).
    _window: Window
    _sink: CsvSink

    def __init__(
        self,
        cfg: DatagenConfig,
        rng: random.Random,
        timestamps: TimestampRenderer,
        catalog: Catalog,
        draws: Draws,
        bounds: Sequence[int],
    ) -> None:
        """`bounds`: the window boundaries in epoch millis (one more than there are windows)."""
        assert cfg.users is not None
        self._cfg = cfg
        self._rng = rng
        self._r = rng.random
        self._ts = timestamps
        self._catalog = catalog
        self._draws = draws
        self._starts = list(bounds[:-1])
        self._end_ms = bounds[-1]
        self._n_users = cfg.users
        self._orphan_users = max(10, cfg.users // 10)
        self._orphan_rate = _ORPHAN_SHARE * (cfg.ctr * cfg.conversion_rate + cfg.view_through_rate)
        self._next_event = 1
        self._pending: dict[int, list[Event]] = {}
        self._pool = Pool(rng)
        self.not_arrived = 0  # events that happen after the last window: never written

    def open_window(self, window: Window, sink: CsvSink) -> None:
        """Write to this window's file from now on, first the events that waited for it."""
        self._window = window
        self._sink = sink
        for event in self._pending.pop(window.index, []):
            self._write(event)

    def touch(self, ts: int, user_id: int, creative: Creative) -> None:
        """The click, conversions and orphan conversions an impression at `ts` leads to."""
        r = self._r
        cfg = self._cfg
        campaign = self._catalog.campaigns[creative.campaign_id]
        if r() < cfg.ctr:
            click_ts = ts + 1000 + min(int(self._rng.expovariate(1 / 60_000)), 30 * MINUTE_MS)
            self._new_event(
                click_ts, user_id, creative.campaign_id, str(creative.creative_id), CLICK, ""
            )
            if r() < cfg.conversion_rate:
                if r() < 0.3:
                    delay = 10 * MINUTE_MS + int(r() * (DAY_MS - 10 * MINUTE_MS))
                else:
                    delay = DAY_MS + int(r() * 6 * DAY_MS)
                self._new_conversion(click_ts + delay, user_id, campaign, creative)
        elif r() < cfg.view_through_rate:
            delay = MINUTE_MS + int(r() * (DAY_MS - MINUTE_MS))
            self._new_conversion(ts + delay, user_id, campaign, creative)
        if r() < self._orphan_rate:
            # Users outside the impression population never had a touch.
            orphan = FIRST_USER_ID + self._n_users + int(r() * self._orphan_users)
            other = self._draws.creative()
            self._new_conversion(ts, orphan, self._catalog.campaigns[other.campaign_id], None)

    def _new_conversion(
        self, ts: int, user_id: int, campaign: Campaign, creative: Creative | None
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
        event = Event(ts, fmt, row, is_click)
        target = self._arrival_file(ts)
        if target is None:  # happens after the generated period
            self.not_arrived += 1
            return
        if target == self._window.index:
            self._write(event)
        else:
            self._pending.setdefault(target, []).append(event)

    def _arrival_file(self, ts: int) -> int | None:
        """File index the event lands in: its own window, or (late) the first window starting
        1-3 days after it; never a file already written."""
        current = self._window.index
        if ts >= self._end_ms:
            return None
        if self._r() < self._cfg.late_rate:
            j = bisect_left(self._starts, ts + DAY_MS)
            if current <= j < len(self._starts) and self._starts[j] - ts <= 3 * DAY_MS:
                return j
        return max(bisect_right(self._starts, ts) - 1, current)

    def _write(self, event: Event) -> None:
        self._sink.write_clean(event.row, event.ts_ms, event.fmt, event.is_click)
        if self._r() < self._cfg.duplicate_rate:
            resent = self._pool.sample()
            if resent is not None:
                self._sink.write_duplicate(resent)
        self._pool.offer(event.row)
        if self._r() < self._cfg.malformed_rate:
            self._malformed_event(event.row)

    def _malformed_event(self, clean: tuple[str, ...]) -> None:
        r = self._r
        row = self._sink.fit((f"ev-{self._next_event}", *clean[1:]))
        self._next_event += 1
        u = r()
        if u < 1 / 3:
            # Cut before conversion_type, so even a lenient reader misses a required field.
            self._sink.write_malformed("missing_columns", row[: 3 + int(r() * 3)])
        elif u < 2 / 3:
            extra = ["promo", "x"][: 1 + int(r() * 2)]
            self._sink.write_malformed("extra_columns", [*row, *extra])
        else:
            if r() < 0.5:
                row[2] = "n/a x"  # user_id
            else:
                row[6] = "abc"  # revenue
            self._sink.write_malformed("wrong_type", row)
