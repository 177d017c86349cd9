"""Errors page (AppTest) against the real Prometheus of the ``prom`` fixture.

The scenario's ``regression`` deploy multiplies checkout's error ratio by 10 from its new
version on: around it, the new version must lead "who is failing", its line must rise in the
per-version chart while the old one stays flat, and BubbleUp must name the version.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from streamlit.testing.v1 import AppTest

from analyzers.events.store import open_store
from analyzers.model import Deploy
from dashboard.components.common import md_code, url_time
from tests.app import test_latency_page
from tests.app.conftest import APP
from tests.app.test_latency_page import arr

scenario_store = test_latency_page.scenario_store  # the Latency page's fixture: the scenario in a store

pytestmark = pytest.mark.integration


def open_errors(query: dict[str, Any], tz: str = "UTC") -> AppTest:
    at = AppTest.from_file(APP, default_timeout=90)
    at.context = {"timezone": tz}
    at.query_params.update(query)
    at.switch_page("views/errors.py").run()
    assert not at.exception, at.exception
    return at


def around(deploy: Any, before_h: float = 1.0, after_min: float = 40.0) -> dict[str, str]:
    return {"err_range": "custom", "err_from": url_time(deploy.started_at - timedelta(hours=before_h)),
            "err_to": url_time(deploy.started_at + timedelta(minutes=after_min))}


def frames(at: AppTest) -> list[Any]:
    return [d.value for d in at.dataframe]


def test_new_version_leads_who_is_failing_and_bubbleup_names_it(scenario_store: dict[str, Any]) -> None:
    regression = scenario_store["regression"]
    at = open_errors({"svc": "checkout", "err_by": "version", **around(regression)})
    assert not at.error, [e.value for e in at.error]
    assert at.selectbox(key="err_by").value == "version"
    who, bubble = frames(at)
    assert who["version"].iloc[0] == regression.version  # the new version fails most
    assert who["excess"].iloc[0].startswith("+") and who["excess"].iloc[0].endswith(" pp")
    assert who["error ratio"].iloc[0].endswith("%")
    md = "\n".join(m.value for m in at.markdown)  # label and value as code spans: inert, never linkified
    assert f"`version` = `{regression.version}`" in md and "pp)" in md and "(Holm)" in md
    assert bubble["label"].iloc[0] == "version" and bubble["stands out"].iloc[0] == "yes"


def test_per_version_lines_side_by_side_in_the_viewers_zone(scenario_store: dict[str, Any]) -> None:
    regression = scenario_store["regression"]
    at = open_errors({"svc": "checkout", "err_by": "version", **around(regression)}, tz="Asia/Kolkata")
    spec = next(json.loads(c.proto.spec) for c in at.get("plotly_chart") if "err_ratio" in c.proto.id)
    lines = {t["name"]: t for t in spec["data"] if t.get("mode") == "lines"}
    assert regression.version in lines and len(lines) == 2
    assert spec["layout"]["yaxis"]["title"]["text"] == "error ratio (%)"
    assert "Asia/Kolkata" in spec["layout"]["xaxis"]["title"]["text"]
    new = arr(lines[regression.version]["y"]).astype(float)
    old = next(arr(t["y"]).astype(float) for n, t in lines.items() if n != regression.version)
    assert float(new[-10:].mean()) > 3 * float(old[:20].mean())


def test_slow_tail_bubbleup_and_a_range_without_data(scenario_store: dict[str, Any]) -> None:
    regression = scenario_store["regression"]
    at = open_errors({"svc": "checkout", "bu": "slow", **around(regression)})
    assert at.radio(key="bu").value == "slow"
    md = "\n".join(m.value for m in at.markdown)
    assert not at.error and "slower than" in md and " ms" in md
    # a range before any data: said plainly, no empty charts, no error
    at = open_errors({"svc": "checkout", "err_range": "custom", "err_from": "2020-01-01T00:00",
                      "err_to": "2020-01-01T06:00"})
    assert not at.error and any("No request series" in i.value for i in at.info)
    assert not at.get("plotly_chart")


def test_unreachable_prometheus_is_an_error_banner_not_an_empty_page(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, stopped_prometheus_url: str
) -> None:
    monkeypatch.delenv("ANALYZERS_CONFIG", raising=False)
    monkeypatch.setenv("PROMETHEUS_URL", stopped_prometheus_url)
    monkeypatch.setenv("DEPLOY_STORE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    at = open_errors({"svc": "checkout"})
    assert any("cannot reach Prometheus" in e.value for e in at.error), [e.value for e in at.error]
    assert not any("No request series" in i.value for i in at.info)  # never "no data" for "no server"


def test_a_hostile_service_name_is_shown_as_code_never_as_markup(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, prom: Any
) -> None:
    """A service name from an event (or a crafted link) holding a URL, link syntax and backticks:
    every place the page names it shows it in a code span, which Streamlit never turns into a link."""
    hostile = "https://evil.example/x [t](http://e) `a` www.evil.example"
    url = f"sqlite:///{tmp_path / 'deploys.db'}"
    store = open_store(url)
    try:
        d = Deploy(deploy_id="h1", service=hostile, environment="production", version="v1",
                   started_at=datetime.now(UTC) - timedelta(hours=1))
        store.record_event("generic", "hostile-1", d.to_dict(), d)
    finally:
        store.close()
    monkeypatch.delenv("ANALYZERS_CONFIG", raising=False)
    monkeypatch.setenv("DEPLOY_STORE_URL", url)
    monkeypatch.setenv("PROMETHEUS_URL", prom.url)
    at = open_errors({"svc": hostile})
    assert at.selectbox(key="svc").value == hostile
    shown = [e.value for e in (*at.caption, *at.info, *at.markdown) if "evil.example" in e.value]
    assert len(shown) >= 2, shown  # the caption and the "no request series" note name it
    fenced = md_code(hostile)
    for text in shown:
        assert fenced in text, text
        assert "evil.example" not in text.replace(fenced, ""), text  # nowhere outside the code span


def test_deploy_page_links_to_who_is_failing_around_that_deploy_and_back(scenario_store: dict[str, Any]) -> None:
    """"Errors are up" at 3 a.m.: from a deploy's page one link opens the Errors page around that
    deploy, broken down by version, the same instants in any zone, with a link back to the deploy.
    The deploy page used to link only to the Latency page."""
    from urllib.parse import parse_qs

    regression = scenario_store["regression"]
    at = AppTest.from_file(APP, default_timeout=90)
    at.query_params["deploy"] = regression.deploy_id
    at.run()
    assert not at.exception, at.exception
    link = next(p for p in at.get("page_link") if p.proto.label.startswith("Errors around this deploy"))
    params = {k: v[0] for k, v in parse_qs(link.proto.query_string).items()}
    assert params["svc"] == "checkout" and params["err_range"] == "custom" and params["err_by"] == "version"
    assert params["err_from"] == url_time(regression.started_at - timedelta(hours=3))

    at = open_errors(params, tz="Asia/Kolkata")
    assert not at.error, [e.value for e in at.error]
    who = frames(at)[0]
    assert who["version"].iloc[0] == regression.version  # the new version leads "who is failing"
    caption = next(c.value for c in at.caption if "IST" in c.value)
    start_ist = (regression.started_at - timedelta(hours=3)).astimezone(ZoneInfo("Asia/Kolkata"))
    assert start_ist.strftime("%Y-%m-%d %H:%M IST") in caption  # the same instants, in the viewer's zone
    back = next(p for p in at.get("page_link") if p.proto.label.startswith("Back to the deploy"))
    assert parse_qs(back.proto.query_string)["deploy"] == [regression.deploy_id]


def test_a_slow_prometheus_shows_what_the_page_waits_for_not_a_blank_page(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, store_data: Any
) -> None:
    """Prometheus slow mid-incident (a loopback server that accepts and never answers, 2 s timeout):
    the Errors page's first query (the service's labels) ran with no spinner, so the page stayed blank
    under its caption until the timeout (30 s by default). Every message the page sends is recorded
    (Streamlit keeps only the last state of each element, and a spinner appears after 0.5 s)."""
    import socket

    from streamlit.runtime.forward_msg_queue import ForwardMsgQueue

    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(16)  # the kernel completes the handshakes; nothing ever reads or answers
    config = tmp_path / "slow.toml"
    config.write_text(f'[prometheus]\nurl = "http://127.0.0.1:{hole.getsockname()[1]}"\ntimeout = "2s"\n'
                      f'[store]\nurl = "{store_data.url}"\n')
    monkeypatch.delenv("PROMETHEUS_URL", raising=False)
    monkeypatch.setenv("ANALYZERS_CONFIG", str(config))
    spinners: list[str] = []
    enqueue = ForwardMsgQueue.enqueue

    def record(self: ForwardMsgQueue, msg: Any) -> None:
        if msg.HasField("delta") and msg.delta.HasField("new_transient"):  # how Streamlit sends a spinner
            spinners.extend(e.spinner.text for e in msg.delta.new_transient.elements if e.HasField("spinner"))
        enqueue(self, msg)

    monkeypatch.setattr(ForwardMsgQueue, "enqueue", record)
    try:
        at = open_errors({"svc": "checkout"})
    finally:
        hole.close()
    assert any("Asking Prometheus which labels" in s and "`checkout`" in s and "2 s" in s for s in spinners), spinners
    assert any("cannot reach Prometheus" in e.value for e in at.error), [e.value for e in at.error]


def test_link_with_exact_times_opens_the_same_instants_later_and_in_another_zone(store_data: Any) -> None:
    """A link pasted in the incident channel: `?err_range=6h` means "the 6 h before whoever opens it",
    so a colleague opening it later saw another window. The sidebar offers the same view with the
    range pinned (UTC minutes in the URL, every other choice kept), shown in each viewer's zone."""
    from urllib.parse import parse_qs, urlsplit

    from tests.app.test_latency_page import open_latency

    at = open_errors({"svc": "checkout", "err_range": "6h", "err_by": "version"}, tz="America/New_York")
    link = next(c.value for c in at.code if "err_range=custom" in c.value)
    params = {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}
    assert params["svc"] == "checkout" and params["err_by"] == "version"
    t0, t1 = (datetime.fromisoformat(params[k]).replace(tzinfo=UTC) for k in ("err_from", "err_to"))
    assert timedelta(hours=6) <= t1 - t0 <= timedelta(hours=6, minutes=2)
    assert abs(datetime.now(UTC) - t1) < timedelta(minutes=5)

    later = open_errors(params, tz="Asia/Kolkata")  # another viewer, another zone: the same instants
    ist = ZoneInfo("Asia/Kolkata")
    span = f"{t0.astimezone(ist):%Y-%m-%d %H:%M} IST → {t1.astimezone(ist):%Y-%m-%d %H:%M} IST"
    assert any(span in c.value for c in later.caption), [c.value for c in later.caption]

    lat = open_latency({"svc": "checkout", "lat_range": "1h", "live": "true"})
    pinned = next(c.value for c in lat.code if "lat_range=custom" in c.value)
    assert "live=" not in pinned and "svc=checkout" in pinned  # a pinned range does not auto-refresh
