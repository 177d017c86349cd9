"""Batched fleet verification gives the same verdicts as one-by-one, with fewer queries."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from analyzers.prometheus.client import PrometheusClient
from analyzers.verify.deploy import DirectFetcher, verify_deploy
from analyzers.verify.fleet import verify_fleet

pytestmark = pytest.mark.integration


def test_batched_verdicts_equal_direct_ones_with_fewer_queries(prom: Any) -> None:
    deploys = [d.to_deploy() for d in prom.scenario.deploys]
    client = PrometheusClient(prom.config.prometheus)
    now = datetime.now(UTC)
    direct = DirectFetcher(client, cache=None)
    one_by_one = {d.deploy_id: verify_deploy(d, prom.config, client, others=deploys, now=now, fetcher=direct) for d in deploys}
    batched, stats = verify_fleet(deploys, prom.config, client, now=now)
    assert stats.deploys == len(deploys)
    for v in batched:
        ref = one_by_one[v.deploy_id]
        assert v.overall == ref.overall, (v.reason, ref.reason)
        assert [m.outcome for m in v.metrics] == [m.outcome for m in ref.metrics]
        for a, b in zip(v.metrics, ref.metrics, strict=True):
            if a.result and b.result and a.result.get("effect") is not None:
                assert a.result["effect"] == pytest.approx(b.result["effect"], rel=1e-6, abs=1e-12)
            if a.metric == "latency_shift":  # bucket counts sliced from the service's batched range: the same grid
                assert json.dumps(a.to_dict(), sort_keys=True, default=str) == json.dumps(b.to_dict(), sort_keys=True, default=str)
    assert stats.fallback_queries == 0
    assert stats.queries < direct.queries, (stats.queries, direct.queries)
    assert stats.points < direct.points, (stats.points, direct.points)


def test_worker_processes_return_the_same_verdicts_in_the_same_order(prom: Any) -> None:
    """``workers=2`` forks two processes over the services: same verdicts, same order, same queries,
    and ``on_verdict``/``progress`` still called in this process for every deploy."""
    deploys = [d.to_deploy() for d in prom.scenario.deploys]
    assert len({d.service for d in deploys}) >= 2  # otherwise there is nothing to share out
    client = PrometheusClient(prom.config.prometheus)
    now = datetime.now(UTC)
    serial, serial_stats = verify_fleet(deploys, prom.config, client, now=now, prefetch_ahead=False)
    seen: list[str] = []
    ticks: list[int] = []
    parallel, stats = verify_fleet(deploys, prom.config, client, now=now, workers=2,
                                   on_verdict=lambda v: seen.append(v.deploy_id), progress=ticks.append)
    assert [v.deploy_id for v in parallel] == [v.deploy_id for v in serial] == seen
    assert sum(ticks) == len(deploys)
    for a, b in zip(parallel, serial, strict=True):
        assert a.to_dict() == b.to_dict()
    assert (stats.queries, stats.points, stats.fallback_queries) == (
        serial_stats.queries, serial_stats.points, serial_stats.fallback_queries)
    # the parent's connections still work after the workers forked from it
    assert client.query("1", now).series


@pytest.mark.parametrize("workers", [0, -1, 1.5, True])
def test_workers_must_be_a_positive_whole_number(prom: Any, workers: Any) -> None:
    with pytest.raises(ValueError, match="workers must be"):
        verify_fleet([], prom.config, PrometheusClient(prom.config.prometheus), workers=workers)


def test_long_ranges_are_split_at_the_point_cap_without_coarsening(prom: Any) -> None:
    """A range longer than 11,000 steps comes back in chunks, every point on the 60 s grid."""
    from datetime import timedelta

    from analyzers.verify.deploy import fetch_grid, grid_series

    client = PrometheusClient(prom.config.prometheus)
    sd = prom.scenario.deploy("regression")
    start = (sd.started_at.timestamp() - 20 * 3600) // 60 * 60  # the first chunk holds the data
    end = start + 12 * 86400  # 17,280 steps: two chunks
    query = f'sum(rate(http_requests_total{{service="{sd.service}"}}[2m]))'
    parts, _, queries, _ = fetch_grid(client, query, "request_rate", start, end, 60.0)
    series = grid_series(parts, start, end, 60.0)
    assert queries == 2
    assert len(series) == 12 * 1440 + 1
    assert (series.index.to_series().diff().dropna() == timedelta(seconds=60)).all()
    first_hours = series[series.index < series.index[0] + timedelta(hours=20)]
    assert first_hours.notna().mean() > 0.95  # the data is there, not thinned by a coarser step
