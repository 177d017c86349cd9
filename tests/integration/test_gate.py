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
import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from analyzers.config import CanarySettings, default_config
from analyzers.demo.promserver import PrometheusServer, backfill
from analyzers.events.send import send_event
from analyzers.events.store import open_store
from analyzers.prometheus.client import PrometheusClient
from analyzers.server.gate import install_gate
from analyzers.server.receiver import create_app
from tests.fixtures.receiver import SECRET, serve_app

TOKEN = "gate-token-for-tests"
LES = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STEP_S = 15
#: service -> (canary error multiplier, canary share, canary serves at all)
SERVICES = {"shop": (5.0, 0.25, True), "cart": (1.0, 0.25, True), "quiet": (1.0, 0.0, False)}


@dataclass(frozen=True)
class GateEnv:
    base_url: str
    canary_start: datetime
    now: datetime
    out_dir: Path


def _openmetrics(start: datetime, minutes: int, canary_start: datetime, seed: int = 5) -> str:
    from scipy import stats as sps

    rng = np.random.default_rng(seed)
    cdf = sps.norm.cdf((np.log(np.array(LES)) - math.log(0.08)) / 0.6)
    probs = np.diff(np.concatenate([[0.0], cdf, [1.0]]))
    fams: dict[str, list[str]] = {"http_requests_total": [], "http_request_errors_total": [],
                                  "http_request_duration_seconds": []}
    for service, (err_mult, share, serves) in SERVICES.items():
        for version in ("v1", "v2"):
            req = err = 0.0
            buckets = np.zeros(len(LES) + 1)
            lines_r, lines_e, lines_b = [], [], []
            for k in range(minutes * 60 // STEP_S):
                t = start + timedelta(seconds=k * STEP_S)
                canary_on = t >= canary_start and serves
                if version == "v2" and not canary_on:
                    continue
                s = share if canary_on else 0.0
                mine = s if version == "v2" else 1 - s
                n = rng.poisson(50 * STEP_S * mine)
                e = rng.binomial(n, min(1.0, 0.01 * (err_mult if version == "v2" else 1.0)))
                req, err = req + n, err + e
                buckets += rng.multinomial(n, probs)
                ts = f"{t.timestamp():.0f}"
                lab = f'service="{service}",version="{version}"'
                lines_r.append(f"http_requests_total{{{lab}}} {req:.0f} {ts}")
                lines_e.append(f"http_request_errors_total{{{lab}}} {err:.0f} {ts}")
                cum = np.cumsum(buckets)
                for le, c in zip([*LES, math.inf], cum, strict=True):
                    le_s = "+Inf" if math.isinf(le) else f"{le:g}"
                    lines_b.append(f'http_request_duration_seconds_bucket{{{lab},le="{le_s}"}} {c:.0f} {ts}')
            fams["http_requests_total"] += lines_r
            fams["http_request_errors_total"] += lines_e
            fams["http_request_duration_seconds"] += lines_b
    out = []
    for name, kind in (("http_requests_total", "counter"), ("http_request_errors_total", "counter"),
                       ("http_request_duration_seconds", "histogram")):
        out.append(f"# TYPE {name.removesuffix('_total')} {kind}")
        out += fams[name]
    # OpenMetrics wants each series' samples together and in time order: group by series
    body = _group_series(out)
    return body + "# EOF\n"


def _group_series(lines: list[str]) -> str:
    out: list[str] = []
    groups: dict[str, list[str]] = {}
    order: list[str] = []
    for line in lines:
        if line.startswith("#"):
            for key in order:
                out += groups[key]
            groups, order = {}, []
            out.append(line)
            continue
        key = line.rsplit(" ", 2)[0]
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(line)
    for key in order:
        out += groups[key]
    return "\n".join(out) + "\n"


@pytest.fixture(scope="module")
def gate_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GateEnv]:
    root = tmp_path_factory.mktemp("gate")
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = hour - timedelta(hours=5)
    canary_start = start + timedelta(minutes=40)
    now = canary_start + timedelta(minutes=30)
    om = root / "canary.om"
    om.write_text(_openmetrics(start, 80, canary_start))
    backfill(om, root / "tsdb")
    server = PrometheusServer(root / "tsdb").start()
    store_url = f"sqlite:///{root / 'deploys.db'}"
    store = open_store(store_url)
    try:
        cfg = replace(default_config().with_prometheus_url(server.url), canary=CanarySettings())
        app = create_app(store, secrets=SECRET)
        install_gate(app, store, config=cfg, client=PrometheusClient(cfg.prometheus), token=TOKEN,
                     clock=lambda: now.timestamp())
        with serve_app(app) as base:
            for service in SERVICES:
                r = send_event(base + "/webhooks/deploys", {
                    "service": service, "environment": "production", "version": "v2",
                    "deploy_id": f"{service}-v2", "started_at": canary_start.isoformat(),
                    "status": "started"}, SECRET)
                assert r.status_code in (200, 201), r.text
            _wait_queryable(server.url, now)
            yield GateEnv(base_url=base, canary_start=canary_start, now=now, out_dir=root)
    finally:
        store.close()
        server.stop()


def _wait_queryable(url: str, at: datetime) -> None:
    import time

    for _ in range(120):
        r = requests.post(url + "/api/v1/query", data={"query": "count(http_requests_total)", "time": f"{at.timestamp():.0f}"},
                          timeout=10)
        if r.ok and r.json()["data"]["result"]:
            return
        time.sleep(0.5)
    raise RuntimeError("backfilled canary data never became queryable")


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
