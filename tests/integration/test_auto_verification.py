"""Issue 6 "done when": a regression deploy sent through the receiver is verified without any
manual step; the fail report reaches a loopback chat endpoint, a Grafana-style annotation is
posted, and a verdict metric appears on the receiver's /metrics."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import requests

from analyzers.events.send import send_event
from analyzers.events.store import open_store
from tests.fixtures.receiver import start_receiver
from tests.fixtures.sink import Sink

pytestmark = pytest.mark.integration


def _config(tmp: Path, prom_url: str, sink_url: str) -> Path:
    path = tmp / "cfg.toml"
    path.write_text(
        f"""
[prometheus]
url = "{prom_url}"

[[notify.routes]]
name = "oncall"
url = "{sink_url}/chat"
format = "slack"
verdicts = ["fail", "inconclusive"]

[[notify.routes]]
name = "audit"
url = "{sink_url}/audit"
format = "json"
verdicts = ["pass", "fail", "inconclusive"]

[grafana]
url = "{sink_url}"
"""
    )
    return path


def _wait_for(cond: Any, timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.25)
    return None


def test_regression_is_reported_on_its_own(prom: Any, sink: Sink, tmp_path: Path) -> None:
    cfg = _config(tmp_path, prom.url, sink.url)
    store_url = f"sqlite:///{tmp_path / 'auto.db'}"
    reg = prom.scenario.deploy("regression")
    imp = prom.scenario.deploy("improvement")
    env = {"ANALYZERS_CONFIG": str(cfg), "ANALYZERS_WORKER": "1", "ANALYZERS_WORKER_POLL": "0.5"}
    with start_receiver(store_url, env=env) as rx:
        for d in (reg, imp):
            assert send_event(rx.webhook_url, d.event, rx.secret).status_code == 201

        chat = _wait_for(lambda: sink.bodies("/chat"))
        assert chat, "no chat message arrived"
        assert any("FAIL" in m["text"] and reg.service in m["text"] for m in chat)
        assert not any(imp.event["version"] in m["text"] for m in chat)  # passes are not routed to on-call

        both = {reg.event["deploy_id"], imp.event["deploy_id"]}
        audit = _wait_for(lambda: {b["deploy"]["deploy_id"] for b in sink.bodies("/audit")} >= both
                          and sink.bodies("/audit"))
        assert audit, "the audit route did not get a verdict for both deploys"
        overall = {b["deploy"]["deploy_id"]: b["verdict"]["overall"] for b in audit}
        assert overall[reg.event["deploy_id"]] == "fail" and overall[imp.event["deploy_id"]] == "pass"

        notes = sink.bodies("/api/annotations")
        assert any("verdict:fail" in n["tags"] for n in notes)

        metrics = requests.get(rx.base_url + "/metrics", timeout=5).text
        assert f'deploy_verdicts_total{{overall="fail",service="{reg.service}"}}' in metrics
        assert "deploy_verification_seconds" in metrics

    store = open_store(store_url)
    try:
        v = store.latest_verdict(reg.event["deploy_id"])
        assert v is not None and v.overall == "fail" and v.check_kind in ("first", "finished", "final")
        deliveries = store.deliveries(reg.event["deploy_id"])
        assert {d["target"] for d in deliveries} >= {"oncall", "audit", "grafana"}
        assert all(d["ok"] for d in deliveries)
    finally:
        store.close()
