"""The progressive-delivery gate over real HTTP: a real receiver app, real Prometheus, real SQLite.

Two versions serve at once in a backfilled Prometheus (label ``version``): ``shop`` runs a canary
with 5x the baseline's error rate, ``cart`` a no-op canary, ``quiet`` a canary with no traffic
at all. The requests are the shapes from the Argo Rollouts ``web`` provider documentation
(GET, ``Authorization: Bearer`` header, JSON read with ``jsonPath``) and from Flagger's webhook
documentation (POST ``{name, namespace, phase, metadata}``). One exchange of each is written
to ``gate_exchanges.json`` in the test's temp directory and printed (run with ``-s`` to see it).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from analyzers.config import CanarySettings, default_config
from analyzers.events.send import send_event
from analyzers.events.store import open_store
from analyzers.prometheus.client import PrometheusClient
from analyzers.server.gate import install_gate
from analyzers.server.receiver import create_app
from tests.fixtures.receiver import SECRET, serve_app
from tests.integration.canary_data import SERVICES, CanaryProm, canary_prom  # noqa: F401 - fixture

TOKEN = "gate-token-for-tests"


@dataclass(frozen=True)
class GateEnv:
    base_url: str
    canary_start: datetime
    now: datetime
    out_dir: Path


@pytest.fixture(scope="module")
def gate_env(canary_prom: CanaryProm) -> Iterator[GateEnv]:  # noqa: F811 - the imported fixture
    store = open_store(f"sqlite:///{canary_prom.root / 'deploys.db'}")
    now = canary_prom.now
    try:
        cfg = replace(default_config().with_prometheus_url(canary_prom.url), canary=CanarySettings())
        app = create_app(store, secrets=SECRET)
        install_gate(app, store, config=cfg, client=PrometheusClient(cfg.prometheus), token=TOKEN,
                     clock=lambda: now.timestamp())
        with serve_app(app) as base:
            for service in SERVICES:
                r = send_event(base + "/webhooks/deploys", {
                    "service": service, "environment": "production", "version": "v2",
                    "deploy_id": f"{service}-v2", "started_at": canary_prom.canary_start.isoformat(),
                    "status": "started"}, SECRET)
                assert r.status_code in (200, 201), r.text
            yield GateEnv(base_url=base, canary_start=canary_prom.canary_start, now=now, out_dir=canary_prom.root)
    finally:
        store.close()


def _exchange(resp: requests.Response) -> dict[str, Any]:
    req = resp.request
    return {
        "request": {"method": req.method, "url": req.url,
                    "headers": {k: v for k, v in req.headers.items() if k.lower() in ("authorization", "content-type")},
                    "body": json.loads(req.body) if req.body else None},
        "response": {"status": resp.status_code, "body": resp.json()},
    }


def _save(env: GateEnv, name: str, resp: requests.Response) -> None:
    path = env.out_dir / "gate_exchanges.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data[name] = _exchange(resp)
    path.write_text(json.dumps(data, indent=2))
    print(f"\n--- {name} exchange ({path}) ---\n{json.dumps(data[name], indent=2)}")


def argo_measure(base: str, deploy_id: str, token: str | None = TOKEN) -> tuple[requests.Response, str]:
    """What Argo's web provider does: GET with the template's headers, then jsonPath ``{$.verdict}``."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = requests.get(f"{base}/v1/gate/{deploy_id}", headers=headers, timeout=30)
    if r.status_code != 200:
        return r, "error"
    result = r.json()["verdict"]  # jsonPath: "{$.verdict}"
    # successCondition: result == "pass"; failureCondition: result == "fail"; neither: inconclusive
    return r, "successful" if result == "pass" else "failed" if result == "fail" else "inconclusive"


def test_argo_web_metric_fails_the_regressed_canary(gate_env: GateEnv) -> None:
    r, phase = argo_measure(gate_env.base_url, "shop-v2")
    _save(gate_env, "argo_fail", r)
    assert phase == "failed"
    body = r.json()
    errors = next(m for m in body["metrics"] if m["metric"] == "error_ratio")
    assert errors["outcome"] == "regressed"
    assert errors["ratio_ci"][0] > 1.1  # the always-valid interval excludes the tolerance
    assert errors["ratio"] == pytest.approx(5.0, rel=0.5)


def test_argo_web_metric_passes_the_noop_canary(gate_env: GateEnv) -> None:
    r, phase = argo_measure(gate_env.base_url, "cart-v2")
    _save(gate_env, "argo_pass", r)
    assert phase == "successful", r.json()["reason"]
    assert all(m["outcome"] == "ok" for m in r.json()["metrics"])


def test_argo_reads_no_canary_traffic_as_inconclusive(gate_env: GateEnv) -> None:
    r, phase = argo_measure(gate_env.base_url, "quiet-v2")
    assert phase == "inconclusive"
    assert 'No series with version="v2"' in r.json()["reason"]


