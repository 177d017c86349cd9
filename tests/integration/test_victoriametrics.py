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


def test_error_drilldown_and_bubbleup_agree_between_prometheus_and_victoriametrics(prom: Any, victoria: Any) -> None:
    """The drill-down pipelines name the same culprit on both back ends (the labels API through
    prometheus-api-client included); VictoriaMetrics has no exemplar storage: a typed error or an
    empty answer, never a crash."""
    from datetime import timedelta

    from analyzers.drilldown.bubbleup import candidate_labels, error_bubbleup
    from analyzers.drilldown.errors import counters, error_breakdown
    from analyzers.drilldown.exemplars import latency_exemplars
    from analyzers.errors import PrometheusError

    sd = prom.scenario.deploy("regression")
    t0, t1 = int((sd.started_at - timedelta(hours=1)).timestamp()), int((sd.started_at + timedelta(minutes=40)).timestamp())
    found = {}
    for name, config in (("prometheus", prom.config), ("victoriametrics", victoria.config)):
        client = PrometheusClient(config.prometheus)
        events, exposure = counters(config, sd.service)
        labels = candidate_labels(client, exposure, t0, t1)
        assert {"endpoint", "version", "pod"} <= set(labels), (name, labels)
        top = error_breakdown(client, events, exposure, "version", t0, t1).rows[0]
        bu = error_bubbleup(client, events, exposure, labels, t0, t1)
        assert bu.explanation is not None, (name, [(c.label, c.score) for c in bu.labels])
        found[name] = (top.value, bu.explanation.label, bu.explanation.top.value if bu.explanation.top else None)
        try:
            ex = latency_exemplars(client, "http_request_duration_seconds", sd.service, t0, t1, None)
            assert ex.total == 0
        except PrometheusError as exc:
            assert name == "victoriametrics" and str(exc)
    assert found["prometheus"] == found["victoriametrics"]
    assert found["prometheus"][0] == sd.to_deploy().version
