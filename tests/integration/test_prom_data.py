"""The session Prometheus serves the scenario: every service over every deploy window, and
the truth visible through PromQL the way the catalog queries it."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import requests

from analyzers.demo.promserver import PrometheusServer, PrometheusStartError, find_binaries
from analyzers.demo.scenarios import ScenarioDeploy
from tests.fixtures.prom import PromFixture

pytestmark = pytest.mark.integration


def _range(url: str, query: str, start: datetime, end: datetime, step_s: int = 60) -> list[dict]:
    r = requests.post(
        url + "/api/v1/query_range",
        data={"query": query, "start": f"{start.timestamp():.0f}", "end": f"{end.timestamp():.0f}", "step": step_s},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "success", body
    return body["data"]["result"]


def _instant(url: str, query: str, at: datetime) -> float:
    r = requests.post(url + "/api/v1/query", data={"query": query, "time": f"{at.timestamp():.0f}"}, timeout=30)
    assert r.status_code == 200, r.text
    result = r.json()["data"]["result"]
    assert len(result) == 1, (query, result)
    return float(result[0]["value"][1])


def _windows(d: ScenarioDeploy) -> tuple[datetime, datetime]:
    """End of a 30 min window before the deploy and of a 30 min window after the rollout."""
    return d.started_at, d.finished_at + timedelta(minutes=32)


def test_every_service_answers_over_every_deploy_window(prom: PromFixture) -> None:
    sc = prom.scenario
    for d in sc.deploys:
        start, end = d.started_at - timedelta(hours=3), d.finished_at + timedelta(hours=1)
        for service in sc.services:
            series = _range(prom.url, f'sum(rate(http_requests_total{{service="{service}"}}[5m]))', start, end)
            assert len(series) == 1, (d.case, service)
            values = [float(v) for _, v in series[0]["values"]]
            assert len(values) == 4 * 60 + (d.rollout_s // 60) + 1, (d.case, service, len(values))
            assert min(values) > 0.5, (d.case, service, min(values))


def test_histogram_has_all_buckets_per_service(prom: PromFixture) -> None:
    at = prom.scenario.deploys[0].started_at
    r = requests.post(
        prom.url + "/api/v1/query",
        data={"query": "count by (service, le) (http_request_duration_seconds_bucket)", "time": f"{at.timestamp():.0f}"},
        timeout=30,
    )
    les = {(s["metric"]["service"], s["metric"]["le"]) for s in r.json()["data"]["result"]}
    for service in prom.scenario.services:
        assert {le for svc, le in les if svc == service} == {
            "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
        }


def test_p99_drops_after_the_improvement_as_its_truth_says(prom: PromFixture) -> None:
    d = prom.scenario.deploy("improvement")
    assert d.truth["latency_p99"] == "decrease"
    q = (
        'histogram_quantile(0.99, sum by (le) (increase(http_request_duration_seconds_bucket'
        f'{{service="{d.service}"}}[30m])))'
    )
    before_at, after_at = _windows(d)
    before, after = _instant(prom.url, q, before_at), _instant(prom.url, q, after_at)
    assert after < 0.8 * before, (before, after)


def test_error_ratio_jumps_after_the_regression(prom: PromFixture) -> None:
    d = prom.scenario.deploy("regression")
    assert d.truth["error_ratio"] == "increase" and d.expected_overall == "fail"
    q = (
        f'sum(increase(http_request_errors_total{{service="{d.service}"}}[30m]))'
        f' / sum(increase(http_requests_total{{service="{d.service}"}}[30m]))'
    )
    before_at, after_at = _windows(d)
    before, after = _instant(prom.url, q, before_at), _instant(prom.url, q, after_at)
    assert before < 0.01 and after > 0.03, (before, after)


def test_noop_leaves_the_catalog_metrics_where_they_were(prom: PromFixture) -> None:
    d = prom.scenario.deploy("noop")
    assert set(d.truth.values()) == {"unchanged"}
    before_at, after_at = _windows(d)
    sel = f'{{service="{d.service}"}}'
    for q in (
        f"sum(rate(http_requests_total{sel}[30m]))",
        f"histogram_quantile(0.5, sum by (le) (rate(http_request_duration_seconds_bucket{sel}[30m])))",
    ):
        before, after = _instant(prom.url, q, before_at), _instant(prom.url, q, after_at)
        assert abs(math.log(after / before)) < 0.2, (q, before, after)


def test_release_raises_the_request_rate_without_new_versions(prom: PromFixture) -> None:
    d = prom.scenario.deploy("release")
    before_at, after_at = _windows(d)
    q = f'sum(rate(http_requests_total{{service="{d.service}"}}[30m]))'
    before, after = _instant(prom.url, q, before_at), _instant(prom.url, q, after_at)
    assert after > 1.25 * before, (before, after)
    versions = _range(
        prom.url, f'count by (version) (http_requests_total{{service="{d.service}"}})', d.started_at, after_at
    )
    assert [s["metric"]["version"] for s in versions] == [d.event["version"]]


def test_default_config_points_at_the_fixture(prom: PromFixture) -> None:
    assert prom.config.prometheus.url == prom.url
    assert {"error_ratio", "latency_p99", "latency_p50", "request_rate"} <= set(prom.config.metrics)


def test_stopped_prometheus_url_refuses_connections(stopped_prometheus_url: str) -> None:
    with pytest.raises(requests.ConnectionError):
        requests.get(stopped_prometheus_url + "/-/ready", timeout=2)


def test_second_server_on_a_taken_port_is_refused_not_mistaken_for_ready(prom: PromFixture, tmp_path) -> None:
    server = PrometheusServer(tmp_path / "tsdb", port=prom.server.port, ready_timeout_s=20)
    with pytest.raises(PrometheusStartError, match="already in use"):
        server.start()
    assert not server.running


def test_server_that_exits_at_start_reports_its_log(tmp_path) -> None:
    server = PrometheusServer(tmp_path / "tsdb", extra_args=["--no-such-flag"], ready_timeout_s=20)
    with pytest.raises(PrometheusStartError, match="exited with code") as info:
        server.start()
    assert "no-such-flag" in str(info.value)  # the log tail names the problem
    assert not server.running


def test_context_manager_stops_the_server_and_keeps_the_tsdb(tmp_path) -> None:
    with PrometheusServer(tmp_path / "tsdb") as server:
        url = server.url
        assert requests.get(url + "/-/ready", timeout=5).status_code == 200
        assert server.log_path is not None and server.log_path.exists()
    assert not server.running
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/-/ready", timeout=2)
    assert (tmp_path / "tsdb").is_dir()


def test_binaries_are_found_in_usr_bin_without_path(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # e.g. cron or a stripped service environment
    prometheus, promtool = find_binaries()
    assert Path(prometheus).name == "prometheus" and Path(promtool).name == "promtool"
    assert Path(promtool).exists()
