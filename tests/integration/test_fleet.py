"""Batched fleet verification gives the same verdicts as one-by-one, with fewer queries."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from analyzers.fleet import verify_fleet
from analyzers.prom import PrometheusClient
from analyzers.verification import DirectFetcher, verify_deploy

pytestmark = pytest.mark.integration


def test_batched_verdicts_equal_direct_ones_with_fewer_queries(prom: Any) -> None:
    deploys = [d.to_deploy() for d in prom.scenario.deploys]
    client = PrometheusClient(prom.config.prometheus)
    now = datetime.now(UTC)
    direct = DirectFetcher(client)
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
    assert stats.fallback_queries == 0
    assert stats.queries < direct.queries, (stats.queries, direct.queries)
