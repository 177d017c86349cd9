"""Deploy detail page (AppTest): verdict, evidence per metric, safe text, reports, failure banners.

Prometheus is down here (closed port) unless the test uses the ``prom`` fixture: the verdict
evidence still shows, each chart says why it is missing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from analyzers.events.store import open_store
from tests.app.conftest import APP, HOSTILE_DESCRIPTION, StoreData, free_port


def open_deploy(deploy_id: str | None, tz: str = "UTC", **query: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=30)
    at.context = {"timezone": tz}
    if deploy_id is not None:
        at.query_params["deploy"] = deploy_id
    for k, v in query.items():
        at.query_params[k] = v
    return at.run()


def markdown_text(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


def html_text(at: AppTest) -> str:
    """The plain-text blocks (title, verdict banner, event fields): HTML with every value escaped."""
    return "\n".join(h.proto.body for h in at.get("html"))


def verdict_banner(at: AppTest) -> str:
    return next(h.proto.body for h in at.get("html") if "verdict-banner-title" in h.proto.body)


@pytest.fixture
def actions_allowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store_data: StoreData) -> Path:
    """A config file that turns the dashboard's write actions on (store and Prometheus from the env)."""
    cfg = tmp_path / "analyzers.toml"
    cfg.write_text("[dashboard]\nallow_actions = true\n")
    monkeypatch.setenv("ANALYZERS_CONFIG", str(cfg))
    return cfg


def test_regression_shows_fail_with_evidence(store_data: StoreData) -> None:
    at = open_deploy("dep-regression")
    assert not at.exception
    assert '<h1 style="margin:0 0 .25rem 0;font-size:2rem" data-testid="deploy-title">Deploy: checkout v2.4.0</h1>' \
        in html_text(at)
    banner = verdict_banner(at)  # verdict first and big: the page's first block after the title
    assert ">FAIL</div>" in banner and "font-size:2.1rem" in banner
    assert "Guard error_ratio regressed" in banner
    assert at.get("html")[1].proto.body == banner
    md = markdown_text(at)
    assert ":red-badge[regressed]" in md and ":green-badge[ok]" in md
    # Failing metrics first, though the verdict stores the passing guard first.
    assert md.index(":red-badge[regressed]") < md.index(":green-badge[ok]")
    metrics = [(m.label, m.value) for m in at.metric]
    assert metrics[:5] == [
        ("Effect", "+4.10 pp"), ("95% CI", "+3.50 to +4.70 pp"), ("p-value", "< 0.0001"),
        ("p (Bonferroni-adjusted)", "< 0.0001"), ("Points before / after", "180 / 30"),
    ]
    # A ratio's shift is in percentage points, apart from the relative change in %.
    assert any("Effect +4.10 pp · relative change +50% of the before level" in c.value for c in at.caption)
    assert ("Effect", "+2.0 ms") in metrics  # seconds shown as ms, units on every number
    assert any("baseline: previous\\_day" in c.value for c in at.caption)
    queries = [t.value for t in at.text if t.value != HOSTILE_DESCRIPTION]
    assert queries == ['error_ratio{service="checkout"}', 'latency_p99{service="checkout"}']
    assert 'data-kind="warning"' in html_text(at) and "Overlapping deploys within 30m: search v7.0.9" in html_text(at)


def test_event_text_is_never_rendered_as_markup(store_data: StoreData) -> None:
    at = open_deploy("dep-regression")
    assert [t.value for t in at.text if "{" not in t.value] == [HOSTILE_DESCRIPTION]  # the rest: PromQL
    md = markdown_text(at)
    assert "<script>" not in md
    assert "](javascript" not in md
    assert "<script>" not in html_text(at)


