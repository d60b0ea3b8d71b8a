"""UTC instants for values AdLake stamps itself (ingestion, audit, quarantine times).

PySpark turns a naive `datetime` into a timestamp through the host's local time zone, so a
naive "UTC now" is stored hours off on a host that is not on UTC. Every stamp is therefore an
aware UTC datetime, and times read back from Spark (naive, local) are made aware before reuse.
"""

from __future__ import annotations

from datetime import datetime, timezone


def utc_now(*, whole_seconds: bool = False) -> datetime:
    """The current instant as an aware UTC datetime."""
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=0) if whole_seconds else now


def aware(moment: datetime) -> datetime:
    """An aware UTC datetime for a value collected from Spark (naive values are host-local)."""
    # astimezone on a naive value reads it as host-local time, which is what Spark produced.
    return moment.astimezone(timezone.utc)
