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
from analyzers.verify.deploy import verify_deploy
from analyzers.verify.fetch import fetch_bucket_grid
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
