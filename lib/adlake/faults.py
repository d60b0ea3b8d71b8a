"""Named crash points: a hard SIGKILL at an exact step of the bronze and silver write protocols.

The crash tests prove that a restart repairs a crash at every step of a write protocol. A
test that kills the job from outside when a log line or file appears races the write it means
to interrupt; a crash point kills the process itself at the step, so each test hits its
window by construction. `ADLAKE_CRASH_AT=<point>` switches one point on (`<point>:<n>`: the
n-th time the point is reached in the process); only tests set it, and with it unset a point
costs one environment lookup. The crash is SIGKILL, not an exception: as with `kill -9` or a
lost machine, no `finally` block, `atexit` hook or log flush of the Python driver runs.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

log = logging.getLogger(__name__)

ENV_VAR = "ADLAKE_CRASH_AT"

# Bronze (`BronzeIngestor`): the run's plan is in the file log, nothing else written yet.
BRONZE_AFTER_PLAN = "bronze_after_plan"
# The bronze append committed; the quarantine append and the commit row not yet.
BRONZE_AFTER_APPEND = "bronze_after_append"
# Bronze and quarantine appends committed; the file log's commit row not yet.
BRONZE_AFTER_QUARANTINE = "bronze_after_quarantine"
# Immediately before the commit row is appended (the last step of a run).
BRONZE_BEFORE_COMMIT = "bronze_before_commit"
# Silver (`SilverProcessor`, per target of a micro-batch): the silver MERGE committed.
SILVER_AFTER_MERGE = "silver_after_merge"
# The silver and quarantine MERGEs committed; the audit row not yet.
SILVER_AFTER_QUARANTINE = "silver_after_quarantine"
# Immediately before the audit row is appended.
SILVER_BEFORE_AUDIT = "silver_before_audit"
# The audit row is appended; the stream's checkpoint has not yet recorded the batch as done.
SILVER_AFTER_AUDIT = "silver_after_audit"

POINTS = (
    BRONZE_AFTER_PLAN,
    BRONZE_AFTER_APPEND,
    BRONZE_AFTER_QUARANTINE,
    BRONZE_BEFORE_COMMIT,
    SILVER_AFTER_MERGE,
    SILVER_AFTER_QUARANTINE,
    SILVER_BEFORE_AUDIT,
    SILVER_AFTER_AUDIT,
)

_hits: dict[str, int] = {}
_hits_lock = threading.Lock()  # bronze streams of several sources share the process


def parse_crash_at(value: str) -> tuple[str, int]:
    """`<point>` or `<point>:<n>` -> (point, n); a name not in `POINTS` or a bad n raises
    ValueError, so a typo in a test fails the job instead of letting it run uncrashed."""
    name, sep, nth = value.strip().partition(":")
    if name not in POINTS:
        raise ValueError(f"{ENV_VAR}={value!r}: unknown crash point {name!r}; known: {POINTS}")
    if not sep:
        return name, 1
    if not nth.isdigit() or int(nth) < 1:
        raise ValueError(f"{ENV_VAR}={value!r}: the hit after ':' must be a positive integer")
    return name, int(nth)


def crash_point(name: str) -> None:
    """SIGKILL this process if `ADLAKE_CRASH_AT` names this point (and this is its n-th hit)."""
    value = os.environ.get(ENV_VAR)
    if not value:
        return
    target, nth = parse_crash_at(value)
    if name != target:
        return
    with _hits_lock:
        hit = _hits[name] = _hits.get(name, 0) + 1
    if hit == nth:
        log.error("crash point %s (hit %d): SIGKILL", name, hit)
        os.kill(os.getpid(), signal.SIGKILL)
