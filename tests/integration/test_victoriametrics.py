"""The same verification against real Prometheus and real VictoriaMetrics holding the same
samples: the verdicts agree (raw quantiles may differ slightly: different rate extrapolation)."""

from __future__ import annotations

from typing import Any

import pytest

from analyzers.prometheus.client import PrometheusClient
from analyzers.verify.deploy import verify_deploy

pytestmark = pytest.mark.integration


def test_verdicts_agree_between_prometheus_and_victoriametrics(prom: Any, victoria: Any) -> None:
    deploys = [d.to_deploy() for d in prom.scenario.deploys]
    p_client = PrometheusClient(prom.config.prometheus)
    v_client = PrometheusClient(victoria.config.prometheus)
    rows = []
    for sd, dep in zip(prom.scenario.deploys, deploys, strict=True):
        vp = verify_deploy(dep, prom.config, p_client, others=deploys)
        vv = verify_deploy(dep, victoria.config, v_client, others=deploys)
        rows.append((sd.case, sd.expected_overall, vp.overall, vv.overall, vv.reason))
    disagree = [r for r in rows if r[2] != r[3]]
    assert not disagree, "\n".join(f"{c}: prometheus {p}, victoriametrics {v} ({why})" for c, _, p, v, why in disagree)
    wrong = [r for r in rows if r[3] != r[1]]
    assert not wrong, "\n".join(f"{c}: expected {e}, victoriametrics {v} ({why})" for c, e, _, v, why in wrong)


def test_victoriametrics_answers_the_client_round_trip(victoria: Any) -> None:
    from datetime import timedelta

    sd = victoria.scenario.deploy("regression")
    client = PrometheusClient(victoria.config.prometheus)
    res = client.query_range(
        f'sum(rate(http_requests_total{{service="{sd.service}"}}[1m]))',
        sd.started_at - timedelta(hours=1), sd.started_at + timedelta(minutes=30), 60,
    )
    assert len(res.series) == 1
    values = res.series[0].values.dropna()
    assert len(values) > 60 and (values > 0).all()
