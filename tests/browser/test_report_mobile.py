"""The HTML report on a 390 x 844 phone, in headless Chromium: nothing wider than the screen.

A realistic failing report (three metrics with charts, a long PromQL query, a very long deploy
id and author, an overlap warning) is opened as a file with the device metrics of a phone
(CDP ``Emulation.setDeviceMetricsOverride``, mobile viewport). The page must not scroll
sideways, no element may reach past the right edge, the metrics read as stacked cards with
their column names, and the dashboard link is there. A screenshot goes to test-artifacts/.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from analyzers.delivery.reports import render_html
from analyzers.model import Deploy, DeployVerdict, MetricVerdict
from analyzers.text import deploy_link

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
WIDTH, HEIGHT = 390, 844
DASH = "https://dash.example"


def _report() -> tuple[DeployVerdict, Deploy]:
    t = [int(T0.timestamp()) + 60 * i for i in range(-60, 30)]
    long_id = "deploy-" + "x" * 180
    deploy = Deploy(deploy_id=long_id, service="checkout", environment="production", version="v2.8.0-rc.1+build.20261120",
                    started_at=T0, author="someone-with-a-very-long-handle-" + "y" * 80,
                    description="Cache product prices: cuts tail latency. " * 8)
    query = ('histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{service="checkout",'
             'environment="production",route=~"/api/v1/(cart|checkout|payment)/.*"}[5m])))')
    failing = (
        MetricVerdict(metric="error_ratio", role="guard", expect="increase", outcome="regressed", unit="ratio",
                      reason="guard error_ratio regressed: +3.39 pp (x6.5), 99% CI +2.10 pp to +4.70 pp. "
                             "Increase at the deploy (step, baseline pre-window), p < 0.0001.",
                      query='sum(rate(http_requests_total{service="checkout",code=~"5.."}[5m])) / '
                            'sum(rate(http_requests_total{service="checkout"}[5m]))',
                      result={"status": "shifted", "direction": "increase", "effect": 0.0339, "effect_rel": 5.49,
                              "effect_ci": [0.021, 0.047], "ci_level": 0.99, "p_value": 0.0,
                              "baseline": "pre-window", "before_value": 0.0062, "after_value": 0.0401},
                      p_adjusted=0.0, chart={"t": t, "v": [0.006 if i < 60 else 0.04 for i in range(90)]}),
    )
    metrics = (
        MetricVerdict(metric="latency_p99", role="expectation", expect="decrease", outcome="no_effect", unit="s",
                      reason="latency_p99 did not move (declared decrease).", query=query,
                      result={"status": "unchanged", "effect": -0.004, "effect_rel": -0.02, "effect_ci": [-0.02, 0.012],
                              "ci_level": 0.99, "p_value": 0.41, "baseline": "same hour last week",
                              "before_value": 0.212, "after_value": 0.208},
                      chart={"t": t, "v": [0.21 + 0.01 * ((i * 7) % 5) for i in range(90)]}),
        MetricVerdict(metric="throughput", role="guard", expect="decrease", outcome="ok", unit="req/s",
                      reason="guard throughput shows no regression.", query='sum(rate(http_requests_total{service="checkout"}[5m]))',
                      result={"status": "unchanged", "effect": 3.0, "effect_rel": 0.012, "effect_ci": [-8.0, 14.0],
                              "ci_level": 0.99, "p_value": 0.7, "baseline": "pre-window",
                              "before_value": 250.0, "after_value": 253.0}),
        *failing,  # listed last, shown first
    )
    verdict = DeployVerdict(deploy_id=long_id, overall="fail", reason="checkout v2.8.0-rc.1+build.20261120 failed "
                            "verification: error_ratio (regressed).", metrics=metrics, checked_at=T0, service="checkout",
                            version=deploy.version, multiple_testing="Holm correction across 3 tested metrics at alpha=0.01",
                            warnings=("Overlapping deploys within 15 min: payments v9.9.9 (" + "z" * 120 + ")",),
                            overlapping=("z" * 120,))
    return verdict, deploy


def test_html_report_fits_a_390px_phone_and_links_to_the_dashboard(browser: Any, tmp_path: Path) -> None:
    verdict, deploy = _report()
    page = tmp_path / "report.html"
    page.write_text(render_html(verdict, deploy, dashboard_url=DASH), encoding="utf-8")
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 2, "mobile": True})
    try:
        browser.get(page.as_uri())
        width = browser.execute_script("return document.scrollingElement.scrollWidth")
        viewport = browser.execute_script("return window.innerWidth")
        too_wide = browser.execute_script(
            "return [...document.querySelectorAll('body *')]"
            ".filter(e => e.getBoundingClientRect().right > window.innerWidth + 0.5)"
            ".map(e => e.tagName + ' ' + Math.round(e.getBoundingClientRect().right)).slice(0, 10)")
        cards = browser.execute_script(
            "return [...document.querySelectorAll('tbody td')].map(e => getComputedStyle(e, '::before').content)")
        link = browser.execute_script("return document.querySelector('a').href")
        first = browser.execute_script("return document.querySelector('tbody td').textContent")
        out = ROOT / "test-artifacts"
        out.mkdir(exist_ok=True)
        browser.save_screenshot(str(out / "report-390x844.png"))
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    assert viewport == WIDTH
    assert width <= WIDTH, f"the page scrolls sideways: {width} px wide on a {WIDTH} px screen"
    assert too_wide == []
    assert '"effect [99% CI]"' in cards and '"why"' in cards  # stacked cards name their columns
    assert link == deploy_link(DASH, deploy.deploy_id)
    assert first == "error_ratio"  # the failing metric comes first


@pytest.mark.parametrize("width", [1024, 1400])
def test_html_report_never_scrolls_the_page_sideways_on_wider_screens(browser: Any, tmp_path: Path, width: int) -> None:
    """Between the phone layout and a wide screen the metrics table may scroll inside its own box,
    never the page; at 1400 px it fits whole."""
    verdict, deploy = _report()
    page = tmp_path / "report.html"
    page.write_text(render_html(verdict, deploy, dashboard_url=DASH), encoding="utf-8")
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False})
    try:
        browser.get(page.as_uri())
        page_width = browser.execute_script("return document.scrollingElement.scrollWidth")
        box = browser.execute_script("const b = document.querySelector('.scroll'); return [b.scrollWidth, b.clientWidth]")
        svg_width = browser.execute_script("return document.querySelector('td svg').getBoundingClientRect().width")
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    assert page_width <= width
    assert svg_width >= 200  # the chart keeps a readable size in the table
    if width >= 1400:
        assert box[0] <= box[1]  # the table fits without scrolling
