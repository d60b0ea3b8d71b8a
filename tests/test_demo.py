"""`make demo`'s pipeline (scripts/demo.sh) on a few thousand impressions, as a newcomer
sees it: only AdLake's progress and summary on the terminal, Spark's output in a log file,
the deliberately corrupt file as one warning line and an explained quarantine, and a
healthy pipeline on data ending now: every data-quality check passes, the sparse clicks and
conversions included (adlake.quality's minimum-volume rule)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import write_config

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

NOT_ADLAKE = (
    re.compile(r"^\s+at [\w.$]+\(.*\)$"),  # a Java stack frame
    re.compile(r"^Caused by: "),
    re.compile(r"Traceback \(most recent call last\)"),
    re.compile(r":: resolving dependencies|Ivy Default Cache|local-m2-cache|\|\s+artifacts\s+\|"),
    re.compile(r"^\d\d/\d\d/\d\d \d\d:\d\d:\d\d (INFO|WARN|ERROR) "),  # Spark's log4j
    re.compile(r"^WARNING: Using incubator modules"),
)


def _dq_rows(stdout: str) -> list[list[str]]:
    """The rows of the printed data-quality table (check ... status)."""
    lines = stdout.split("Data-quality checks (ops/dq_results)\n", 1)[1].splitlines()
    assert lines[0].split()[0] == "check"
    rows = []
    for line in lines[1:]:
        if not line.strip():
            break
        rows.append(line.split())
    return rows


def test_demo_prints_only_adlake_output_and_a_healthy_pipeline(tmp_path: Path) -> None:
    config = write_config(tmp_path, codegen=True)  # as `make demo` runs
    done = subprocess.run(
        ["bash", "scripts/demo.sh", str(config), "3000", "42"],
        cwd=ROOT, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    out = done.stdout
    assert done.returncode == 0, out[-4000:] + done.stderr[-4000:]

    foreign = [line for line in out.splitlines() if any(p.search(line) for p in NOT_ADLAKE)]
    assert foreign == []
    log = Path(re.search(r"Spark and JVM output goes to (\S+)", out).group(1))  # type: ignore[union-attr]
    assert log.parent == tmp_path / "lakehouse" / "_logs" and log.stat().st_size > 0

    corrupt = [line for line in out.splitlines() if "quarantining unreadable file" in line]
    assert len(corrupt) == 1 and "part-00003.retry.avro" in corrupt[0]
    assert re.search(r"bronze\.quarantine bid_requests\s+1\s+corrupt_file part-00003\.retry", out)
    assert "bid_requests/part-00003.retry.avro is corrupt on purpose" in out

    rows = _dq_rows(out)
    assert len(rows) >= 25
    not_passing = {(r[0], r[1]) for r in rows if r[-1] != "pass"}
    # A few thousand impressions over 21 days make ~1.5 clicks and well under one
    # conversion a day, so the newest of them is hours or days old, and one malformed row
    # is 3 % of the ~35 rows of clicks_conversions. The default bounds (1 h / 6 h, 2 %) stay
    # as they are for normal volumes; the minimum-volume rule grades these: event freshness
    # bounds stretch to the time 20 rows are expected to take ('sparse: ...' in the
    # detail), and ratios over fewer than 100 rows pass as 'insufficient volume'.
    assert not_passing == set()
