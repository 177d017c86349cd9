"""The product end to end: scenario deploys sent signed through the real receiver, verified
against a real Prometheus holding the scenario's metrics, reported through the real CLI.

Truth comes from the seeded scenario generator (analyzers.demo.scenarios.small_scenario).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from analyzers.delivery.reports import render_html, render_markdown
from analyzers.events.send import send_event
from analyzers.events.store import open_store
from analyzers.model import DeployVerdict
from analyzers.prometheus.client import PrometheusClient
from analyzers.verify.deploy import verify_deploy
from tests.fixtures.receiver import start_receiver

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def loaded(prom: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Send every scenario deploy through the receiver, then verify each one from the store."""
    tmp = tmp_path_factory.mktemp("e2e")
    store_url = f"sqlite:///{tmp / 'deploys.db'}"
    with start_receiver(store_url) as rx:
        for d in prom.scenario.deploys:
            resp = send_event(rx.webhook_url, d.event, rx.secret)
            assert resp.status_code == 201, resp.text
            again = send_event(rx.webhook_url, d.event, rx.secret, msg_id=None)
            assert again.status_code in (200, 201), again.text  # duplicate event id: stored once
    store = open_store(store_url)
    deploys = {d.deploy_id: d for d in store.list_deploys(limit=1000)}
    assert len(deploys) == len(prom.scenario.deploys)
    client = PrometheusClient(prom.config.prometheus)
    verdicts: dict[str, DeployVerdict] = {}
    for sd in prom.scenario.deploys:
        dep = deploys[sd.event["deploy_id"]]
        v = verify_deploy(dep, prom.config, client, others=list(deploys.values()))
        store.save_verdict(v)
        verdicts[sd.case] = v
    # Attach the rendered reports to the test output, as files (kept after the run).
    out = ROOT / "test-artifacts" / "reports"
    out.mkdir(parents=True, exist_ok=True)
    for case, v in verdicts.items():
        dep = deploys[v.deploy_id]
        (out / f"{case}.md").write_text(render_markdown(v, dep))
        (out / f"{case}.html").write_text(render_html(v, dep))
    print(f"\nreports written to {out}")
    yield {"store_url": store_url, "verdicts": verdicts, "deploys": deploys, "store": store}
    store.close()


def _summary(v: DeployVerdict) -> str:
    return v.reason + " | " + " | ".join(m.reason for m in v.metrics)


def test_regression_deploy_fails_on_its_error_ratio(loaded: dict[str, Any]) -> None:
    v = loaded["verdicts"]["regression"]
    assert v.overall == "fail", _summary(v)
    (err,) = [m for m in v.metrics if m.metric == "error_ratio"]
    assert err.outcome == "regressed", err.reason
    assert err.result and err.result["direction"] == "increase"
    # the effect interval is the metric's confidence sequence at alpha / k (k tested metrics,
    # Bonferroni), valid at every look, and says so; the effect lies inside it
    k = sum(1 for m in v.metrics if m.result and "sequential" in m.result)
    assert k >= 1 and abs(err.result["ci_level"] - (1 - 0.01 / k)) < 1e-12, err.result["ci_level"]
    assert f"{(1 - 0.01 / k) * 100:.3g}% any-look CI" in err.reason, err.reason
    lo, hi = err.result["effect_ci"]
    assert 0 < lo <= err.result["effect"] <= hi, (lo, err.result["effect"], hi)


def test_declared_improvement_is_confirmed(loaded: dict[str, Any]) -> None:
    v = loaded["verdicts"]["improvement"]
    assert v.overall == "pass", _summary(v)
    (p99,) = [m for m in v.metrics if m.metric == "latency_p99"]
    assert p99.role == "expectation" and p99.outcome == "confirmed", p99.reason
    assert p99.result and p99.result["effect"] < 0
    # The histogram behind the line was compared too: its bucket counts over the same windows.
    bt = p99.result["bucket_test"]
    assert bt["p_value"] <= 0.01 and bt["n_before"] > 0 and bt["n_after"] > 0 and bt["max_cdf_diff"] > 0, bt
    assert bt["before_window"][0].startswith(p99.result["before_window"][0][:16]), (bt, p99.result["before_window"])
    assert 'service="' in bt["query"] and "latency bucket differ too" in p99.reason, p99.reason
    # ... and beyond what the mix does without a deploy: its drift between adjacent windows before
    # the deploy and its move over the same hours a day earlier (both from the same instant query)
    assert bt["drift_blocks"] >= 2 and bt["drift_dispersion"] >= 1 and bt["p_beyond_drift"] <= 0.01, bt
    assert bt["p_beyond_drift"] == max(bt["p_drift"], bt.get("p_day", 0.0)), bt
    assert "beyond the mix drifts between adjacent windows before the deploy" in p99.reason, p99.reason
    # ... and which way: fewer requests than before are slower than a bound in the old tail
    assert bt["tail_direction"] == "faster" and bt["tail_share_after"] < bt["tail_share_before"], bt
    assert "requests slower than" in p99.reason, p99.reason


