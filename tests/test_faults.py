"""adlake.faults: crash points are inert unless named, and a misspelt name cannot go unnoticed."""

from __future__ import annotations

import signal

import pytest

from adlake import faults


@pytest.fixture
def kills(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Record the kills a crash point would send instead of sending them; fresh hit counts."""
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(faults.os, "kill", lambda pid, sig: sent.append((pid, sig)))
    monkeypatch.setattr(faults, "_hits", {})
    return sent


def test_unset_is_a_no_op(monkeypatch: pytest.MonkeyPatch, kills: list[tuple[int, int]]) -> None:
    monkeypatch.delenv(faults.ENV_VAR, raising=False)
    for point in faults.POINTS:
        faults.crash_point(point)
    monkeypatch.setenv(faults.ENV_VAR, "")
    faults.crash_point(faults.BRONZE_AFTER_PLAN)
    assert kills == []


def test_named_point_sends_sigkill_to_this_process_only(
    monkeypatch: pytest.MonkeyPatch, kills: list[tuple[int, int]]
) -> None:
    monkeypatch.setenv(faults.ENV_VAR, faults.SILVER_AFTER_MERGE)
    faults.crash_point(faults.BRONZE_AFTER_PLAN)
    assert kills == []
    faults.crash_point(faults.SILVER_AFTER_MERGE)
    assert kills == [(faults.os.getpid(), signal.SIGKILL)]


def test_nth_hit(monkeypatch: pytest.MonkeyPatch, kills: list[tuple[int, int]]) -> None:
    monkeypatch.setenv(faults.ENV_VAR, f"{faults.BRONZE_AFTER_APPEND}:3")
    for _ in range(2):
        faults.crash_point(faults.BRONZE_AFTER_APPEND)
    assert kills == []
    faults.crash_point(faults.BRONZE_AFTER_APPEND)
    assert len(kills) == 1


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("bronze_after_apend", "unknown crash point 'bronze_after_apend'"),
        ("BRONZE_AFTER_APPEND", "unknown crash point"),
        ("bronze_after_append:0", "positive integer"),
        ("bronze_after_append:x", "positive integer"),
    ],
)
def test_bad_value_raises_at_the_first_point_reached(
    monkeypatch: pytest.MonkeyPatch, kills: list[tuple[int, int]], value: str, message: str
) -> None:
    monkeypatch.setenv(faults.ENV_VAR, value)
    # Any point raises, not only the misspelt one: the job fails instead of running uncrashed.
    with pytest.raises(ValueError, match=message):
        faults.crash_point(faults.BRONZE_AFTER_PLAN)
    assert kills == []


def test_points_are_distinct() -> None:
    assert len(set(faults.POINTS)) == len(faults.POINTS)