def test_gate_needs_the_token_and_a_known_deploy(gate_env: GateEnv) -> None:
    r, _ = argo_measure(gate_env.base_url, "shop-v2", token=None)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == "Bearer"
    r, _ = argo_measure(gate_env.base_url, "shop-v2", token="wrong")
    assert r.status_code == 401
    r, phase = argo_measure(gate_env.base_url, "nope")
    assert r.status_code == 404 and phase == "error"
    assert "post the deploy event first" in r.json()["error"]


def _flagger(base: str, name: str, hook: str, phase: str = "Progressing", **meta: str) -> requests.Response:
    payload = {"name": name, "namespace": "test", "phase": phase, "metadata": {"token": TOKEN, **meta}}
    return requests.post(f"{base}/v1/gate/flagger?hook={hook}", json=payload, timeout=30)


def test_flagger_confirm_promotion_and_rollback(gate_env: GateEnv) -> None:
    ok = _flagger(gate_env.base_url, "cart", "confirm-promotion")
    _save(gate_env, "flagger_confirm_promotion_go", ok)
    assert ok.status_code == 200 and ok.json()["go"] is True
    halt = _flagger(gate_env.base_url, "shop", "confirm-promotion")
    _save(gate_env, "flagger_confirm_promotion_halt", halt)
    assert halt.status_code == 409 and halt.json()["verdict"] == "fail"
    assert _flagger(gate_env.base_url, "shop", "rollout").status_code == 409
    assert _flagger(gate_env.base_url, "shop", "rollback").status_code == 200  # Flagger rolls back
    assert _flagger(gate_env.base_url, "cart", "rollback").status_code == 409
    # no canary traffic: not a fail, so the rollout goes on, but never promoted
    assert _flagger(gate_env.base_url, "quiet", "rollout").status_code == 200
    assert _flagger(gate_env.base_url, "quiet", "confirm-promotion").status_code == 409
    assert _flagger(gate_env.base_url, "cart", "pre-rollout", phase="Initializing").status_code == 200


def test_flagger_refuses_bad_requests(gate_env: GateEnv) -> None:
    base = gate_env.base_url
    r = requests.post(f"{base}/v1/gate/flagger?hook=rollout",
                      json={"name": "cart", "namespace": "test", "phase": "Progressing", "metadata": {}}, timeout=30)
    assert r.status_code == 401
    r = requests.post(f"{base}/v1/gate/flagger?hook=rollout", data=b"{not json", timeout=30,
                      headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 400 and "not JSON" in r.json()["error"]
    assert _flagger(base, "cart", "launch").status_code == 422
    r = _flagger(base, "unknown-service", "rollout")
    assert r.status_code == 404


def test_canary_verdict_is_stored_once_per_change(gate_env: GateEnv) -> None:
    for _ in range(3):  # Argo polls; the stored history grows only when the outcome changes
        argo_measure(gate_env.base_url, "shop-v2")
    r = requests.get(f"{gate_env.base_url}/v1/deploys/shop-v2", timeout=30)
    kinds = [v["check_kind"] for v in r.json()["verdict_history"]]
    assert kinds.count("canary") == 1
    canary = next(v for v in r.json()["verdict_history"] if v["check_kind"] == "canary")
    assert canary["overall"] == "fail"
    assert {m["role"] for m in canary["metrics"]} == {"canary"}


def test_receiver_process_serves_the_gate_and_change_metrics(receiver: Any) -> None:
    """``python -m analyzers.server.receiver`` wires the gate and exports the change metrics on /metrics."""
    started = datetime.now(UTC) - timedelta(hours=1)
    r = send_event(receiver.webhook_url, {"service": "gate-dora", "environment": "production", "version": "v9",
                                          "deploy_id": "gate-dora-v9", "started_at": started.isoformat(),
                                          "status": "rolled_back"}, receiver.secret)
    assert r.status_code in (200, 201), r.text
    metrics = requests.get(receiver.base_url + "/metrics", timeout=30).text
    assert 'change_failure_rate{service="gate-dora"} 1.0' in metrics
    assert 'deploys_in_window{service="gate-dora"} 1.0' in metrics
    # the gate answers (no Prometheus behind this receiver: inconclusive, never a pass)
    g = requests.get(receiver.base_url + "/v1/gate/gate-dora-v9", timeout=60)
    assert g.status_code == 200
    assert g.json()["verdict"] == "inconclusive"
    assert requests.get(receiver.base_url + "/v1/gate/unknown-deploy", timeout=30).status_code == 404
    metrics = requests.get(receiver.base_url + "/metrics", timeout=30).text
    assert 'deploy_gate_answers_total{service="gate-dora",verdict="inconclusive"} 1.0' in metrics
