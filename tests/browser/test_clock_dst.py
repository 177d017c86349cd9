"""One correct clock across a daylight-saving change: a deploy an hour after New York fell back.

A real Prometheus holds the small scenario placed so its regression deploy starts at
2026-11-01 07:00 UTC (02:00 EST), one hour after America/New_York went from EDT (-4) to EST
(-5) at 06:00 UTC: the deploy page's chart spans the change (its before window starts at
00:00 EDT). In wall-clock time the hour 01:00-02:00 happens twice; every instant must still be
drawn at its own local time (zoneinfo, offset by offset), so the deploy line (02:00 EST) falls
where the data changes and a fixed offset (EDT's or EST's for the whole chart) would be an hour
off on one side.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from analyzers.demo.promserver import PrometheusServer, backfill
from tests.browser.conftest import Dashboard, running_dashboard
from tests.browser.test_clock import as_ms, change_x, figures, save, set_zone, wall_ms
from tests.browser.test_dashboard_browser import assert_clean_log, body_text, idle, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.integration]

ZONE = "America/New_York"
FALL_BACK = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)  # 02:00 EDT -> 01:00 EST
DEPLOY_AT = datetime(2026, 11, 1, 7, 0, tzinfo=UTC)  # 02:00 EST


def _scenario() -> Any:
    """The small scenario ending so that its regression starts at :data:`DEPLOY_AT`."""
    from analyzers.demo.scenarios import small_scenario

    end = DEPLOY_AT + timedelta(hours=7)
    for shift_min in range(0, 181, 15):
        scenario = small_scenario(seed=11, end=end + timedelta(minutes=shift_min))
        regression = next(d for d in scenario.deploys if d.case == "regression")
        if regression.started_at == DEPLOY_AT:
            return scenario
    raise AssertionError("no scenario end puts the regression at 07:00 UTC on 2026-11-01")


@pytest.fixture(scope="module")
def dst_dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Dashboard, Any]]:
    from analyzers.config import default_config
    from analyzers.events.schema import parse_event
    from analyzers.events.store import open_store
    from analyzers.prometheus.client import PrometheusClient
    from analyzers.verify.deploy import verify_deploy

    work = tmp_path_factory.mktemp("dst")
    scenario = _scenario()
    om = work / "scenario.om"
    scenario.write_openmetrics(om)
    backfill(om, work / "tsdb")
    om.unlink()
    server = PrometheusServer(work / "tsdb", retention="3650d").start()  # the data is weeks old
    try:
        config = default_config().with_prometheus_url(server.url)
        store_url = f"sqlite:///{work / 'deploys.db'}"
        store = open_store(store_url)
        try:
            deploys = []
            for i, sd in enumerate(scenario.deploys):
                deploy = parse_event(sd.event).to_deploy(signed=True)
                store.record_event("generic", f"dst-{i}", sd.event, deploy)
                deploys.append((sd, deploy))
            regression = next(d for sd, d in deploys if sd.case == "regression")
            verdict = verify_deploy(regression, config, PrometheusClient(config.prometheus),
                                    others=[d for _, d in deploys], now=datetime.now(UTC))
            assert verdict.overall == "fail", verdict.reason
            store.save_verdict(verdict)
        finally:
            store.close()
        with running_dashboard(work, store_url, server.url) as (url, log):
            yield Dashboard(url, store_url, regression.deploy_id, log), regression
    finally:
        server.stop()


def test_deploy_line_falls_where_the_data_changes_across_the_fall_back(
    dst_dashboard: tuple[Dashboard, Any], browser: Any, tmp_path: Path
) -> None:
    dashboard, regression = dst_dashboard
    assert regression.started_at == DEPLOY_AT
    set_zone(browser, ZONE)
    browser.get(f"{dashboard.url}/deploy?deploy={dashboard.regression_id}")
    wait_for(lambda: idle(browser) and len(figures(browser)) >= 2 and "change point" in body_text(browser),
             "the metric charts")
    fig = figures(browser)[0]
    expected = wall_ms(DEPLOY_AT, ZONE)  # 02:00 EST
    line = next(s for s in fig["shapes"] if s["type"] == "line" and s["color"] == "#111111")
    assert abs(as_ms(line["x0"]) - expected) < 1000
    data = next(t for t in fig["traces"] if t["name"] == "error_ratio")
    changed = change_x(data["x"], data["y"], before=20, after=10)
    assert abs(changed - expected) <= 5 * 60_000, f"data changes {(changed - expected) / 60000:+.1f} min off"
    xs = np.array([np.nan if v is None else as_ms(v) for v in data["x"]])
    # The chart spans the change: samples before it are drawn at EDT wall-clock (UTC-4), after at EST.
    edt = [wall_ms(FALL_BACK - timedelta(minutes=30), ZONE), wall_ms(FALL_BACK + timedelta(minutes=30), ZONE)]
    assert edt[1] - edt[0] == 0, "01:30 EDT and 01:30 EST share a wall-clock time (the repeated hour)"
    assert np.isclose(xs, edt[0]).sum() >= 2, "the repeated hour is drawn twice, once per offset"
    before = next(s for s in fig["shapes"] if s["type"] == "rect")
    assert as_ms(before["x0"]) == pytest.approx(
        wall_ms(datetime.fromisoformat("2026-11-01T04:00:00+00:00"), ZONE), abs=1000)  # 00:00 EDT
    assert datetime(2026, 11, 1, 4, tzinfo=UTC).astimezone(ZoneInfo(ZONE)).tzname() == "EDT"
    text = body_text(browser)
    assert "Started: 2026-11-01 02:00:00 EST" in text
    save(browser, "deploy-dst", ZONE)
    assert_clean_log(dashboard)
