"""Landing files as they are written: JSONL, CSV and Avro sinks that count what they write in
a FileStats (which becomes the file's manifest entry), publish() that moves a finished file into
place, and the Pool of written records that duplicates are re-sent from.
"""

from __future__ import annotations

import csv
import filecmp
import gzip
import io
import logging
import math
import os
import random
import zlib
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from fastavro.write import Writer as AvroWriter

from adlake.schemas import CLICK_CONVERSION_FIELDS
from adlake_datagen.avro_encoding import PARSED_BID_SCHEMA, EncodedBlock
from adlake_datagen.constants import BID_REQUESTS
from adlake_datagen.timestamps import DAY_MS, Window, iso_utc_ms

logger = logging.getLogger(__name__)

_DUPLICATE_POOL_SIZE: Final = 1000
_JSON_FLUSH_LINES: Final = 8192
_AVRO_BLOCK_BYTES: Final = 64 * 1024
_AVRO_TRUNCATE_AT: Final = 0.6
_CHANNELS: Final = ("web", "app", "ctv", "")


@dataclass
class FileStats:
    """What one landing file holds; becomes its manifest entry."""

    path: str
    source: str
    window: Window | None
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
            self.window.start_ms - DAY_MS if self.window is not None else -(2**63)
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
                window_start=iso_utc_ms(self.window.start_ms),
                window_end=iso_utc_ms(self.window.end_ms),
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


class JsonlSink:
    """Impression lines, buffered and written as bytes (optionally gzip with a fixed mtime)."""

    def __init__(self, path: Path, stats: FileStats, use_gzip: bool) -> None:
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


class CsvSink:
    """Click/conversion rows under a header; a drifted file carries one extra column."""

    def __init__(self, path: Path, stats: FileStats, columns: tuple[str, ...]) -> None:
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


class AvroSink:
    """Bid requests in an Avro container (deflate); remembers block ends to truncate mid-block."""

    def __init__(self, path: Path, stats: FileStats, sync_marker: bytes) -> None:
        self.stats = stats
        self._path = path
        self._fo = open(path, "wb")  # noqa: SIM115
        self._writer = AvroWriter(
            self._fo, PARSED_BID_SCHEMA, codec="deflate", sync_marker=sync_marker
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
        self._writer.write_block(EncodedBlock(io.BytesIO(b"".join(self._block)), len(self._block)))
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
        self, truncate: bool, copy: FileStats | None = None, copy_path: Path | None = None
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


class Pool:
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


def publish(staged: Path, final: Path) -> None:
    """Move a finished file into place, leaving an identical landed file untouched."""
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
