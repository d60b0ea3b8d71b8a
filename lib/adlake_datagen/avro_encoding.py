"""Avro binary of bid requests, encoded by hand for BID_REQUEST_AVRO_SCHEMA.

fastavro's generic writer resolves every union by validating the datum against each branch,
which costs ~25 us per bid request on a small VM; bids are ~3x as many as impressions. So
records are encoded here for this one schema and fastavro writes the container (header,
deflate blocks, sync markers). `landing._check_contracts` compares both encoders before each run.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import fastavro

from adlake.schemas import BID_REQUEST_AVRO_SCHEMA
from adlake_datagen.timestamps import EPOCH_UTC

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


class BidEncoder:
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
        ts = (ts - EPOCH_UTC) // timedelta(milliseconds=1)
    device = record.get("device")
    encoder = BidEncoder()
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


PARSED_BID_SCHEMA = fastavro.parse_schema(BID_REQUEST_AVRO_SCHEMA)


@dataclass
class EncodedBlock:
    """Duck-types fastavro's read.Block for Writer.write_block: pre-encoded records."""

    bytes_: io.BytesIO
    num_records: int
