"""Deploy detail page (AppTest): verdict, evidence per metric, safe text, reports, failure banners.

Prometheus is down here (closed port) unless the test uses the ``prom`` fixture: the verdict
evidence still shows, each chart says why it is missing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.app.conftest import APP, HOSTILE_DESCRIPTION, StoreData, free_port


def open_deploy(deploy_id: str | None, tz: str = "UTC") -> AppTest:
    at = AppTest.from_file(APP, default_timeout=30)
    at.context = {"timezone": tz}
    if deploy_id is not None:
        at.query_params["deploy"] = deploy_id
    return at.run()


def markdown_text(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


def test_regression_shows_fail_with_evidence(store_data: StoreData) -> None:
    at = open_deploy("dep-regression")
    assert not at.exception
    assert at.title[0].value.startswith("Deploy: checkout v2")
    md = markdown_text(at)
    assert ":red-badge[FAIL]" in md
    assert "error\\_ratio regressed" in md
    assert ":red-badge[regressed]" in md and ":green-badge[ok]" in md
    metrics = [(m.label, m.value) for m in at.metric]
    assert metrics[:5] == [
        ("Effect", "+4.10%"), ("95% CI", "3.50% … 4.70%"), ("p-value", "1e-06"), ("p (Holm-adjusted)", "2e-06"),
        ("Points before / after", "180 / 30"),
    ]
    assert ("Effect", "+2.0 ms") in metrics  # seconds shown as ms, units on every number
    assert any("baseline: previous\\_day" in c.value for c in at.caption)
    queries = [t.value for t in at.text if t.value != HOSTILE_DESCRIPTION]
    assert queries == ['error_ratio{service="checkout"}', 'latency_p99{service="checkout"}']
    assert any("Overlapping deploys" in w.value for w in at.warning)


def test_event_text_is_never_rendered_as_markup(store_data: StoreData) -> None:
    at = open_deploy("dep-regression")
    assert [t.value for t in at.text if "{" not in t.value] == [HOSTILE_DESCRIPTION]  # the rest: PromQL
    md = markdown_text(at)
    assert "<script>" not in md
    assert "](javascript" not in md


def test_overlapping_and_history_and_times(store_data: StoreData) -> None:
    at = open_deploy("dep-regression", tz="America/New_York")
    history = at.dataframe[0].value
    assert list(history["verdict"]) == ["fail", "inconclusive"]  # newest first
    assert "checked at (America/New_York)" in history.columns
    started = store_data.regression.started_at.astimezone(__import__("zoneinfo").ZoneInfo("America/New_York"))
    assert f"**Started:** {started.strftime('%Y-%m-%d %H:%M:%S')} E" in markdown_text(at)


def test_report_downloads_are_offered(store_data: StoreData) -> None:
    at = open_deploy("dep-regression")
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels == ["Download report (Markdown)", "Download report (JSON)", "Download report (HTML)"]
    assert at.button(key="reverify").proto.label == "Re-verify now"


def test_unverified_deploy_offers_verify_now(store_data: StoreData) -> None:
    at = open_deploy("dep-unverified")
    assert not at.exception
    assert ":gray-badge[NOT VERIFIED YET]" in markdown_text(at)
    assert at.button(key="reverify").proto.label == "Verify now"
    assert not at.get("download_button")


def test_release_shows_its_flag_and_unsigned_warning(store_data: StoreData) -> None:
    at = open_deploy("rel-flag")
    assert at.title[0].value.startswith("Release: payments")
    assert "new\\-router" in markdown_text(at)
    assert any("no valid webhook signature" in w.value for w in at.warning)


def test_prometheus_down_each_chart_says_so_rest_renders(store_data: StoreData) -> None:
    at = open_deploy("dep-regression")
    errors = [e.value for e in at.error]
    assert len(errors) == 2
    assert all("Prometheus is unreachable" in e and "PROMETHEUS_URL" in e for e in errors)
    assert at.metric  # the evidence from the stored verdict is still there


def test_reverify_with_prometheus_down_stores_nothing(store_data: StoreData) -> None:
    at = open_deploy("dep-unverified")
    at.button(key="reverify").click().run()
    assert not at.exception
    assert any("no verdict was stored" in e.value for e in at.error)
    assert ":gray-badge[NOT VERIFIED YET]" in markdown_text(at)


def test_unknown_deploy_says_so(store_data: StoreData) -> None:
    at = open_deploy("no-such-deploy")
    assert not at.exception
    assert any("No deploy with id no\\-such\\-deploy" in w.value for w in at.warning)


def test_without_id_offers_a_picker(store_data: StoreData) -> None:
    at = AppTest.from_file(APP, default_timeout=30).run()
    at.switch_page("views/deploy.py").run()
    assert not at.exception
    picker = at.selectbox(key="deploy_pick")
    assert any(o.startswith("checkout v2.4.0 · production") for o in picker.options)
    picker.select("dep-improvement").run()
    assert not at.exception
    assert at.title[0].value.startswith("Deploy: search v7")
    assert ":green-badge[PASS]" in markdown_text(at)


def test_store_down_banner(store_data: StoreData, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DEPLOY_STORE_URL", f"postgresql://dash@127.0.0.1:{free_port()}/deploys")
    at = open_deploy("dep-regression")
    assert not at.exception
    assert any("deploy store is unavailable" in e.value for e in at.error)
