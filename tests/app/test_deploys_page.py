"""Deploys page (AppTest): timeline and table with verdicts, URL-bound filters, store-down banner."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.app.conftest import APP, StoreData, free_port


def run_app(query: dict[str, object] | None = None, tz: str | None = "Europe/Berlin") -> AppTest:
    at = AppTest.from_file(APP, default_timeout=30)
    if tz:
        at.context = {"timezone": tz}
    for k, v in (query or {}).items():
        at.query_params[k] = v
    return at.run()


def table(at: AppTest):
    assert len(at.dataframe) == 1, "the deploy table is missing"
    return at.dataframe[0].value


def metric_values(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def timeline_spec(at: AppTest) -> dict:
    charts = at.get("plotly_chart")
    assert charts, "the timeline is missing"
    return json.loads(charts[0].proto.spec)


def test_lists_deploys_with_their_verdicts(store_data: StoreData) -> None:
    at = run_app()
    assert not at.exception
    assert not at.error
    assert metric_values(at) == {
        "Deploys": "4", "Failed": "1", "Inconclusive": "0", "Passed": "1", "Not verified yet": "2",
    }
    df = table(at)
    by_version = df.set_index("version")
    assert by_version.loc["v2.4.0", "verdict"] == "fail"
    assert "error_ratio regressed" in by_version.loc["v2.4.0", "reason"]
    assert by_version.loc["v7.1.0", "verdict"] == "pass"
    assert by_version.loc["v2.4.1", "verdict"] == "unverified"
    assert by_version.loc["v3.0.0", "kind"] == "release"
    assert by_version.loc["v3.0.0", "signed"] == "NO"
    assert by_version.loc["v2.4.0", "open"] == "deploy?deploy=dep-regression"
    # newest first
    assert list(df["version"]) == ["v2.4.1", "v3.0.0", "v2.4.0", "v7.1.0"]


def test_times_are_in_the_viewer_zone_and_say_which(store_data: StoreData) -> None:
    at = run_app(tz="Asia/Tokyo")
    df = table(at)
    col = "started at (Asia/Tokyo)"
    assert col in df.columns
    local = (store_data.regression.started_at + timedelta(hours=9)).strftime("%Y-%m-%d %H:%M")
    assert df.set_index("version").loc["v2.4.0", col] == f"{local} JST"
    assert any("Asia/Tokyo" in c.value for c in at.caption)


def test_falls_back_to_utc_and_says_so(store_data: StoreData) -> None:
    at = run_app(tz=None)
    assert "started at (UTC)" in table(at).columns
    assert any("shown in UTC" in c.value for c in at.caption)


def test_timeline_colours_by_verdict_and_marks_releases_and_unsigned(store_data: StoreData) -> None:
    spec = timeline_spec(run_app())
    traces = {t["name"]: t for t in spec["data"]}
    assert set(traces) == {"fail", "pass", "unverified", "unsigned"}
    assert traces["fail"]["marker"]["color"] == "#d62728"
    assert traces["pass"]["marker"]["color"] == "#2e9e44"
    assert traces["fail"]["customdata"] == ["dep-regression"]
    # one trace per symbol, one legend entry per verdict state
    unverified = {c: t["marker"]["symbol"] for t in spec["data"] if t["name"] == "unverified" for c in t["customdata"]}
    assert unverified == {"rel-flag": "diamond-open", "dep-unverified": "circle-open"}
    legend = [t["name"] for t in spec["data"] if t.get("showlegend", True)]
    assert sorted(legend) == sorted(set(legend))
    assert traces["unsigned"]["customdata"] == ["rel-flag"]
    hover = " ".join(traces["fail"]["hovertext"])
    assert "checkout" in hover and "v2.4.0" in hover and "alice" in hover and "verdict: fail" in hover
    assert spec["layout"]["xaxis"]["title"]["text"] == "time (Europe/Berlin)"


def test_filters_come_from_the_url(store_data: StoreData) -> None:
    at = run_app({"service": ["search", "payments"]})
    assert not at.exception
    assert sorted(table(at)["version"]) == ["v3.0.0", "v7.1.0"]
    assert at.multiselect(key="service").value == ["search", "payments"]

    at = run_app({"env": "staging"})
    assert list(table(at)["version"]) == ["v3.0.0"]
    assert at.selectbox(key="env").value == "staging"


def test_time_range_presets_and_custom_range(store_data: StoreData) -> None:
    at = run_app({"range": "7d"})
    assert at.selectbox(key="range").value == "7d"
    assert metric_values(at)["Deploys"] == "4"

    # A custom range (viewer's zone: UTC here) holding only the improvement deploy.
    t = store_data.improvement.started_at
    at = run_app(
        {
            "range": "custom",
            "from": (t - timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M"),
            "to": (t + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M"),
        },
        tz="UTC",
    )
    assert not at.exception
    assert list(table(at)["version"]) == ["v7.1.0"]

    # Switching the preset in the sidebar reloads the page for that range.
    at.selectbox(key="range").select("24h").run()
    assert metric_values(at)["Deploys"] == "4"


def test_empty_range_says_what_to_do(store_data: StoreData) -> None:
    t = store_data.now - timedelta(days=20)
    at = run_app(
        {"range": "custom", "from": t.strftime("%Y-%m-%dT%H:%M"),
         "to": (t + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")},
        tz="UTC",
    )
    assert not at.exception
    assert metric_values(at)["Deploys"] == "0"
    assert any("No deploys between" in i.value for i in at.info)


@pytest.mark.parametrize("kind", ["sqlite-unopenable", "postgres-refused"])
def test_store_down_shows_a_banner_not_a_traceback(
    store_data: StoreData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    if kind == "sqlite-unopenable":
        blocker = tmp_path / "not-a-directory"
        blocker.write_text("a file where the store's directory should be")
        url = f"sqlite:///{blocker / 'deploys.db'}"
    else:
        url = f"postgresql://dash:secret@127.0.0.1:{free_port()}/deploys"
    monkeypatch.setenv("DEPLOY_STORE_URL", url)
    at = run_app()
    assert not at.exception
    errors = " ".join(e.value for e in at.error)
    assert "deploy store is unavailable" in errors
    assert "DEPLOY\\_STORE\\_URL" in errors or "DEPLOY_STORE_URL" in errors
    assert not at.dataframe
    assert "secret" not in errors


def test_a_deploys_link_keeps_the_utc_switch(store_data: StoreData) -> None:
    """The details link opens a new page: a viewer who switched to UTC must not land in their
    browser's zone there (the Deploys page said UTC, the deploy page would say CET)."""
    at = run_app({"utc": "true"})
    assert not at.exception
    assert table(at).set_index("version").loc["v2.4.0", "open"] == "deploy?deploy=dep-regression&utc=true"
    assert table(run_app()).set_index("version").loc["v2.4.0", "open"] == "deploy?deploy=dep-regression"


def test_a_missing_store_is_an_error_banner_and_is_not_created(store_data: StoreData, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Started without the receiver's store (no config, a typo in DEPLOY_STORE_URL), the dashboard said
    "No deploys ... send deploy events" over an empty ./data/deploys.db it had just created."""
    missing = tmp_path / "nowhere" / "deploys.db"
    monkeypatch.setenv("DEPLOY_STORE_URL", f"sqlite:///{missing}")
    at = run_app()
    assert not at.exception
    text = " ".join(e.value for e in at.error).replace("\\", "")  # the banner is Markdown-escaped
    assert "no deploy store at" in text and "DEPLOY_STORE_URL" in text and "ANALYZERS_CONFIG" in text, text
    assert not any("No deploys" in i.value for i in at.info)
    assert not missing.exists() and not missing.parent.exists()
