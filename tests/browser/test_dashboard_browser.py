"""The running dashboard in headless Chromium: real clicks, real rendering, screenshots.

Screenshots land in the test's temporary directory (paths printed with ``-s``); they are
the evidence that the deploy page shows the regression as failed and that the latency page
answers "how slow, since when, who, did a deploy do it".
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from tests.browser.conftest import Dashboard
from tests.browser.uplot import chart_figures, click_at, hover_at

pytestmark = [pytest.mark.browser, pytest.mark.integration]

TIMEOUT_S = 60


def wait_for(predicate: Callable[[], Any], what: str, timeout_s: float = TIMEOUT_S) -> Any:
    deadline = time.monotonic() + timeout_s
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - stale elements while Streamlit reruns
            last_exc = exc
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what} (last error: {last_exc})")


def body_text(driver: Any) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "body").text


def idle(driver: Any) -> bool:
    """True when Streamlit is not running the script (no 'Running...' status widget)."""
    from selenium.webdriver.common.by import By

    return not driver.find_elements(By.CSS_SELECTOR, '[data-testid="stStatusWidget"]')


def plotly_count(driver: Any) -> int:
    from selenium.webdriver.common.by import By

    return len(driver.find_elements(By.CSS_SELECTOR, '[data-testid="stPlotlyChart"] .js-plotly-plot'))


def chart_points(driver: Any, chart_index: int, trace_name: str) -> list[Any]:
    """The SVG points of the trace named ``trace_name`` in the n-th Plotly chart of the page."""
    from selenium.webdriver.common.by import By

    charts = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stPlotlyChart"]')
    if len(charts) <= chart_index:
        return []
    chart = charts[chart_index]
    names = [t.get("name") for t in driver.execute_script(
        "return arguments[0].querySelector('.js-plotly-plot').data", chart)]
    if trace_name not in names:
        return []
    traces = chart.find_elements(By.CSS_SELECTOR, "g.scatterlayer g.trace")
    return traces[names.index(trace_name) - (len(names) - len(traces))].find_elements(
        By.CSS_SELECTOR, "path.point")


def click(driver: Any, element: Any) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    ActionChains(driver).move_to_element(element).pause(0.3).click().perform()


def click_until(driver: Any, find: Callable[[], Any], done: Callable[[], bool], what: str) -> None:
    """Click (re-finding the element: Streamlit re-renders) until ``done``; a few tries, since a
    click that lands while the app reruns is dropped by Plotly."""
    for _ in range(4):
        wait_for(lambda: idle(driver) and find(), f"{what} to be clickable")
        click(driver, find())
        try:
            wait_for(done, what, timeout_s=10)
            return
        except AssertionError:
            continue
    raise AssertionError(f"clicking never led to {what}")


def open_tab(driver: Any, label: str, done: Callable[[], bool]) -> None:
    """Click the page's tab labelled ``label`` until ``done`` (its panel drawn)."""
    from selenium.webdriver.common.by import By

    def tab() -> Any:
        found = [t for t in driver.find_elements(By.CSS_SELECTOR, '[data-testid="stTab"]') if t.text.strip() == label]
        return found[0] if found else None

    click_until(driver, tab, lambda: idle(driver) and done(), f"the {label!r} tab")


def shot(driver: Any, path: Path) -> Path:
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 10_000, f"screenshot {path} looks empty"
    print(f"screenshot: {path}")
    return path


def test_click_a_failed_deploy_on_the_timeline_opens_its_verdict(
    dashboard: Dashboard, browser: Any, tmp_path: Path
) -> None:
    browser.get(dashboard.url + "/?range=3d")
    wait_for(lambda: "Deploys" in body_text(browser) and chart_points(browser, 0, "fail"), "the deploy timeline")
    shot(browser, tmp_path / "deploys.png")
    assert "Not verified yet" in body_text(browser)

    click_until(browser, lambda: (chart_points(browser, 0, "fail") or [None])[0],
                lambda: "deploy=" in browser.current_url, "the deploy page URL after clicking the red marker")
    assert parse_qs(urlparse(browser.current_url).query)["deploy"] == [dashboard.regression_id]
    wait_for(lambda: "FAIL" in body_text(browser) and "regressed" in body_text(browser), "the verdict")
    wait_for(lambda: idle(browser) and plotly_count(browser) >= 2 and "change point" in body_text(browser),
             "the metric charts")
    text = body_text(browser)
    # the effect interval's card names its level (99% and up at alpha 0.01; "any-look" when it is a
    # confidence sequence valid at every look: analyzers.text.ci_label)
    assert "error_ratio" in text and re.search(r"\b99(\.\d+)?% (any-look )?CI\b", text), text[:2000]
    assert "Traceback" not in text
    shot(browser, tmp_path / "deploy.png")
    assert_clean_log(dashboard)


