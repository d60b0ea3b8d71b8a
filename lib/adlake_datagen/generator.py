"""The landing generator: walks the arrival windows in order and writes file i of every source
for window i: the impressions, their bid requests (won and lost auctions), the clicks and
conversions that follow (EventWriter), and the defects the config asks for.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import random
import time
from pathlib import Path
from typing import Any, Final

from adlake.schemas import CREATIVE_COLUMNS
from adlake_datagen.avro_encoding import BidEncoder, encode_bid_request
from adlake_datagen.catalog import Catalog, Country, Creative, Draws, profile
from adlake_datagen.config import DatagenConfig
from adlake_datagen.constants import (
    BID_REQUESTS,
    CLICKS_CONVERSIONS,
    CREATIVES_FILE,
    CSV_MALFORMED_KINDS,
    DRIFT_CSV_COLUMN,
    DRIFT_JSON_FIELD,
    FIRST_AUCTION_ID,
    IMPRESSIONS,
    JSON_MALFORMED_KINDS,
    REFERENCE,
    RETRY_SUFFIX,
    SEED_BID_REQUESTS,
    SEED_CLICKS_CONVERSIONS,
    SEED_CREATIVES,
    SEED_IMPRESSIONS,
    STAGING_DIR,
    TIMESTAMP_FORMATS,
)
from adlake_datagen.events import CSV_HEADER, EventWriter
from adlake_datagen.sinks import AvroSink, CsvSink, FileStats, JsonlSink, Pool, publish
from adlake_datagen.timestamps import DAY_MS, HOUR_MS, TimestampRenderer, Window, start_epoch_ms

logger = logging.getLogger(__name__)

_AUCTION_SHARE: Final = 0.95  # the rest are direct (non-RTB) buys without an auction_id
_CAMPAIGN_ID_SHARE: Final = 0.6  # the rest rely on the creatives reference
# Keys LandingGenerator._impression writes, in order; checked against IMPRESSION_FIELDS before
# each run.
IMPRESSION_KEYS: Final = (
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


class LandingGenerator:
    """Walks the windows in arrival order, writing file i of every source for window i.

    State kept across windows is bounded: a duplicate pool per source and the clicks and
    conversions whose event (or late arrival) time falls in a later window.
    """

    # The files of the window being written (set by _write_window).
    _window: Window
    _imp: JsonlSink
    _evt: CsvSink
    _bid: AvroSink

    def __init__(self, cfg: DatagenConfig, out_dir: Path) -> None:
        assert cfg.users is not None and cfg.truncated_avro_files is not None
        self._cfg = cfg
        self._out = out_dir
        self._staging = out_dir / STAGING_DIR
        self.published: list[str] = []
        self._rng = random.Random(f"adlake-datagen:{cfg.seed}")
        self._r = self._rng.random
        self._catalog = Catalog(cfg, random.Random(f"adlake-datagen:{cfg.seed}:catalog"))
        self._draws = Draws(cfg, self._catalog, self._rng)
        self._ts = TimestampRenderer(cfg.timestamp_mix, self._rng)

        start_ms = start_epoch_ms(cfg.start_date)
        span = cfg.days * DAY_MS
        bounds = [start_ms + span * i // cfg.files for i in range(cfg.files + 1)]
        self._windows = [Window(i, bounds[i], bounds[i + 1]) for i in range(cfg.files)]
        self._drift_csv_index = cfg.files // 2 if cfg.files >= 2 and cfg.schema_drift_rate else -1

        self._lost_per_win = (1.0 - cfg.win_rate) / cfg.win_rate
        self._lost_carry = 0.0

        self._next_impression = 1
        self._next_auction = FIRST_AUCTION_ID
        self._impression_pool = Pool(self._rng)
        self._bid_pool = Pool(self._rng)
        self._events = EventWriter(cfg, self._rng, self._ts, self._catalog, self._draws, bounds)
        self._encoder = BidEncoder()
        self._stats: list[FileStats] = []

    # -- windows -----------------------------------------------------------------------
    def run(self) -> dict[str, dict[str, Any]]:
        """Write and publish every file; returns the manifest entries by relative path."""
        self._write_reference()
        for window in self._windows:
            self._write_window(window)
        logger.info(
            "datagen: %d clicks/conversions happen after the last window; not written",
            self._events.not_arrived,
        )
        return {s.path: s.to_manifest() for s in self._stats}

    def _write_reference(self) -> None:
        path = self._staging / CREATIVES_FILE
        rows = self._catalog.reference_rows()
        with open(path, "w", encoding="utf-8", newline="") as fo:
            writer = csv.writer(fo, lineterminator="\n")
            writer.writerow(CREATIVE_COLUMNS)
            writer.writerows(rows)
        stats = FileStats(CREATIVES_FILE, REFERENCE, None, ())
        stats.records = len(rows)
        stats.seed_records = len(SEED_CREATIVES)
        stats.clean_records = len(rows) - len(SEED_CREATIVES)
        stats.extra["columns"] = list(CREATIVE_COLUMNS)
        self._stats.append(stats)
        self._publish(CREATIVES_FILE)

    def _publish(self, rel: str) -> None:
        """Move a finished file into place, leaving an identical landed file untouched."""
        publish(self._staging / rel, self._out / rel)
        self.published.append(rel)

    def _write_window(self, window: Window) -> None:
        cfg = self._cfg
        began = time.perf_counter()
        name = f"part-{window.index:05d}"
        imp_rel = f"{IMPRESSIONS}/{name}.jsonl" + (".gz" if cfg.gzip else "")
        evt_rel = f"{CLICKS_CONVERSIONS}/{name}.csv"
        bid_rel = f"{BID_REQUESTS}/{name}.avro"
        imp_stats = FileStats(imp_rel, IMPRESSIONS, window, JSON_MALFORMED_KINDS)
        imp_stats.timestamp_formats = dict.fromkeys(TIMESTAMP_FORMATS, 0)
        evt_stats = FileStats(evt_rel, CLICKS_CONVERSIONS, window, CSV_MALFORMED_KINDS)
        evt_stats.timestamp_formats = dict.fromkeys(TIMESTAMP_FORMATS, 0)
        columns = CSV_HEADER + (
            (DRIFT_CSV_COLUMN,) if window.index == self._drift_csv_index else ()
        )
        evt_stats.extra.update(columns=list(columns), clicks=0, conversions=0)
        bid_stats = FileStats(bid_rel, BID_REQUESTS, window, ())
        self._stats += [imp_stats, evt_stats, bid_stats]

        self._imp = JsonlSink(self._staging / imp_rel, imp_stats, cfg.gzip)
        self._evt = CsvSink(self._staging / evt_rel, evt_stats, columns)
        sync = hashlib.sha256(f"adlake-datagen:{cfg.seed}:{bid_rel}".encode()).digest()[:16]
        self._bid = AvroSink(self._staging / bid_rel, bid_stats, sync)
        self._window = window

        if window.index == 0 and cfg.include_seed_records:
            self._write_seeds()
        self._events.open_window(window, self._evt)
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
            copy = FileStats(f"{BID_REQUESTS}/{name}{RETRY_SUFFIX}", BID_REQUESTS, window, ())
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
            self._evt.write_seed(tuple(row.get(column, "") for column in CSV_HEADER))
        for record in SEED_BID_REQUESTS:
            self._bid.write_seed(encode_bid_request(record))

    # -- impressions and bids ----------------------------------------------------------
    def _impression(self, slot_start_ms: int, slot_ms: float) -> None:
        """One impression at a random time in its slot (or 1-3 days earlier when late),
        with its bid requests and any click and conversions it leads to."""
        r = self._r
        cfg = self._cfg
        draws = self._draws
        ts = self._late_ts() if r() < cfg.late_rate else slot_start_ms + int(r() * slot_ms)
        user_id = draws.user()
        creative = draws.creative()
        domain = draws.domain()
        ts_value, fmt = self._ts.render(ts)
        impression_id = f"imp-{self._next_impression}"
        self._next_impression += 1
        obj: dict[str, Any] = {
            "impression_id": impression_id,
            "creative_id": creative.creative_id,
            "user_id": user_id,
            "timestamp": ts_value,
            "website": draws.raw_website(domain),
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
        country, device_type, os_name, browser, region = profile(user_id)
        if r() < 0.92:
            obj["device_type"] = device_type
            obj["os"] = os_name
        if browser is not None and r() < 0.85:
            obj["browser"] = browser
        if r() < 0.95:
            obj["country"] = draws.country_text(country, 0.45, 0.25)
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
        self._events.touch(ts, user_id, creative)

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
        creative: Creative,
        domain: str,
        country: Country,
        device: tuple[str, str],
    ) -> None:
        """The won bid request of an impression plus the lost ones of the same page view.

        Lost auctions are other slots of the page: same user, site and device, another
        creative and bid. The lost count per win is (1 - win_rate) / win_rate, carried over
        fractionally so the total is exact.
        """
        r = self._r
        draws = self._draws
        encoder = self._encoder
        user_part = encoder.user_part(user_id, draws.country_text(country, 0.3, 0.35))
        website = None if r() < 0.02 else draws.raw_website(domain)
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
                    draws.creative().creative_id,
                    context_part,
                ),
                lost_ts,
            )

    def _bid_amount(self) -> float:
        u = self._r()
        return (5_000 + int(75_000 * u * u * u)) / 10_000  # CPM in [0.5, 8), most bids low

    def _late_ts(self) -> int:
        """An event time 1 day + 1 hour to 3 days before the current window: a late arrival."""
        return self._window.start_ms - DAY_MS - HOUR_MS - int(self._r() * (2 * DAY_MS - HOUR_MS))
