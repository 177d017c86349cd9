"""The CLI as a user runs it: real subprocess, real statistics, exit codes and messages."""

from __future__ import annotations

import argparse
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


def _run_in(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ANALYZERS_", "DEPLOY_", "PROMETHEUS_"))}
    clean["PYTHONPATH"] = str(ROOT)
    clean.update(env or {})
    return subprocess.run([sys.executable, "-m", "analyzers", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env=clean)


def _store_with_one_deploy(tmp_path: Path) -> str:
    from analyzers.events.schema import parse_event
    from analyzers.events.store import open_store

    url = f"sqlite:///{tmp_path / 'd.db'}"
    store = open_store(url)
    ev = parse_event({"service": "cli", "environment": "production", "version": "v1",
                      "started_at": "2026-11-27T10:00:00Z"}, source="generic")
    store.record_event("generic", "e1", {}, ev.to_deploy(True))
    store.close()
    return url


def test_verify_without_a_store_or_config_says_where_it_looked_and_creates_nothing(tmp_path: Path) -> None:
    res = _run_in(tmp_path, "verify")
    assert res.returncode == 3, res.stdout + res.stderr
    assert "ANALYZERS_CONFIG" in res.stderr and "--store" in res.stderr and ".demo/config.toml" in res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "data").exists()  # no empty ./data/deploys.db was created


def test_verify_on_a_missing_sqlite_file_is_exit_3_not_an_empty_store(tmp_path: Path) -> None:
    res = _run_in(tmp_path, "verify", "--store", f"sqlite:///{tmp_path / 'nope.db'}")
    assert res.returncode == 3 and "does not exist" in res.stderr and "nope.db" in res.stderr
    assert not (tmp_path / "nope.db").exists()


@pytest.mark.parametrize("since", ["99999999999d", "999999999999999999999999w"])
def test_absurd_since_is_a_clear_error_exit_3(tmp_path: Path, since: str) -> None:
    url = _store_with_one_deploy(tmp_path)
    res = _run_in(tmp_path, "verify", "--store", url, "--since", since)
    assert res.returncode == 3, res.stdout + res.stderr
    assert "Traceback" not in res.stderr and since in res.stderr


@pytest.mark.parametrize("output", ["/nonexistent-dir/report.md", "."])
def test_output_to_an_impossible_path_is_exit_3_before_any_work(tmp_path: Path, output: str) -> None:
    url = _store_with_one_deploy(tmp_path)
    res = _run_in(tmp_path, "verify", "--store", url, "--output", output, "--prometheus-url", "http://127.0.0.1:9")
    assert res.returncode == 3, res.stdout + res.stderr
    assert "cannot write the report" in res.stderr and "Traceback" not in res.stderr
    assert "could not check" not in res.stderr  # refused before Prometheus was asked


def test_canary_without_a_store_or_config_says_where_it_looked_and_creates_nothing(tmp_path: Path) -> None:
    res = _run_in(tmp_path, "canary", "--service", "checkout", "--version", "v1")
    assert res.returncode == 3, res.stdout + res.stderr  # was 2 ("no such deploy") on a fresh empty store
    assert "ANALYZERS_CONFIG" in res.stderr and "--store" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "data").exists()  # no empty ./data/deploys.db was created


@pytest.mark.parametrize("fmt", ["markdown", "json", "html"])
def test_no_matching_deploy_still_writes_the_report_and_says_why(tmp_path: Path, fmt: str) -> None:
    """The README's CI job posts --output as a PR comment even when verify exits 2: the file must exist
    and say why (unknown service: the known ones), in the format asked for."""
    url = _store_with_one_deploy(tmp_path)
    out = tmp_path / "verdict.out"
    res = _run_in(tmp_path, "verify", "--store", url, "--service", "chekout", "--since", "30d",
                  "--format", fmt, "--output", str(out), "--prometheus-url", "http://127.0.0.1:9")
    assert res.returncode == 2, res.stdout + res.stderr
    assert "'chekout'" in res.stderr and "known services: cli" in res.stderr and "Traceback" not in res.stderr
    text = out.read_text()
    if fmt == "json":
        assert json.loads(text) == []  # the many-deploys form with no verdicts
    else:
        assert "no deploy matched" in text and "INCONCLUSIVE" in text and "known services: cli" in text
        assert ("<!doctype html>" in text) == (fmt == "html")


