"""The CLI as a user runs it: real subprocess, real statistics, exit codes and messages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "analyzers", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.fixture()
def step_csv(tmp_path: Path) -> tuple[Path, str]:
    """Six hours at 1-minute step, a clear +50% level shift at the deploy, seeded noise."""
    rng = np.random.default_rng(42)
    idx = pd.date_range("2026-11-20T00:00:00Z", periods=360, freq="60s")
    deploy_at = idx[300]
    values = 100 + rng.normal(0, 3, len(idx))
    values[300:] += 50
    path = tmp_path / "export.csv"
    pd.DataFrame({"timestamp": idx.strftime("%Y-%m-%dT%H:%M:%SZ"), "value": values}).to_csv(path, index=False)
    return path, deploy_at.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_verify_series_confirms_declared_increase(step_csv: tuple[Path, str]) -> None:
    path, at = step_csv
    res = run_cli("verify-series", str(path), "--deploy-at", at, "--expect", "increase")
    assert res.returncode == 0, res.stderr
    assert "shifted" in res.stdout and "increase" in res.stdout


def test_verify_series_fails_when_declared_direction_is_wrong(step_csv: tuple[Path, str]) -> None:
    path, at = step_csv
    res = run_cli("verify-series", str(path), "--deploy-at", at, "--expect", "decrease", "--format", "json")
    assert res.returncode == 1, res.stderr
    assert '"direction": "increase"' in res.stdout


def test_verify_series_unix_seconds_column(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    ts = 1_763_600_000 + 60 * np.arange(300)
    path = tmp_path / "s.csv"
    pd.DataFrame({"t": ts, "v": 5 + rng.normal(0, 1, 300)}).to_csv(path, index=False)
    res = run_cli("verify-series", str(path), "--deploy-at", str(int(ts[240])), "--format", "json")
    assert res.returncode == 0, res.stdout + res.stderr  # read as Unix seconds, not as a duration ago
    result = json.loads(res.stdout)
    assert result["status"] == "unchanged" and result["n_after"] > 0


def test_bad_csv_is_a_clear_error_exit_3(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("only_one_column\n1\n2\n")
    res = run_cli("verify-series", str(path), "--deploy-at", "2026-11-20T00:00:00Z")
    assert res.returncode == 3
    assert "two columns" in res.stderr
    assert "Traceback" not in res.stderr


def test_missing_file_is_exit_3() -> None:
    res = run_cli("verify-series", "/nonexistent.csv", "--deploy-at", "2026-11-20T00:00:00Z")
    assert res.returncode == 3 and "does not exist" in res.stderr


def test_bad_time_says_what_formats_work(step_csv: tuple[Path, str]) -> None:
    path, _ = step_csv
    res = run_cli("verify-series", str(path), "--deploy-at", "yesterday-ish")
    assert res.returncode == 3 and "RFC 3339" in res.stderr


def test_replay_refuses_a_negative_worker_count() -> None:
    res = run_cli("replay", "--workers", "-2")
    assert res.returncode == 2  # argparse usage error, before any store or server is touched
    assert "--workers takes a whole number of processes" in res.stderr and "Traceback" not in res.stderr