def test_shared_latency_link_reopens_the_view_and_markers_lead_to_deploys(
    dashboard: Dashboard, browser: Any, tmp_path: Path
) -> None:
    link = dashboard.url + "/latency?svc=checkout&lat_range=24h&pct=p50&pct=p99"
    browser.get(link)
    wait_for(lambda: idle(browser) and "Who is slow?" in body_text(browser)
             and latency_markers(browser)["customdata"], "the latency page with deploy markers")
    query = parse_qs(urlparse(browser.current_url).query)
    assert query["svc"] == ["checkout"] and query["lat_range"] == ["24h"] and query["pct"] == ["p50", "p99"]
    fig = chart_figures(browser)[0]  # the percentile chart (uPlot), as drawn
    names = [t["name"] for t in fig["traces"] if t["x"]]
    assert [n for n in names if n and n.startswith("p")] == ["p50", "p99"]
    span_h = (fig["range"][1] - fig["range"][0]) / 3600_000
    assert abs(span_h - 24) < 0.05, f"x axis spans {span_h:.2f} h, expected the requested 24 h"
    shot(browser, tmp_path / "latency.png")
    # the lower panels run when their tab is opened, and the open tab goes into the URL
    open_tab(browser, "Who is slow?", lambda: "Service-wide p99" in body_text(browser))
    assert "Service-wide p99" in body_text(browser)  # the breakdown panel rendered (its grid is a canvas)
    assert parse_qs(urlparse(browser.current_url).query)["panel"] == ["Who is slow?"]
    open_tab(browser, "Before / after", lambda: "between the two CDFs" in body_text(browser))
    text = body_text(browser)
    assert "The distributions differ" in text or "No detectable difference" in text
    assert "Service-wide p99" not in text  # a closed tab's panel is not drawn
    shot(browser, tmp_path / "latency-before-after.png")

    browser.execute_script("document.querySelector('.percentile-chart[data-ready]')"
                           ".scrollIntoView({block: 'center'})")
    time.sleep(0.5)
    markers = latency_markers(browser)
    # hovering a deploy marker names the deploy (plain text: only the tooltip's own div/b elements),
    # and the legend under the chart gives each line's value with its unit at the cursor's time
    hover_at(browser, markers["client"][0])
    tip = browser.execute_script(
        "const t = document.querySelector('.percentile-chart .pc-tip');"
        "return [t.style.display, t.textContent, Array.from(t.querySelectorAll('*'), (e) => e.tagName)]")
    assert tip[0] == "block" and "deploy: checkout " in tip[1] and "verdict: " in tip[1], tip
    assert set(tip[2]) <= {"DIV", "B"}, tip
    legend = browser.execute_script(
        "const u = document.querySelector('.percentile-chart').__chart.u;"
        "const i = u.data[2].findIndex((v) => v != null);"  # p99's first step with data
        "u.setCursor({left: u.valToPos(u.data[0][i], 'x'), top: 10});"
        "return u.root.querySelector('.u-legend').textContent")
    assert "p99" in legend and " ms (bucket " in legend, legend
    deadline = time.monotonic() + TIMEOUT_S
    while "deploy=" not in browser.current_url and time.monotonic() < deadline:
        click_at(browser, latency_markers(browser)["client"][0])  # a real click on the first deploy marker
        time.sleep(1.0)
    assert "deploy=" in browser.current_url, "the deploy page after clicking a deploy marker"
    assert parse_qs(urlparse(browser.current_url).query)["deploy"][0] in markers["customdata"]  # a marker's deploy
    wait_for(lambda: "Deploy: checkout" in body_text(browser), "the deploy header")
    shot(browser, tmp_path / "latency-marker-deploy.png")
    assert_clean_log(dashboard)


