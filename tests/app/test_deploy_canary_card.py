"""Deploy detail: a canary-vs-baseline evidence card (AppTest, real SQLite store, the real Prometheus
of the ``prom`` fixture). A canary result has a rate ratio and counts, not a before/after effect: the
card shows those, and its chart (the catalog series of the whole service) keeps the metric's own unit
(a latency in ms, not the canary result's "ratio" drawn as %)."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from analyzers.events.schema import parse_event
from analyzers.events.store import open_store
from analyzers.stats.canary import compare_buckets, compare_rates, judge
from analyzers.verify.canary import CanaryReport, canary_verdict
from tests.app.conftest import APP

pytestmark = pytest.mark.integration


def arr(value: Any) -> np.ndarray:
    """A Plotly array from a spec: plain list or Plotly's typed-array form (dtype + base64)."""
    if isinstance(value, dict) and "bdata" in value:
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
    return np.asarray(value)


def test_canary_cards_show_ratio_interval_counts_and_chart_in_the_metrics_unit(
    prom: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sd = next(d for d in prom.scenario.deploys if d.event["service"] == "checkout")
    deploy = parse_event(sd.event).to_deploy(signed=True)
    les = [0.1, 0.25, 0.5, float("inf")]
    latency = compare_buckets("latency_p99", les, np.tile([30.0, 60.0, 90.0, 100.0], (10, 1)),
                              np.tile([600.0, 980.0, 995.0, 1000.0], (10, 1)), bounds=[0.1, 0.25], alpha=0.0025)
    errors = compare_rates("error_ratio", np.full(10, 1.0), np.full(10, 10.0), np.full(10, 100.0),
                           np.full(10, 1000.0), alpha=0.0075)
    rep = CanaryReport(judgement=judge([latency, errors]), start=deploy.started_at,
                       end=deploy.started_at + timedelta(minutes=10), queries={"latency_p99": ["q"], "error_ratio": ["q"]})
    url = f"sqlite:///{tmp_path / 'deploys.db'}"
    store = open_store(url)
    try:
        store.record_event("generic", "canary-card", sd.event, deploy)
        store.save_verdict(canary_verdict(deploy, rep, now=deploy.started_at + timedelta(minutes=11)))
    finally:
        store.close()
    monkeypatch.delenv("ANALYZERS_CONFIG", raising=False)
    monkeypatch.setenv("DEPLOY_STORE_URL", url)
    monkeypatch.setenv("PROMETHEUS_URL", prom.url)

    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["deploy"] = deploy.deploy_id
    at.run()
    assert not at.exception
    tiles = [(m.label, m.value) for m in at.metric]
    assert latency.status == "regressed" and latency.ratio == pytest.approx(1.75)  # 70% over 100 ms vs 40%
    assert ("Rate ratio", "x1.75") in tiles
    assert ("Canary", "700 in 1,000 requests") in tiles and ("Baseline", "4,000 in 10,000 requests") in tiles
    assert any(label == "99.875% always-valid interval" for label, _ in tiles)  # the deciding bound's level
    assert all(value not in ("n/a", "n/a to n/a", "— / —") for _, value in tiles)  # no before/after tiles left empty
    assert not any("Effect CI: n/a" in str(c.value) for c in at.caption)

    charts = {c.proto.id: json.loads(c.proto.spec) for c in at.get("plotly_chart")}
    spec = next(s for s in charts.values() if s["data"] and s["data"][0].get("name") == "latency_p99")
    title = spec["layout"]["yaxis"]["title"]["text"]
    assert title in ("latency_p99 (ms)", "latency_p99 (s)"), title  # was "latency_p99 (%)": seconds x 100
    ys = arr(spec["data"][0]["y"]).astype(float)
    top = float(np.nanmax(ys)) / (1000.0 if title.endswith("(ms)") else 1.0)  # back to seconds
    assert 0.05 < top < 10.0  # a checkout p99 in seconds, not a percentage
