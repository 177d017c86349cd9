"""``latency_shift`` against the session's real Prometheus (promtool-backfilled ``small_scenario``):
the range query of bucket increases per bound returns what was backfilled, and the guard judges
the scenario's deploys through the real path."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from analyzers.config import HTTP_DURATION
from analyzers.prometheus.client import PrometheusClient
from analyzers.prometheus.latency import heatmap_query
from analyzers.verify.deploy import DirectFetcher, verify_deploy
from analyzers.verify.fetch import fetch_bucket_grid
from analyzers.verify.span_cache import SpanCache
from tests.fixtures.prom import PromFixture

pytestmark = pytest.mark.integration


def test_the_bucket_range_query_returns_the_backfilled_increments(prom: PromFixture) -> None:
    sc = prom.scenario
    client = PrometheusClient(prom.config.prometheus)
    start = sc.start + timedelta(hours=3)  # pods stable: hours before the first deploy
    end = start + timedelta(hours=2)
    assert end < sc.deploys[0].started_at
    for service in ("search", "payments"):
        query = heatmap_query(HTTP_DURATION, f'service="{service}"', "1m")
        grid, warns, queries, points = fetch_bucket_grid(client, query, "latency_shift", start, end, 60.0)
        assert warns == () and queries == 1 and points == 12 * 121
        assert grid.les[:3] == (0.005, 0.01, 0.025) and np.isinf(grid.les[-1]) and len(grid.les) == 12
        # what was backfilled: per-step increments per bucket, summed over pods, cumulative over le
        inc = np.cumsum(sc.service_increments(service)["buckets"], axis=1)
        per_min = 60 // sc.step_s
        rows = [sc.index_of(t.to_pydatetime()) for t in grid.index]
        expected = np.vstack([inc[k - per_min + 1:k + 1].sum(axis=0) for k in rows])
        np.testing.assert_allclose(grid.counts, expected, rtol=1e-9, atol=1e-9)
        assert np.all(np.diff(grid.counts, axis=1) >= 0)


def test_the_guard_judges_the_scenario_s_deploys_as_their_truth_says(prom: PromFixture) -> None:
    sc = prom.scenario
    client = PrometheusClient(prom.config.prometheus)
    outcomes = {}
    for case in ("noop", "gradual"):  # nothing changed; every search request x0.55
        d = sc.deploy(case)
        v = verify_deploy(d.to_deploy(), prom.config, client, now=d.finished_at + timedelta(hours=1))
        (m,) = [m for m in v.metrics if m.metric == "latency_shift"]
        outcomes[case] = m.outcome
        assert m.result is not None and m.result["request_latency"]["before_s"] > 0, m.reason
    assert outcomes == {"noop": "ok", "gradual": "improved"}


class _CountingClient(PrometheusClient):
    """Counts the range queries it sends and the points they return."""

    queries = 0
    points = 0

    def query_range(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        result = super().query_range(*args, **kwargs)
        self.queries += 1
        self.points += sum(len(s.values) for s in result.series)
        return result


def test_a_later_look_asks_only_for_the_new_steps_and_judges_alike(prom: PromFixture) -> None:
    """``verify --wait``'s next poll, 30 s later, through the real Prometheus: the cached look asks
    for the new steps only (the backfilled data is hours old: settled) and its verdict is the full
    fetch's, metric by metric."""
    d = prom.scenario.deploy("gradual").to_deploy()
    client = _CountingClient(prom.config.prometheus)
    cached = DirectFetcher(client, cache=SpanCache())
    now = d.started_at + timedelta(minutes=20)
    verify_deploy(d, prom.config, client, now=now, fetcher=cached)
    first = (client.queries, client.points)
    later = verify_deploy(d, prom.config, client, now=now + timedelta(seconds=30), fetcher=cached)
    second = (client.queries - first[0], client.points - first[1])
    full = verify_deploy(d, prom.config, client, now=now + timedelta(seconds=30), fetcher=DirectFetcher(client, cache=None))
    assert [m.to_dict() for m in later.metrics] == [m.to_dict() for m in full.metrics]
    assert later.overall == full.overall
    assert first[1] > 12 * 60 and second[0] <= first[0] and second[1] <= 13 * second[0], (first, second)
