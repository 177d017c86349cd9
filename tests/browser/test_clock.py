"""One correct clock, seen by a real browser in four zones: the data, the deploy line, the shaded
windows and the text all agree, and the deploy line falls where the data changes.

Chromium is put in each zone with CDP ``Emulation.setTimezoneOverride`` before the page loads,
so Streamlit learns the zone the way it does for a real viewer (``st.context.timezone``). What must
hold is that every x (data, markers, shapes, ranges) is drawn at the *wall-clock time in the
viewer's zone* of its instant: read from Plotly's computed positions for the Deploy and Deploys
pages, and from the uPlot chart's drawn positions, x scale and axis clock for the Latency page's
percentile chart (:mod:`tests.browser.uplot`).
Screenshots of each page in two zones go to ``test-artifacts/`` (committed).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from tests.browser.conftest import ROOT, Dashboard
from tests.browser.test_dashboard_browser import assert_clean_log, body_text, idle, wait_for
from tests.browser.uplot import chart_figures

pytestmark = [pytest.mark.browser, pytest.mark.integration]

ZONES = ("UTC", "America/New_York", "Asia/Kolkata", "Pacific/Chatham")
#: Zones whose screenshots are kept in test-artifacts/ (two, as evidence; the rest only assert).
SCREENSHOT_ZONES = ("America/New_York", "Asia/Kolkata")
ARTIFACTS = ROOT / "test-artifacts"

FIGURES_JS = """
// Positions as Plotly draws them ("calc" values: ms of the wall-clock time shown on the axis),
// not as they were sent: a number and a string that look alike are drawn hours apart.
return Array.from(document.querySelectorAll('[data-testid="stPlotlyChart"] .js-plotly-plot')).map(el => {
  const ax = el._fullLayout.xaxis;
  const num = v => (typeof v === 'number' && isFinite(v)) ? v : null;
  return {
    title: (el.layout.xaxis && el.layout.xaxis.title) ? el.layout.xaxis.title.text : null,
    range: ax.range.map(v => ax.r2c(v)),
    traces: (el._fullData || []).map((t, k) => ({
      name: t.name,
      x: (el.calcdata[k] || []).map(c => num(c.x)),
      y: (el.calcdata[k] || []).map(c => num(c.y)),
      customdata: t.customdata ? Array.from(t.customdata, c => (Array.isArray(c) ? c[0] : c)) : [],
    })),
    shapes: (el._fullLayout.shapes || []).map(s => ({type: s.type, x0: ax.r2c(s.x0), x1: ax.r2c(s.x1),
                                                   color: s.line ? s.line.color : null})),
  };
});
"""


def set_zone(driver: Any, zone: str) -> None:
    try:
        driver.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": zone})
    except Exception as exc:  # noqa: BLE001 - CDP refuses to set the zone already in force
        if "already in effect" not in str(exc):
            raise


def wall_ms(ts: datetime, zone: str) -> float:
    """What Plotly must be given for ``ts`` in ``zone``: its wall-clock time as if UTC, in ms."""
    local = ts.astimezone(ZoneInfo(zone)).replace(tzinfo=None)
    return (pd.Timestamp(local) - pd.Timestamp(0)).total_seconds() * 1000


def as_ms(x: Any) -> float:
    """A Plotly date-axis value (number of ms, or a date string without offset) as ms."""
    if isinstance(x, (int, float)):
        return float(x)
    return (pd.Timestamp(str(x)) - pd.Timestamp(0)).total_seconds() * 1000


def assert_names_zone(title: str | None, zone: str) -> str:
    """The axis title names the zone (Chromium may report an ICU alias: Asia/Calcutta for
    Asia/Kolkata); returns the name the page uses."""
    assert title and title.startswith("time (") and title.endswith(")"), title
    name = title[len("time ("):-1]
    probes = [datetime(2026, m, 15, 12, tzinfo=UTC) for m in (1, 4, 7, 10)]
    assert [p.astimezone(ZoneInfo(name)).utcoffset() for p in probes] == \
        [p.astimezone(ZoneInfo(zone)).utcoffset() for p in probes], f"{name} is not {zone}"
    return name


def figures(driver: Any) -> list[dict[str, Any]]:
    return driver.execute_script(FIGURES_JS)


def change_x(xs: list[Any], ys: list[float], *, before: int, after: int) -> float:
    """Where the series changes most: the split maximising |mean(after) - mean(before)|."""
    x = np.array([np.nan if v is None else as_ms(v) for v in xs])
    y = np.array([np.nan if v is None else v for v in ys], dtype=float)
    best, best_i = -1.0, None
    for i in range(before, len(y) - after):
        a, b = y[i : i + after], y[i - before : i]
        if np.isfinite(a).sum() < after // 2 or np.isfinite(b).sum() < before // 2:
            continue
        gap = abs(np.nanmean(a) - np.nanmean(b))
        if gap > best:
            best, best_i = gap, i
    assert best_i is not None, "no part of the series had data on both sides"
    return float(x[best_i])


def save(driver: Any, name: str, zone: str) -> None:
    if zone not in SCREENSHOT_ZONES:
        return
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}-{zone.replace('/', '_')}.png"
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 10_000, f"screenshot {path} looks empty"


def scenario_deploy(prom: Any, case: str) -> Any:
    from analyzers.events.schema import parse_event

    sd = next(d for d in prom.scenario.deploys if d.case == case)
    return parse_event(sd.event).to_deploy(signed=True)


@pytest.mark.parametrize("zone", ZONES)
def test_deploy_page_line_falls_where_the_data_changes(dashboard: Dashboard, browser: Any, prom: Any,
                                                      zone: str) -> None:
    regression = scenario_deploy(prom, "regression")
    set_zone(browser, zone)
    browser.get(f"{dashboard.url}/deploy?deploy={dashboard.regression_id}")
    wait_for(lambda: idle(browser) and len(figures(browser)) >= 2 and "change point" in body_text(browser),
             "the metric charts")
    fig = figures(browser)[0]  # failing metric first: error_ratio
    name = assert_names_zone(fig["title"], zone)
    expected = wall_ms(regression.started_at, zone)
    deploy_lines = [s for s in fig["shapes"] if s["type"] == "line" and s["color"] == "#111111"]
    assert len(deploy_lines) == 1
    assert abs(as_ms(deploy_lines[0]["x0"]) - expected) < 1000, "deploy line is not at the deploy's local time"
    data = next(t for t in fig["traces"] if t["name"] == "error_ratio")
    changed = change_x(data["x"], data["y"], before=20, after=10)
    assert abs(changed - expected) <= 5 * 60_000, (
        f"data changes {(changed - expected) / 60000:+.1f} min from the deploy line in {zone}")
    xs = np.array([as_ms(v) for v in data["x"]])
    rects = [s for s in fig["shapes"] if s["type"] == "rect"]
    assert len(rects) == 2
    for r in rects:  # the shaded windows hold data (a shifted chart leaves them empty)
        inside = ((xs >= as_ms(r["x0"])) & (xs <= as_ms(r["x1"]))).sum()
        assert inside >= 10, f"shaded window {r} holds {inside} points in {zone}"
    text = body_text(browser)
    from analyzers.text import format_time

    assert f"Started: {format_time(regression.started_at, ZoneInfo(zone), seconds=True)}" in text
    if zone != "UTC":
        assert f"browser's time zone, {name}" in text
    assert "T14:" not in text.split("Evidence per metric")[0] or zone == "UTC"
    clipped = browser.execute_script("""
        return Array.from(document.querySelectorAll('[data-testid="stMetricValue"], [data-testid="stMetricValue"] *'))
          .filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.textContent);""")
    assert clipped == [], f"metric cards cut their values: {clipped}"  # e.g. the 99% CI card
    save(browser, "deploy", zone)
    assert_clean_log(dashboard)


@pytest.mark.parametrize("zone", ZONES)
def test_deploys_timeline_in_the_viewers_zone(dashboard: Dashboard, browser: Any, prom: Any, zone: str) -> None:
    regression = scenario_deploy(prom, "regression")
    set_zone(browser, zone)
    browser.get(f"{dashboard.url}/deploys?range=3d")
    wait_for(lambda: idle(browser) and figures(browser) and "All " in body_text(browser), "the deploy timeline")
    fig = figures(browser)[0]
    assert_names_zone(fig["title"], zone)
    fail = next(t for t in fig["traces"] if t["name"] == "fail")
    i = fail["customdata"].index(dashboard.regression_id)
    assert abs(as_ms(fail["x"][i]) - wall_ms(regression.started_at, zone)) < 1000
    now_ms = wall_ms(datetime.now(UTC), zone)
    assert abs(as_ms(fig["range"][1]) - now_ms) < 5 * 60_000, "the range does not end at now in this zone"
    save(browser, "deploys", zone)
    assert_clean_log(dashboard)


@pytest.mark.parametrize("zone", ZONES)
def test_latency_marker_falls_where_p99_changes(dashboard: Dashboard, browser: Any, prom: Any, zone: str) -> None:
    improvement = scenario_deploy(prom, "improvement")
    set_zone(browser, zone)
    browser.get(f"{dashboard.url}/latency?svc=payments&pct=p99&deploy={improvement.deploy_id}")
    # the percentile chart is uPlot: read as drawn (tests.browser.uplot), in the figures' shape
    wait_for(lambda: idle(browser) and "Who is slow?" in body_text(browser) and any(
        t["name"] == "p99" and t["x"] for f in chart_figures(browser) for t in f["traces"]), "the latency page")
    fig = chart_figures(browser)[0]
    assert_names_zone(fig["title"], zone)
    expected = wall_ms(improvement.started_at, zone)
    markers = next(t for t in fig["traces"] if t["name"] == "deploys")
    i = markers["customdata"].index(improvement.deploy_id)
    assert abs(as_ms(markers["x"][i]) - expected) < 1000
    p99 = next(t for t in fig["traces"] if t["name"] == "p99")
    step_ms = as_ms(p99["x"][1]) - as_ms(p99["x"][0])
    n = max(5, int(20 * 60_000 / step_ms))
    changed = change_x(p99["x"], p99["y"], before=n, after=n)
    assert abs(changed - expected) <= 15 * 60_000, (
        f"p99 changes {(changed - expected) / 60000:+.1f} min from the deploy marker in {zone}")
    x0, x1 = (as_ms(v) for v in fig["range"])
    assert x0 <= expected <= x1, "the page did not open on a range holding the deploy"
    save(browser, "latency", zone)
    assert_clean_log(dashboard)


def test_utc_switch_is_kept_in_the_url(dashboard: Dashboard, browser: Any, prom: Any) -> None:
    regression = scenario_deploy(prom, "regression")
    set_zone(browser, "Asia/Kolkata")
    browser.get(f"{dashboard.url}/deploy?deploy={dashboard.regression_id}&utc=true")
    wait_for(lambda: idle(browser) and len(figures(browser)) >= 2, "the metric charts")
    fig = figures(browser)[0]
    assert fig["title"] == "time (UTC)"
    line = next(s for s in fig["shapes"] if s["type"] == "line" and s["color"] == "#111111")
    assert abs(as_ms(line["x0"]) - wall_ms(regression.started_at, "UTC")) < 1000
    assert "Times are shown in UTC (switched in the sidebar" in body_text(browser)
    assert "utc=true" in browser.current_url
    # the Latency page's uPlot chart: wall-clock UTC times on a utc scale, whatever the browser's zone
    improvement = scenario_deploy(prom, "improvement")
    browser.get(f"{dashboard.url}/latency?svc=payments&pct=p99&deploy={improvement.deploy_id}&utc=true")
    wait_for(lambda: idle(browser) and any(t["name"] == "deploys" and t["x"] for f in chart_figures(browser)
                                           for t in f["traces"]), "the latency chart")
    fig = chart_figures(browser)[0]
    assert fig["title"] == "time (UTC)" and fig["scale"] == "utc"
    markers = next(t for t in fig["traces"] if t["name"] == "deploys")
    i = markers["customdata"].index(improvement.deploy_id)
    assert abs(markers["x"][i] - wall_ms(improvement.started_at, "UTC")) < 1000