def test_overlapping_and_history_and_times(store_data: StoreData) -> None:
    at = open_deploy("dep-regression", tz="America/New_York")
    history = at.dataframe[0].value
    assert list(history["verdict"]) == ["fail", "inconclusive"]  # newest first
    assert "checked at (America/New_York)" in history.columns
    started = store_data.regression.started_at.astimezone(__import__("zoneinfo").ZoneInfo("America/New_York"))
    assert f"<li><b>Started:</b> {started.strftime('%Y-%m-%d %H:%M:%S')} E" in html_text(at)


def test_report_downloads_are_offered(store_data: StoreData, actions_allowed: Path) -> None:
    at = open_deploy("dep-regression")
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels == ["Download report (Markdown)", "Download report (JSON)", "Download report (HTML)"]
    assert at.button(key="reverify").proto.label == "Re-verify now"


def test_read_only_by_default_no_button_writes(store_data: StoreData) -> None:
    """Without ``[dashboard] allow_actions = true`` nothing on the page can write to the store."""
    at = open_deploy("dep-regression")
    assert not at.exception
    assert not [b for b in at.button if b.key == "reverify"]
    assert any("Read-only dashboard" in c.value and "allow\\_actions" not in c.value and "allow_actions" in c.value
               for c in at.caption)
    assert at.get("download_button")  # reading (downloading reports) stays available


def test_unverified_deploy_offers_verify_now(store_data: StoreData, actions_allowed: Path) -> None:
    at = open_deploy("dep-unverified")
    assert not at.exception
    assert ">NOT VERIFIED YET</div>" in verdict_banner(at)
    assert at.button(key="reverify").proto.label == "Verify now"
    assert not at.get("download_button")


def test_release_shows_its_flag_and_unsigned_warning(store_data: StoreData) -> None:
    at = open_deploy("rel-flag")
    assert "Release: payments v3.0.0</h1>" in html_text(at)
    assert "(flag new-router: 0% → 50%)" in html_text(at)
    assert any("no valid webhook signature" in w.value for w in at.warning)


def test_prometheus_down_each_chart_says_so_rest_renders(store_data: StoreData) -> None:
    at = open_deploy("dep-regression")
    errors = [e.value for e in at.error]
    assert len(errors) == 2
    assert all("Prometheus is unreachable" in e and "PROMETHEUS_URL" in e for e in errors)
    assert at.metric  # the evidence from the stored verdict is still there


def test_reverify_with_prometheus_down_stores_nothing(store_data: StoreData, actions_allowed: Path) -> None:
    """The outage contract: Prometheus unreachable is a banner that says what to do, never a verdict."""
    at = open_deploy("dep-regression")
    at.button(key="reverify").click().run()
    assert not at.exception
    errors = " ".join(e.value for e in at.error)
    assert ("Nothing was stored" in errors or "no verdict was stored" in errors) and "Prometheus" in errors
    assert ">FAIL</div>" in verdict_banner(at)  # the stored verdict still stands
    store = open_store(store_data.url)
    try:
        history = store.verdict_history("dep-regression")
    finally:
        store.close()
    assert [v.overall for v in history] == ["inconclusive", "fail"]  # nothing new stored


def test_unknown_deploy_says_so(store_data: StoreData) -> None:
    at = open_deploy("no-such-deploy")
    assert not at.exception
    assert "No deploy with id no-such-deploy in the store" in html_text(at)


def test_without_id_offers_a_picker(store_data: StoreData) -> None:
    at = AppTest.from_file(APP, default_timeout=30).run()
    at.switch_page("views/deploy.py").run()
    assert not at.exception
    picker = at.selectbox(key="deploy_pick")
    assert any(o.startswith("checkout v2.4.0 · production") for o in picker.options)
    picker.select("dep-improvement").run()
    assert not at.exception
    assert "Deploy: search v7.1.0</h1>" in html_text(at)
    assert ">PASS</div>" in verdict_banner(at)


def test_store_down_banner(store_data: StoreData, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DEPLOY_STORE_URL", f"postgresql://dash@127.0.0.1:{free_port()}/deploys")
    at = open_deploy("dep-regression")
    assert not at.exception
    assert any("deploy store is unavailable" in e.value for e in at.error)
