"""Hostile deploy fields against the real Prometheus: every query the verdict runs keeps them values.

A deploy event's service, environment and version reach PromQL through the catalog templates, the
``latency_shift`` guard's range query of bucket increases per bound (new in the last session), the
bucket test's windows, and the canary's per-version queries. A value that closed its string would
widen the selector (``search", service=~".*`` judges the hostile deploy on *search*'s requests) or
break the query. Each value here names no real series, so the honest verdict is "no data" for
every metric: never a pass or a fail judged on another service's data, never a refused query.
The ``prom`` session fixture (promtool-backfilled scenario) is the real server.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from analyzers.prometheus.client import PrometheusClient
from analyzers.verify.canary import bucket_query, rate_queries
from analyzers.verify.deploy import verify_deploy
from analyzers.verify.plan import metric_query
from tests.fixtures.prom import PromFixture

pytestmark = pytest.mark.integration

#: (name, value): each widens the selector to a real service, or breaks the query, if not escaped.
HOSTILE = [
    ("widen", 'search", service=~".*'),
    ("close-and-or", 'payments"} or http_request_duration_seconds_bucket{service="search'),
    ("backslash-quote", 'search\\", service=~\\".*'),
    ("newline", 'search"\n, service=~".*'),
    ("regex-meta", "search|payments|checkout.*"),
    ("unicode", "s\u00e9arch \u202e\U0001f680 \x01"),
]


@pytest.mark.parametrize("value", [v for _, v in HOSTILE], ids=[n for n, _ in HOSTILE])
def test_a_hostile_service_is_judged_on_no_data_never_on_another_services(prom: PromFixture, value: str) -> None:
    sc = prom.scenario
    client = PrometheusClient(prom.config.prometheus)
    real = sc.deploy("noop")
    deploy = replace(real.to_deploy(), deploy_id="hostile", service=value, environment=value, version=value)
    v = verify_deploy(deploy, prom.config, client, now=real.finished_at + timedelta(hours=1))
    assert {m.metric for m in v.metrics} >= {"error_ratio", "latency_p99", "latency_shift"}
    for m in v.metrics:
        assert m.outcome == "inconclusive", (m.metric, m.outcome, m.reason)  # judged on nothing
        low = m.reason.lower()
        assert "bad_data" not in low and "parse error" not in low and "refused" not in low, m.reason
        assert m.result is None or not m.result.get("n_after"), (m.metric, m.result)  # no point of another service
    assert v.overall == "inconclusive"


@pytest.mark.parametrize("value", [v for _, v in HOSTILE], ids=[n for n, _ in HOSTILE])
def test_every_query_built_from_a_hostile_deploy_runs_and_selects_nothing(prom: PromFixture, value: str) -> None:
    """The queries themselves, one by one: the catalog's (``latency_shift``'s bucket range query among
    them) and the canary's per-version rate and bucket queries."""
    sc = prom.scenario
    client = PrometheusClient(prom.config.prometheus)
    real = sc.deploy("noop")
    deploy = replace(real.to_deploy(), service=value, environment=value, version=value)
    config = prom.config
    queries = {key: metric_query(config, key, deploy) for key in config.metrics}
    for key, spec in config.metrics.items():
        if spec.histogram:
            queries[f"canary buckets {key}"] = bucket_query(config, spec, deploy)
        if spec.events and spec.exposure:
            events, exposure = rate_queries(config, spec, deploy)
            queries[f"canary events {key}"], queries[f"canary exposure {key}"] = events, exposure
    assert "latency_shift" in queries and any(k.startswith("canary buckets") for k in queries)
    at = real.finished_at
    for key, q in queries.items():
        result = client.query_range(q, at - timedelta(minutes=30), at, 60.0)  # raises on a refused query
        assert result.series == () or all(s.values.dropna().empty for s in result.series), (key, q)
    # the same queries for the real service do select data: the test looks where the data is
    honest = replace(deploy, service=real.to_deploy().service)
    found = client.query_range(metric_query(config, "latency_shift", honest), at - timedelta(minutes=30), at, 60.0)
    assert found.series, "the scenario's own service has bucket counts at that time"
