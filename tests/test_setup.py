"""scripts/setup.sh on a fresh checkout: the Python floor and a half-created .venv."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _scratch_checkout(tmp_path: Path) -> Path:
    """setup.sh and a pyproject in an empty directory (the steps after the venv fail fast)."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "setup.sh", tmp_path / "scripts" / "setup.sh")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _setup(checkout: Path, **env: str) -> subprocess.CompletedProcess[str]:
    # PIP_NO_INDEX: the install step fails at once instead of reaching for PyPI.
    full_env = {**os.environ, "PIP_NO_INDEX": "1", **env}
    return subprocess.run(
        ["bash", "scripts/setup.sh"], cwd=checkout, env=full_env,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_python_older_than_3_11_is_refused(tmp_path: Path) -> None:
    checkout = _scratch_checkout(tmp_path)
    old_python = tmp_path / "python3.10"
    old_python.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = --version ]; then echo "Python 3.10.12"; exit 0; fi\n'
        "exit 1\n",  # the version check's sys.exit(True)
        encoding="utf-8",
    )
    old_python.chmod(0o755)
    done = _setup(checkout, PYTHON=str(old_python))
    assert done.returncode == 1
    assert "Python 3.11+ is required (numpy 2.4), found Python 3.10.12" in done.stderr
    assert not (checkout / ".venv").exists()


def test_half_created_venv_is_recreated(tmp_path: Path) -> None:
    checkout = _scratch_checkout(tmp_path)
    # What `python3 -m venv` leaves when ensurepip is missing: a python, no pip.
    (checkout / ".venv" / "bin").mkdir(parents=True)
    (checkout / ".venv" / "bin" / "python").symlink_to(sys.executable)
    done = _setup(checkout, PYTHON=sys.executable)
    assert "setup: .venv is incomplete or broken; re-creating it" in done.stdout
    assert (checkout / ".venv" / "bin" / "pip").exists()
    assert subprocess.run([checkout / ".venv" / "bin" / "pip", "--version"]).returncode == 0