@pytest.mark.parametrize("case", ["noop", "ramp_noop"])
def test_noop_deploys_pass(loaded: dict[str, Any], case: str) -> None:
    v = loaded["verdicts"][case]
    assert v.overall == "pass", _summary(v)
    assert all(m.outcome == "ok" for m in v.metrics if m.role == "guard"), _summary(v)


def test_every_verdict_matches_the_scenario_truth(loaded: dict[str, Any], prom: Any) -> None:
    wrong = []
    for sd in prom.scenario.deploys:
        v = loaded["verdicts"][sd.case]
        if v.overall != sd.expected_overall:
            wrong.append(f"{sd.case}: expected {sd.expected_overall}, got {v.overall}: {_summary(v)}")
    assert not wrong, "\n".join(wrong)


def test_verdicts_are_stored_with_the_deploy(loaded: dict[str, Any]) -> None:
    store = loaded["store"]
    v = loaded["verdicts"]["regression"]
    again = store.latest_verdict(v.deploy_id)
    assert again is not None and again.overall == "fail"
    assert [m.metric for m in again.metrics] == [m.metric for m in v.metrics]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "analyzers", *args], cwd=ROOT, capture_output=True, text=True, timeout=180)


def test_cli_gate_exits_1_for_regression_and_0_for_improvement(loaded: dict[str, Any], prom: Any) -> None:
    reg = loaded["verdicts"]["regression"].deploy_id
    imp = loaded["verdicts"]["improvement"].deploy_id
    r1 = _cli("verify", "--deploy", reg, "--store", loaded["store_url"], "--prometheus-url", prom.url, "--no-save")
    assert r1.returncode == 1, r1.stdout + r1.stderr
    assert "FAIL" in r1.stdout and "error_ratio" in r1.stdout
    r0 = _cli("verify", "--deploy", imp, "--store", loaded["store_url"], "--prometheus-url", prom.url,
              "--format", "json", "--no-save")
    assert r0.returncode == 0, r0.stdout + r0.stderr
    assert json.loads(r0.stdout)["verdict"]["overall"] == "pass"


def test_stopped_prometheus_is_an_error_exit_3_naming_the_url(loaded: dict[str, Any], stopped_prometheus_url: str) -> None:
    """An outage is "could not check", not a verdict: exit 3 (CI tells it from "not enough
    data yet", exit 2), one stderr line naming the URL and what to do, no report, nothing stored."""
    store = loaded["store"]
    reg = loaded["verdicts"]["regression"].deploy_id
    before = [v.overall for v in store.verdict_history(reg)]
    r = _cli("verify", "--deploy", reg, "--store", loaded["store_url"], "--prometheus-url", stopped_prometheus_url,
             "--format", "json")
    assert r.returncode == 3, r.stdout + r.stderr
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "could not check" in lines[0] and stopped_prometheus_url in lines[0]
    assert "cannot reach Prometheus" in lines[0] and "Traceback" not in r.stderr
    assert [v.overall for v in store.verdict_history(reg)] == before  # the real verdict stays the latest


def test_unknown_deploy_id_is_an_error_exit_3(loaded: dict[str, Any], prom: Any) -> None:
    r = _cli("verify", "--deploy", "nope", "--store", loaded["store_url"], "--prometheus-url", prom.url)
    assert r.returncode == 3 and "no deploy with id" in r.stderr


def test_wait_gate_exits_at_once_on_a_regression(loaded: dict[str, Any], prom: Any) -> None:
    reg = prom.scenario.deploy("regression")
    r = _cli("verify", "--service", reg.service, "--version", reg.event["version"], "--wait", "10m", "--poll", "1",
             "--store", loaded["store_url"], "--prometheus-url", prom.url, "--no-save")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAIL" in r.stdout


def test_wait_gate_passes_the_improvement(loaded: dict[str, Any], prom: Any) -> None:
    imp = prom.scenario.deploy("improvement")
    r = _cli("verify", "--service", imp.service, "--version", imp.event["version"], "--wait", "1m", "--poll", "1",
             "--store", loaded["store_url"], "--prometheus-url", prom.url, "--no-save", "--format", "json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["verdict"]["overall"] == "pass"


def test_wait_gate_without_a_deploy_event_is_inconclusive(loaded: dict[str, Any], prom: Any) -> None:
    r = _cli("verify", "--service", "checkout", "--version", "never-deployed", "--wait", "2s", "--poll", "0.5",
             "--store", loaded["store_url"], "--prometheus-url", prom.url)
    assert r.returncode == 2
    assert "No matching deploy arrived" in r.stderr


def test_replay_counts_verdicts_and_lists_changes(loaded: dict[str, Any], prom: Any) -> None:
    # two worker processes: their verdicts must equal the ones verified one by one and stored
    r = _cli("replay", "--since", "30d", "--workers", "2", "--store", loaded["store_url"], "--prometheus-url", prom.url)
    assert r.returncode == 0, r.stderr
    n = len(prom.scenario.deploys)
    assert f"Replayed {n} deploys" in r.stdout
    fails = sum(1 for d in prom.scenario.deploys if d.expected_overall == "fail")
    assert re.search(rf"fail\s+{fails}\b", r.stdout), r.stdout
    assert "0 of them differ from the stored before/after verdicts" in r.stdout  # same config, same data: same verdicts
