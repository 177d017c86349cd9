"""Service history page: the change metrics section (AppTest, real SQLite store)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from streamlit.testing.v1 import AppTest

from analyzers.events.store import open_store
from analyzers.model import Deploy, DeployVerdict
from tests.app.conftest import APP, StoreData, save_rate_canary


def test_history_shows_change_metrics_and_trend(store_data: StoreData) -> None:
    store = open_store(store_data.url)
    try:  # a rolled-back checkout deploy 3 days ago, restored 30 minutes later
        bad = Deploy(deploy_id="dep-rolled-back", service="checkout", environment="production", version="v2.3.9",
                     started_at=store_data.now - timedelta(days=3), status="rolled_back",
                     finished_at=store_data.now - timedelta(days=3) + timedelta(minutes=30))
        store.record_event("generic", "ev-rolled-back", {"service": "checkout"}, bad)
        store.save_verdict(DeployVerdict(deploy_id=bad.deploy_id, overall="pass", reason="", metrics=(),
                                         checked_at=store_data.now))
    finally:
        store.close()
    at = AppTest.from_file(APP, default_timeout=30)
    at.query_params["hist_svc"] = "checkout"
    at.switch_page("views/history.py").run()
    assert not at.exception
    assert "Change metrics" in [s.value for s in at.subheader]
    metrics = {m.label: m.value for m in at.metric}
    # checkout: 3 deploys in 30 days (v2.4.0 failed, v2.4.1 unverified, v2.3.9 rolled back)
    assert metrics["Deploys per day (30 d)"] == f"{3 / 30:.2f}"
    assert metrics["Change failure rate (30 d)"] == "67%"
    assert metrics["Median time to restore (30 d)"] == "30 min"  # the regression is not restored yet
    spec = json.loads(next(c for c in at.get("plotly_chart") if "deploys per week" in c.proto.spec).proto.spec)
    bars = next(t for t in spec["data"] if t["type"] == "bar")
    assert len(bars["y"]) == 8 and sum(bars["y"]) == 3  # eight weeks, checkout's three deploys in them
    line = next(t for t in spec["data"] if t["type"] == "scatter")
    assert line["y"][-1] == pytest.approx(200 / 3)  # last 7 days: v2.4.0 failed, v2.3.9 rolled back, v2.4.1 not
    assert "week starting (" in spec["layout"]["xaxis"]["title"]["text"]


def test_deploy_page_shows_a_stored_canary_verdict(store_data: StoreData) -> None:
    d = store_data.unverified
    save_rate_canary(store_data, d, "error_ratio", 30.0)
    at = AppTest.from_file(APP, default_timeout=30)
    at.query_params["deploy"] = d.deploy_id
    at.run()
    assert not at.exception
    text = " ".join(str(m.value) for m in at.markdown) + " ".join(str(e.value) for e in at.error)
    assert "Canary rate of errors above 1" in text and "regressed" in text  # markdown-escaped on the page


def test_deploy_page_shows_before_after_and_canary_side_by_side(store_data: StoreData) -> None:
    from analyzers.model import MetricVerdict

    d = store_data.unverified
    ok = MetricVerdict(metric="error_ratio", role="guard", expect="increase", outcome="ok",
                       reason="Before/after: no change in error_ratio.", unit="ratio",
                       result={"effect": 0.001, "effect_ci": [-0.002, 0.004], "p_value": 0.4})
    before_after = DeployVerdict(deploy_id=d.deploy_id, overall="pass", reason="Every guard held.", metrics=(ok,),
                                 checked_at=store_data.now - timedelta(minutes=2), service=d.service,
                                 version=d.version, check_kind="first")
    # the gate stored the canary verdict after the worker's before/after check: it is the latest
    save_rate_canary(store_data, d, "error_ratio", 30.0, before_after)
    at = AppTest.from_file(APP, default_timeout=30)
    at.query_params["deploy"] = d.deploy_id
    at.run()
    assert not at.exception
    banner = next(h.proto.body for h in at.get("html") if "verdict-banner-title" in h.proto.body)
    assert ">FAIL</div>" in banner  # before/after passed, the canary regressed: together a fail
    assert "Canary vs baseline" in banner
    assert [h.value for h in at.header][:1] == ["Before/after and canary vs baseline"]
    table = next(df.value for df in at.dataframe if "canary vs baseline" in df.value.columns)
    row = table.set_index("metric").loc["error_ratio"]
    assert row["before/after"].startswith("ok: +0.10 pp")
    assert row["canary vs baseline"].startswith("regressed: canary/baseline x")
    assert row["together"] == "fail (decided by canary)"
    assert any("Together: FAIL" in str(cap.value) for cap in at.caption)
    md = " ".join(str(m.value) for m in at.markdown)
    assert "Before/after\\: no change in error\\_ratio" in md  # markdown-escaped on the page
    assert md.index(":red-badge[regressed] Canary rate") < md.index(":green-badge[ok] Before/after")  # both, failing first
