"""What the demo prints for a newcomer to paste or open: every receiver path it lists answers, and
every command it prints runs in a new shell (not a bare ``python`` that lacks this package)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from analyzers.demo.processes import cli_command
from analyzers.demo.run import RECEIVER_PATHS
from analyzers.events.store import open_store
from analyzers.server.app import create_app
from tests.fixtures.receiver import SECRET, serve_app

ROOT = Path(__file__).resolve().parents[2]


def test_every_receiver_path_the_demo_lists_answers(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'd.db'}")
    try:
        with serve_app(create_app(store, secrets=SECRET)) as base:
            for item in RECEIVER_PATHS.split(", "):
                method, _, path = item.rpartition(" ")
                if method == "POST":  # unsigned: refused, but the endpoint is there
                    assert requests.post(base + path, json={}, timeout=5).status_code == 401, item
                else:
                    assert requests.get(base + path, timeout=5).status_code == 200, item
    finally:
        store.close()


def _runs(command: str, cwd: Path, path_env: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PATH=path_env, PYTHONPATH=str(ROOT))
    return subprocess.run([*shlex.split(command), "demo", "--help"], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60)


@pytest.fixture
def launcher(tmp_path: Path) -> Path:
    """A ``deploy-verify`` console script in ``tmp_path/venv/bin``, as pip writes one."""
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    script = bin_dir / "deploy-verify"
    script.write_text(f"#!{sys.executable}\nimport sys\nfrom analyzers.cli import main\nsys.exit(main())\n")
    script.chmod(0o755)
    return script


def test_printed_command_is_the_script_path_when_not_on_path(launcher: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(launcher), "demo"])
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    command = cli_command()
    assert command == "venv/bin/deploy-verify"  # as `make demo` users have it: .venv/bin/deploy-verify
    res = _runs(command, tmp_path, "/usr/bin:/bin")
    assert res.returncode == 0 and "--stop" in res.stdout, res.stderr


def test_printed_command_is_the_bare_name_when_path_finds_this_script(launcher: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(launcher), "demo"])
    path_env = f"{launcher.parent}:/usr/bin:/bin"
    monkeypatch.setenv("PATH", path_env)
    assert cli_command() == "deploy-verify"
    assert _runs(cli_command(), tmp_path / "venv", path_env).returncode == 0


def test_printed_command_names_this_interpreter_under_python_m(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(ROOT / "analyzers" / "__main__.py"), "demo"])
    command = cli_command()
    assert command.endswith(" -m analyzers") and not command.startswith("python ")
    res = _runs(command, tmp_path, "/usr/bin:/bin")  # a new shell whose `python` may lack the package
    assert res.returncode == 0 and "--stop" in res.stdout, res.stderr
