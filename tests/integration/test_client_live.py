"""The Prometheus client against a real Prometheus holding the seeded test scenario."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from analyzers.config import PrometheusSettings
from analyzers.demo.promserver import PrometheusServer
from analyzers.errors import BadDataError, ExecutionError, NotFoundError, PrometheusUnreachable
from analyzers.prometheus.client import PrometheusClient
from analyzers.prometheus.promql import escape_label_value, escape_regex_value, render, selector

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client(prom: Any) -> PrometheusClient:
    return PrometheusClient(PrometheusSettings(url=prom.url, timeout_s=20.0))


def _at(ts: int | float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def test_query_range_round_trips_the_backfilled_counter_exactly(client: PrometheusClient, prom: Any) -> None:
    scenario = prom.scenario
    pod = scenario.series[0]
    stamps = scenario.timestamps[pod.start_idx : pod.start_idx + len(pod.requests)]
    k0 = len(stamps) // 2
    start, end = _at(int(stamps[k0])), _at(int(stamps[k0 + 40]))
    result = client.query_range(selector("http_requests_total", **pod.labels), start, end, step_s=scenario.step_s)
    assert result.result_type == "matrix" and result.warnings == ()
    (series,) = result.series
    assert series.labels == {"__name__": "http_requests_total", **pod.labels}
    expected = np.cumsum(pod.requests)[k0 : k0 + 41].astype(float)
    assert series.values.index.equals(pd.DatetimeIndex(pd.to_datetime(stamps[k0 : k0 + 41], unit="s", utc=True)))
    np.testing.assert_array_equal(series.values.to_numpy(), expected)


def test_long_range_at_a_fine_step_is_raised_instead_of_refused(client: PrometheusClient, prom: Any) -> None:
    scenario = prom.scenario
    result = client.query_range('sum(http_requests_total{service="checkout"})', scenario.start, scenario.end, step_s=1)
    assert result.step_s is not None and result.step_s > 1
    assert 1000 < len(result.series[0].values) <= 11000


def test_automatic_step_keeps_a_chart_near_1200_points_on_an_aligned_grid(client: PrometheusClient, prom: Any) -> None:
    scenario = prom.scenario
    result = client.query_range('sum(rate(http_requests_total{service="checkout"}[5m]))', scenario.start, scenario.end)
    values = result.series[0].values
    assert result.step_s is not None and result.start.timestamp() % result.step_s == 0
    assert 600 <= len(values) <= 1200
    assert set(values.index.to_series().diff().dropna().dt.total_seconds()) == {result.step_s}


def test_bad_query_raises_bad_data_naming_the_query(client: PrometheusClient, prom: Any) -> None:
    query = 'sum(rate(http_requests_total{service="checkout"}[5m])'
    with pytest.raises(BadDataError) as info:
        client.query(query, prom.scenario.end)
    msg = str(info.value)
    assert msg.startswith(f"Prometheus at {prom.url} answered 400 bad_data: ")
    assert "parse error" in msg and f"(query: {query})" in msg and "fix the PromQL" in msg
    assert info.value.query == query and info.value.status_code == 400


def test_many_to_many_match_raises_execution_error(client: PrometheusClient, prom: Any) -> None:
    query = "http_requests_total + on(service) http_requests_total"
    with pytest.raises(ExecutionError, match="many-to-many") as info:
        client.query(query, prom.scenario.end)
    assert info.value.status_code == 422 and "group_left" in str(info.value)


def test_wrong_path_prefix_is_not_found_with_advice(prom: Any) -> None:
    client = PrometheusClient(PrometheusSettings(url=prom.url, path_prefix="/prometheus"))
    with pytest.raises(NotFoundError, match="path_prefix"):
        client.query("1", prom.scenario.end)


def test_special_floats_and_millisecond_timestamps_survive(client: PrometheusClient, prom: Any) -> None:
    at = _at(int(prom.scenario.end.timestamp()) + 0.123)
    result = client.query('label_replace(vector(0) / 0, "k", "nan", "", "") or '
                          'label_replace(vector(1) / 0, "k", "inf", "", "") or '
                          'label_replace(vector(-1) / 0, "k", "-inf", "", "")', at)
    values = {s.labels["k"]: s.values for s in result.series}
    assert math.isnan(values["nan"].iloc[0])
    assert values["inf"].iloc[0] == math.inf and values["-inf"].iloc[0] == -math.inf
    assert values["nan"].index[0] == pd.Timestamp(at)
    assert values["nan"].index[0].microsecond == 123000


@pytest.mark.parametrize(
    "value",
    ['x"} or up{job=~".+', "back\\slash\\", "new\nline\ttab", "ctl\x01\x1f\x7f", "ünï 日本 🚀", "a.b*c(d)[e]|f$"],
)
def test_escaped_values_reach_prometheus_unchanged(client: PrometheusClient, prom: Any, value: str) -> None:
    at = prom.scenario.end
    made = f'label_replace(vector(1), "v", "{escape_label_value(value)}", "", "")'
    (series,) = client.query(made, at).series
    assert series.labels == {"v": value}
    # Go's regexp (label_replace's anchored regex) reads the regex-escaped value as that literal
    tagged = client.query(f'label_replace({made}, "m", "yes", "v", "{escape_regex_value(value)}")', at)
    assert tagged.series[0].labels == {"v": value, "m": "yes"}
    other = "#" + value
    untagged = client.query(
        f'label_replace(label_replace(vector(1), "v", "{escape_label_value(other)}", "", ""),'
        f' "m", "yes", "v", "{escape_regex_value(value)}")',
        at,
    )
    assert untagged.series[0].labels == {"v": other}
    hostile = client.query(render('http_requests_total{service="$s"}', s=value), at)
    assert hostile.empty  # the value stays a value: no series of any other service leaks in


def test_regex_escaping_selects_one_literal_service(client: PrometheusClient, prom: Any) -> None:
    result = client.query(render('sum by (service) (http_requests_total{service=~"${s:regex}"})', s="checkout"), prom.scenario.end)
    assert [s.labels for s in result.series] == [{"service": "checkout"}]
    dotted = client.query(render('sum by (service) (http_requests_total{service=~"${s:regex}"})', s="check.ut"), prom.scenario.end)
    assert dotted.empty  # "." is a literal dot, not "any character"


def test_thanos_parameters_are_harmless_on_plain_prometheus(prom: Any) -> None:
    settings = PrometheusSettings(url=prom.url, partial_response=True, dedup=True, tenant="t1", bearer_token="x")
    result = PrometheusClient(settings).query('count(http_requests_total{service="checkout"})', prom.scenario.end)
    assert result.series[0].values.iloc[0] > 0


def test_ready_and_describe(client: PrometheusClient, prom: Any) -> None:
    assert client.ready() is True
    assert client.describe() == prom.url


def test_stopped_server_is_unreachable(tmp_path: Path) -> None:
    server = PrometheusServer(tmp_path / "tsdb").start()
    url = server.url
    client = PrometheusClient(replace(PrometheusSettings(url=url), timeout_s=5.0))
    assert client.ready() is True
    server.stop()
    with pytest.raises(PrometheusUnreachable) as info:
        client.query_range("up", datetime.now(UTC) - timedelta(hours=1), datetime.now(UTC))
    msg = str(info.value)
    assert msg.startswith(f"cannot reach Prometheus at {url}: ") and "Connection refused" in msg
    assert msg.endswith("check prometheus.url in the config or that the server is up")
    assert client.ready() is False


def test_victoriametrics_round_trip_and_typed_errors(victoria: Any) -> None:
    """The same client against VictoriaMetrics (fixture filled with the same scenario)."""
    client = PrometheusClient(PrometheusSettings(url=victoria.url, timeout_s=20.0))
    scenario = victoria.scenario
    pod = scenario.series[0]
    stamps = scenario.timestamps[pod.start_idx : pod.start_idx + len(pod.requests)]
    k0 = len(stamps) // 2
    result = client.query_range(
        selector("http_requests_total", **pod.labels), _at(int(stamps[k0])), _at(int(stamps[k0 + 40])), step_s=scenario.step_s
    )
    (series,) = result.series
    np.testing.assert_array_equal(series.values.to_numpy(), np.cumsum(pod.requests)[k0 : k0 + 41].astype(float))
    query = "sum(rate(http_requests_total[5m]"
    with pytest.raises(ExecutionError) as info:  # VictoriaMetrics answers parse errors with 422
        client.query(query, scenario.end)
    assert f"(query: {query})" in str(info.value) and info.value.status_code == 422
    assert client.ready() is True


# --- prometheus-api-client through its public API -------------------------------------

def test_label_names_and_values_come_through_prometheus_connect(client: PrometheusClient, prom: Any) -> None:
    scenario = prom.scenario
    match = 'http_requests_total{service="checkout"}'
    names = client.label_names(match, scenario.start, scenario.end)
    assert {"__name__", "service", "endpoint", "version", "pod"} <= set(names)
    assert "le" not in names  # the counter has no buckets
    versions = client.label_values("version", match, scenario.start, scenario.end)
    expected = {s.labels["version"] for s in scenario.series if s.labels.get("service") == "checkout"}
    assert set(versions) == expected and list(versions) == sorted(versions)


def test_library_call_errors_keep_the_error_type_and_advice(client: PrometheusClient, prom: Any) -> None:
    # An unparsable matcher: Prometheus answers 400 bad_data; prometheus-api-client alone would
    # raise "HTTP Status Code 400 (b'...')". The adapter's response hook gives the typed error.
    match = 'http_requests_total{service=~"("}'
    with pytest.raises(BadDataError) as info:
        client.label_names(match, prom.scenario.start, prom.scenario.end)
    msg = str(info.value)
    assert msg.startswith(f"Prometheus at {prom.url} answered 400 bad_data: ") and "fix the PromQL" in msg
    assert info.value.query == match


def test_library_calls_to_a_dead_server_are_unreachable_errors() -> None:
    from analyzers.demo.promserver import free_port

    dead = PrometheusClient(PrometheusSettings(url=f"http://127.0.0.1:{free_port()}", timeout_s=2.0))
    now = datetime.now(UTC)
    with pytest.raises(PrometheusUnreachable, match="cannot reach Prometheus at .*Connection refused"):
        dead.label_names("up", now - timedelta(hours=1), now)
