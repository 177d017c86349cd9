"""`python -m analyzers demo` as a newcomer runs it (on the small scenario to stay fast): all three
components come up on the chosen ports, verdicts match the scenario truth, a second run reuses
what is there, and --stop ends what was left running."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.fixtures.receiver import free_port

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "analyzers", "demo", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


def _up(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def test_demo_brings_up_everything_and_reuses_it(tmp_path: Path) -> None:
    ports = [str(free_port()) for _ in range(3)]
    args = ["--scenario", "small", "--data-dir", str(tmp_path / "demo"), "--prometheus-port", ports[0],
            "--receiver-port", ports[1], "--dashboard-port", ports[2], "--no-block"]
    try:
        first = _demo(*args)
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
        verdicts = re.findall(r"\[demo\]\s+(PASS|FAIL|INCONCLUSIVE)\s+.*\(scenario truth: (pass|fail)\)", first.stdout)
        assert len(verdicts) == 6, first.stdout
        assert all(got.lower() == want for got, want in verdicts), first.stdout
        assert _up(f"http://127.0.0.1:{ports[0]}/-/ready")
        assert _up(f"http://127.0.0.1:{ports[1]}/healthz")
        assert _up(f"http://127.0.0.1:{ports[2]}/_stcore/health")
        assert f"http://127.0.0.1:{ports[2]}" in first.stdout

        second = _demo(*args)
        assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
        assert "reusing demo data" in second.stdout
        assert second.stdout.count("already answering") == 3
        deploys = requests.get(f"http://127.0.0.1:{ports[1]}/v1/deploys", timeout=5).json()
        items = deploys if isinstance(deploys, list) else deploys.get("deploys", deploys.get("items", []))
        assert len(items) == 6  # the second run's events were duplicates: stored once
    finally:
        _demo("--stop", "--data-dir", str(tmp_path / "demo"))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and _up(f"http://127.0.0.1:{ports[1]}/healthz"):
        time.sleep(0.3)
    assert not _up(f"http://127.0.0.1:{ports[1]}/healthz")