@pytest.mark.parametrize(("args", "why"), [
    (("--version", "v1"), "--version needs --service"),
    (("--service", "cli", "--version", "v1", "--since", "yesterday"), "cannot read time 'yesterday'"),
])
def test_wait_with_a_usage_mistake_is_exit_3_at_once_not_a_wait(tmp_path: Path, args: tuple[str, ...], why: str) -> None:
    """A pipeline's typo must not hold the job for the whole --wait and then blame a missing deploy
    event (exit 2): it was "waiting for the deploy event" for 20 s here, then said none arrived."""
    url = _store_with_one_deploy(tmp_path)
    res = _run_in(tmp_path, "verify", "--store", url, *args, "--wait", "20s", "--poll", "1",
                  "--prometheus-url", "http://127.0.0.1:9")
    assert res.returncode == 3, res.stdout + res.stderr
    assert why in res.stderr and "waiting for the deploy event" not in res.stderr and "Traceback" not in res.stderr


def test_wait_progress_in_the_ci_log_says_when_the_final_verdict_is_due(tmp_path: Path) -> None:
    """Each --wait progress line tells the CI log reader when the answer comes (the final check, in
    UTC, with the zone named) and when this wait gives up, beside the current state."""
    from analyzers.events.store import open_store

    url = _store_with_one_deploy(tmp_path)  # started 2026-11-27 10:00 UTC; observation 2 h by default
    store = open_store(url)
    try:
        (deploy,) = store.list_deploys(service="cli", limit=10)
    finally:
        store.close()
    res = _run_in(tmp_path, "verify", "--store", url, "--deploy", deploy.deploy_id, "--wait", "2s",
                  "--poll", "0.5", "--prometheus-url", "http://127.0.0.1:9")
    assert res.returncode == 3, res.stdout + res.stderr  # Prometheus down all along: an error, never a verdict
    progress = [line for line in res.stderr.splitlines() if line.startswith("[")]
    assert progress, res.stderr
    assert all("Prometheus unreachable" in line and "final verdict due 2026-11-27 12:00 UTC" in line
               and "this wait ends" in line for line in progress), progress


def test_worker_without_a_store_refuses_instead_of_polling_a_new_empty_one(tmp_path: Path) -> None:
    """`deploy-verify worker` from the wrong folder, or with a typo in the SQLite path, created an empty
    ./data/deploys.db, found nothing due and exited 0 (--once) or polled it for ever: no verdict, no error."""
    res = _run_in(tmp_path, "worker", "--once")
    assert res.returncode == 3, res.stdout + res.stderr
    assert "no deploy store configured" in res.stderr and "Traceback" not in res.stderr
    res = _run_in(tmp_path, "worker", "--once", "--store", f"sqlite:///{tmp_path / 'typo.db'}")
    assert res.returncode == 3 and "typo.db" in res.stderr and "does not exist" in res.stderr, res.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "typo.db").exists()


def test_unreadable_timestamp_in_the_csv_is_exit_3_naming_the_row(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text("timestamp,value\n2026-11-27T10:00:00Z,1.0\nyesterday,2.0\n")
    res = run_cli("verify-series", str(path), "--deploy-at", "2026-11-27T10:00:00Z")
    assert res.returncode == 3, res.stderr  # was a traceback and exit 1, which CI reads as "fail"
    assert "row 3: 'yesterday'" in res.stderr and "RFC 3339" in res.stderr and "Traceback" not in res.stderr


def test_an_unexpected_error_is_exit_3_never_1(tmp_path: Path) -> None:
    """Exit 1 means "the deploy failed" to a pipeline: a crash must say error (3), and how to see more."""
    res = _run_in(tmp_path, "verify", "--config", str(tmp_path), "--service", "checkout")  # a folder, not a file
    assert res.returncode == 3, res.stdout + res.stderr
    assert "Traceback" not in res.stderr and "--debug" in res.stderr and len(res.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("command", ["verify", "verify-series", "canary", "replay", "worker", "demo"])
def test_every_option_in_help_says_what_it_does(command: str) -> None:
    """`--help` is where a new user starts: no flag listed bare (as --store, --config and
    --prometheus-url were on four commands)."""
    from analyzers.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    bare = [a.option_strings[0] if a.option_strings else a.dest for a in sub.choices[command]._actions
            if not a.help and a.dest != "help"]
    assert bare == [], f"{command}: options without help: {bare}"


def test_a_metric_template_with_unpaired_brackets_is_a_config_error_exit_3(tmp_path: Path) -> None:
    """It was exit 2 (inconclusive) after querying: CI read a typo in the config as "not enough data"."""
    (tmp_path / "c.toml").write_text('[metrics.checkout_p99]\nquery = \'sum(rate(x{service="$service"}[5m])\'\n')
    res = _run_in(tmp_path, "verify", "--config", "c.toml", "--store", _store_with_one_deploy(tmp_path))
    assert res.returncode == 3, res.stdout + res.stderr
    assert "metrics.checkout_p99.query" in res.stderr and "never closed" in res.stderr
    assert "Traceback" not in res.stderr
