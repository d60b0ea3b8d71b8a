"""scripts/benchmark_gold.py refuses a work directory that overlaps the lakehouse it reads."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest


def load_script() -> Any:
    """scripts/ is not a package; load the script as a module from its file."""
    path = Path(__file__).resolve().parents[1] / "scripts" / "benchmark_gold.py"
    spec = importlib.util.spec_from_file_location("benchmark_gold", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _lakehouse(root: Path) -> Path:
    lakehouse = root / "bench" / "lakehouse"
    for name in ("impressions", "creatives"):
        (lakehouse / "silver" / name).mkdir(parents=True)
        (lakehouse / "silver" / name / "part-0.parquet").write_bytes(b"data")
    return lakehouse


@pytest.mark.parametrize(
    "workdir",
    [
        "bench",  # its `lakehouse` is the silver lakehouse: replicating would delete the input
        "bench/lakehouse",  # the lakehouse itself
        "bench/lakehouse/silver/impressions",  # inside a table it reads
        ".",  # contains the lakehouse
        "link",  # a symlink to the lakehouse
        "bench/../bench/lakehouse/../../bench",  # the same place spelled another way
    ],
)
def test_workdir_overlapping_the_lakehouse_is_refused_before_anything_is_deleted(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    workdir: str,
) -> None:
    script = load_script()
    lakehouse = _lakehouse(tmp_path)
    (tmp_path / "link").symlink_to(lakehouse, target_is_directory=True)

    def no_spark(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the benchmark started Spark with an overlapping --workdir")

    monkeypatch.setattr(script, "build_spark", no_spark)
    monkeypatch.chdir(tmp_path)
    argv = ["benchmark_gold.py", "--silver", str(lakehouse), "--scale", "2", "--workdir", workdir]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exited:
        script.main()
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"--workdir {workdir} overlaps the lakehouse it reads ({lakehouse})" in err
    for name in ("impressions", "creatives"):
        assert (lakehouse / "silver" / name / "part-0.parquet").read_bytes() == b"data"


def test_a_separate_workdir_is_accepted(tmp_path: Path) -> None:
    script = load_script()
    lakehouse = _lakehouse(tmp_path)
    assert script.workdir_overlap(lakehouse, tmp_path / "bench-10x") is None
    assert script.workdir_overlap(lakehouse, tmp_path / "bench" / "lakehouse-10x") is None
