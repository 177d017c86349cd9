"""Service history page and delivery status on the deploy page (AppTest, real SQLite store)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from streamlit.testing.v1 import AppTest

from analyzers.events.store import open_store
from tests.app.conftest import APP, StoreData, save_rate_canary


def test_history_lists_a_services_deploys_with_verdicts_and_effects(store_data: StoreData) -> None:
    at = AppTest.from_file(APP, default_timeout=30)
    at.query_params["hist_svc"] = "checkout"
    at.switch_page("views/history.py").run()
    assert not at.exception
    assert at.title[0].value == "Service history"
    table = at.dataframe[0].value
    assert set(table["version"]) == {"v2.4.0", "v2.4.1"}  # checkout's two deploys, nothing else
    row = table[table["version"] == "v2.4.0"].iloc[0]
    assert row["verdict"] == "fail"
    assert row["error_ratio"] == "regressed: +4.10 pp (+50%)"  # pp for the ratio, % for the relative change
    assert row["open"] == "deploy?deploy=dep-regression"
    assert table[table["version"] == "v2.4.1"].iloc[0]["verdict"] == "not verified"
    assert {m.label: m.value for m in at.metric}["Fail"] == "1"


def test_deploy_page_shows_where_the_verdict_was_delivered(store_data: StoreData) -> None:
    store = open_store(store_data.url)
    try:
        store.save_delivery(
            "dep-regression", datetime.now(UTC), "oncall",
            {"target": "oncall", "kind": "chat", "ok": False, "attempts": 4, "status_code": 503,
             "error": "HTTP 503: busy", "at": datetime.now(UTC).isoformat(), "overall": "fail"},
        )
    finally:
        store.close()
    at = AppTest.from_file(APP, default_timeout=30)
    at.query_params["deploy"] = "dep-regression"
    at.run()
    assert not at.exception
    assert "Deliveries" in [s.value for s in at.subheader]
    deliveries = next(df.value for df in at.dataframe if "target" in df.value.columns)
    row = deliveries.iloc[0]
    assert (row["target"], row["delivered"], row["attempts"], row["HTTP status"]) == ("oncall", "no", 4, 503)


def test_history_keeps_the_before_after_effect_when_a_canary_checked_the_same_metric(store_data: StoreData) -> None:
    """The stored verdict of a deploy with a canary check lists each metric twice (before/after,
    then canary): the table shows the before/after effect, not the canary's "n/a"."""
    d = store_data.improvement  # search v7.1.0: latency_p99 confirmed, -120 ms
    save_rate_canary(store_data, d, "latency_p99", 1.0)
    store = open_store(store_data.url)
    try:
        assert {m.role for m in store.latest_verdicts([d.deploy_id])[d.deploy_id].metrics} == {"expectation", "canary"}
    finally:
        store.close()
    at = AppTest.from_file(APP, default_timeout=30)
    at.query_params["hist_svc"] = "search"
    at.switch_page("views/history.py").run()
    assert not at.exception
    row = at.dataframe[0].value.set_index("version").loc["v7.1.0"]
    assert row["latency_p99"] == "confirmed: -120.0 ms (+50%)", row["latency_p99"]


def test_store_down_is_an_error_banner_never_no_deploys_yet(monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL down: the page showed the store error *and* "No deploys stored yet: send deploy
    events", telling an on-call engineer the deploys were never sent."""
    from analyzers.demo.promserver import free_port

    monkeypatch.delenv("ANALYZERS_CONFIG", raising=False)
    monkeypatch.setenv("DEPLOY_STORE_URL", f"postgresql://deploys:pw@127.0.0.1:{free_port()}/deploys")
    at = AppTest.from_file(APP, default_timeout=30)
    at.switch_page("views/history.py").run()
    assert not at.exception, at.exception
    assert any("deploy store is unavailable" in e.value for e in at.error), [e.value for e in at.error]
    assert not any("No deploys stored yet" in i.value for i in at.info), [i.value for i in at.info]
