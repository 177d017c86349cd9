"""The code stays ruff- and mypy-clean (the style guide's bar), checked on every test run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_ruff_is_clean() -> None:
    res = subprocess.run([str(BIN / "ruff"), "check", "analyzers", "dashboard", "tests", "benchmarks", "scripts", "conftest.py"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout[-4000:]


def test_mypy_is_clean() -> None:
    res = subprocess.run([sys.executable, "-m", "mypy", "analyzers", "dashboard"], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-4000:]