def test_deploy_page_link_opens_the_latency_before_after_of_that_deploy(
    dashboard: Dashboard, browser: Any, tmp_path: Path
) -> None:
    """Deploy page -> "Latency around this deploy": the Latency page opens on its before/after tab,
    comparing the windows that deploy's verdict compared (the regression's, verified as FAIL)."""
    from selenium.webdriver.common.by import By

    browser.get(f"{dashboard.url}/deploy?deploy={dashboard.regression_id}")
    wait_for(lambda: idle(browser) and "Deploy: checkout" in body_text(browser), "the deploy page")

    def link() -> Any:
        found = [a for a in browser.find_elements(By.CSS_SELECTOR, "a")
                 if "Latency around this deploy" in (a.get_attribute("textContent") or "")]
        return found[0] if found else None

    click_until(browser, link, lambda: "/latency" in browser.current_url, "the Latency page")
    wait_for(lambda: idle(browser) and "Verdict of this deploy: FAIL" in body_text(browser),
             "the before/after panel of the deploy")
    query = parse_qs(urlparse(browser.current_url).query)
    assert query["panel"] == ["Before / after"] and query["deploy"] == [dashboard.regression_id]
    text = body_text(browser)
    assert "The windows the verdict compared" in text and "between the two CDFs" in text
    selected = [t for t in browser.find_elements(By.CSS_SELECTOR, '[data-testid="stTab"]')
                if t.get_attribute("aria-selected") == "true"]
    assert [t.text.strip() for t in selected] == ["Before / after"]
    shot(browser, tmp_path / "deploy-to-latency.png")
    assert_clean_log(dashboard)


def latency_markers(driver: Any) -> dict[str, Any]:
    """The deploy markers of the Latency page's percentile chart (uPlot) as drawn: ids and
    viewport positions."""
    figs = chart_figures(driver)
    if not figs:
        return {"customdata": [], "client": []}
    return next(t for t in figs[0]["traces"] if t["name"] == "deploys")


def assert_clean_log(dashboard: Dashboard) -> None:
    """No panel hit an unexpected error: those are logged server-side with a traceback."""
    log = dashboard.log.read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]


def test_report_links_to_the_root_open_the_deploy_page(dashboard: Dashboard, browser: Any, tmp_path: Path) -> None:
    """Reports and chat messages link ``/?deploy=<id>``: that must land on the verdict."""
    browser.get(f"{dashboard.url}/?deploy={dashboard.regression_id}")
    wait_for(lambda: "Deploy: checkout" in body_text(browser) and "FAIL" in body_text(browser), "the deploy page")
    assert parse_qs(urlparse(browser.current_url).query)["deploy"] == [dashboard.regression_id]
    shot(browser, tmp_path / "root-link.png")
    assert_clean_log(dashboard)


def test_history_link_in_the_address_bar_names_its_service(dashboard: Dashboard, browser: Any) -> None:
    """The Service history, Errors and Latency pages opened on their first service left it out of the
    URL (Streamlit's binding writes only a value the viewer picked), so the link copied from the
    address bar named no service and opened whichever sorted first for the next viewer."""
    for path, key, title in (("/history", "hist_svc", "Service history"), ("/errors", "svc", "Errors")):
        browser.get(dashboard.url + path)
        wait_for(lambda: title in body_text(browser) and idle(browser), f"the page at {path}")  # noqa: B023
        wait_for(lambda: parse_qs(urlparse(browser.current_url).query).get(key) == ["checkout"],  # noqa: B023
                 f"the service in the URL after opening {path}", timeout_s=10)
    assert parse_qs(urlparse(browser.current_url).query).get("err_range") == ["6h"]  # the range shown, too


def test_errors_page_deploy_markers_open_the_deploy(dashboard: Dashboard, browser: Any) -> None:
    """"Errors are up": a click on a deploy marker of the Errors page's per-version chart opens that
    deploy's evidence, as on the Latency page (the markers there were drawn but not clickable)."""
    browser.get(dashboard.url + "/errors?svc=checkout&err_range=24h&err_by=version")
    wait_for(lambda: idle(browser) and chart_points(browser, 0, "deploys"), "the error ratio chart with deploy markers")
    ids = browser.execute_script(
        "const d = document.querySelectorAll('[data-testid=\"stPlotlyChart\"] .js-plotly-plot')[0].data;"
        "return d.find((t) => t.name === 'deploys').customdata.flat()")
    click_until(browser, lambda: (chart_points(browser, 0, "deploys") or [None])[0],
                lambda: "/deploy?" in browser.current_url, "the deploy page after clicking a deploy marker")
    assert parse_qs(urlparse(browser.current_url).query)["deploy"][0] in ids
    wait_for(lambda: "Deploy: checkout" in body_text(browser), "the deploy header")
