"""Verdict logic: how series results map to metric outcomes and how outcomes combine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from analyzers.config import ServiceSpec, default_config
from analyzers.model import Deploy, Expectation, MetricVerdict
from analyzers.verify.bucketcheck import with_buckets
from analyzers.verify.deploy import (
    MetricPlan,
    _combine,
    _outcome,
    find_overlaps,
    metric_query,
    plan_metrics,
)
from tests.fixtures.series import CatalogSeries

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
CFG = default_config()


def _deploy(**kw) -> Deploy:  # type: ignore[no-untyped-def]
    base = dict(deploy_id="d1", service="checkout", environment="production", version="v2", started_at=T0)
    base.update(kw)
    return Deploy(**base)  # type: ignore[arg-type]


def test_plan_puts_declared_first_and_adds_guards_once() -> None:
    d = _deploy(expectations=(Expectation("latency_p99", "decrease"),))
    plans = plan_metrics(d, CFG)
    assert [(p.spec.key, p.role) for p in plans] == [("latency_p99", "expectation"), ("error_ratio", "guard"),
                                                  ("latency_shift", "guard")]
    assert plans[1].expect == "increase"  # the bad direction of a lower-is-better guard


def test_metric_query_escapes_label_values() -> None:
    d = _deploy(service='x"} or up{job=~".+')
    q = metric_query(CFG, "error_ratio", d)
    assert 'service="x\\"} or up{job=~\\".+"' in q


@pytest.mark.parametrize(
    ("role", "expect", "status", "direction", "outcome"),
    [
        ("expectation", "decrease", "shifted", "decrease", "confirmed"),
        ("expectation", "decrease", "shifted", "increase", "opposite"),
        ("expectation", "decrease", "unchanged", None, "no_effect"),
        ("expectation", "unchanged", "unchanged", None, "confirmed"),
        ("expectation", "unchanged", "shifted", "increase", "opposite"),
        ("guard", "increase", "shifted", "increase", "regressed"),
        ("guard", "increase", "shifted", "decrease", "improved"),
        ("expectation", "decrease", "shifted", None, "no_effect"),  # spread only: no direction, never opposite
        ("guard", "increase", "unchanged", None, "ok"),
        ("guard", "increase", "inconclusive", None, "inconclusive"),
    ],
)
def test_outcome_mapping(role: str, expect: str, status: str, direction: str | None, outcome: str) -> None:
    plan = MetricPlan(CFG.metric("latency_p99"), role, expect, None)
    assert _outcome(plan, status, direction) == outcome


def _mv(outcome: str, role: str = "guard", needed: float | None = None) -> MetricVerdict:
    return MetricVerdict(metric="m_" + outcome, role=role, expect="increase", outcome=outcome, reason="r",  # type: ignore[arg-type]
                         result={"needed_more_s": needed} if needed else None)


def test_any_regression_fails_even_with_inconclusive_others() -> None:
    overall, reason, _ = _combine(_deploy(), [_mv("regressed"), _mv("inconclusive")], False)
    assert overall == "fail" and "m_regressed" in reason


def test_missing_data_is_never_a_pass() -> None:
    overall, reason, retry = _combine(_deploy(), [_mv("ok"), _mv("inconclusive", needed=600)], False)
    assert overall == "inconclusive"
    assert retry == 600 and "10 minutes" in reason


def test_no_data_at_all_says_what_to_check_not_to_wait() -> None:
    # waiting cannot help a metric with no samples: the headline gives its reason, no retry time
    no_data = MetricVerdict(metric="latency_p99", role="guard", expect="increase", outcome="inconclusive",
                            reason="No data: the series is empty or all NaN around the deploy; check the query "
                                   "and that the metric is scraped.")
    overall, reason, retry = _combine(_deploy(), [no_data], False)
    assert overall == "inconclusive" and retry is None
    assert "not enough data yet" not in reason
    assert "latency_p99" in reason and "check the query" in reason


def test_no_effect_passes_unless_asked_to_fail() -> None:
    ms = [_mv("no_effect", role="expectation"), _mv("ok")]
    assert _combine(_deploy(), ms, False)[0] == "pass"
    assert _combine(_deploy(), ms, True)[0] == "fail"


def test_overlap_detection_uses_window_and_dependencies() -> None:
    from dataclasses import replace

    cfg = replace(CFG, services={"checkout": ServiceSpec("checkout", depends_on=("payments",))})
    d = _deploy()
    near_dep = _deploy(deploy_id="d2", service="payments", started_at=T0 + timedelta(minutes=2))
    near_unrelated = _deploy(deploy_id="d3", service="search", started_at=T0 + timedelta(minutes=1))
    far = _deploy(deploy_id="d4", started_at=T0 + timedelta(hours=3))
    assert [o.deploy_id for o in find_overlaps(d, [d, near_dep, near_unrelated, far], cfg)] == ["d2"]


def test_chart_points_start_at_the_before_window_keep_gaps_and_thin_to_the_cap() -> None:
    import numpy as np
    import pandas as pd

    from analyzers.verify.deploy import chart_points

    d = _deploy()
    idx = pd.date_range(d.started_at - timedelta(hours=6), periods=480, freq="60s", tz="UTC")
    values = np.full(480, 1.0 / 3.0)
    values[360] = np.nan  # a scrape gap at the deploy
    values[361] = np.inf
    out = chart_points(pd.Series(values, index=idx), d, CFG, max_points=1000)
    first = int((d.started_at - timedelta(seconds=CFG.verification.window_before_s)).timestamp())
    assert out["t"][0] == first and len(out["t"]) == len(out["v"]) == 480 - 180
    assert out["v"][180] is None and out["v"][181] is None  # gaps stay gaps, never 0
    assert out["v"][0] == 0.333333333 and isinstance(out["v"][0], float)  # 9 decimals, plain floats
    thinned = chart_points(pd.Series(values, index=idx), d, CFG, max_points=100)
    assert len(thinned["t"]) <= 100 and thinned["t"][0] == first


SHIFTED = {"status": "shifted", "direction": "increase", "p_value": 2e-4, "reason": "Increase of 0.1 (p=0.0002)."}


def _bucket(p: float) -> dict:  # type: ignore[type-arg]
    return {"method": "G-test", "p_value": p, "n_before": 86000.0, "n_after": 16800.0, "max_cdf_diff": 0.065}


def test_a_percentile_move_the_bucket_counts_do_not_show_is_not_a_shift() -> None:
    # Intersection-union: the line and the buckets must both change; the p-value is the larger.
    res = with_buckets(dict(SHIFTED, bucket_test=_bucket(0.4)), alpha=0.01)
    assert res["status"] == "unchanged" and res["p_value"] == 0.4
    assert "did not" in res["reason"] and "86,000 requests before" in res["reason"]
    assert _outcome(MetricPlan(CFG.metric("latency_p99"), "guard", "increase", None), res["status"], res["direction"]) == "ok"


def test_a_shift_the_bucket_counts_confirm_stays_with_both_p_values() -> None:
    res = with_buckets(dict(SHIFTED, bucket_test=_bucket(0.0)), alpha=0.01)
    assert res["status"] == "shifted" and res["p_value"] == 2e-4
    assert "differ too (G-test p < 0.0001" in res["reason"] and "6.5 pp" in res["reason"]


@pytest.mark.parametrize("bt", [{"error": "query failed: timeout"}, dict(_bucket(float("nan")))])
def test_a_bucket_test_that_could_not_run_leaves_the_shift_and_says_so(bt: dict) -> None:  # type: ignore[type-arg]
    res = with_buckets(dict(SHIFTED, bucket_test=bt), alpha=0.01)
    assert res["status"] == "shifted" and res["p_value"] == 2e-4
    assert "Bucket counts not compared" in res["reason"]


def test_a_declared_effect_not_seen_yet_fails_only_once_the_window_is_over() -> None:
    # verify --wait --fail-on-no-effect polls early: "not seen yet" must not fail a poll that a
    # later look could still turn into "confirmed"; at the end of the window it fails.
    from analyzers.verify.deploy import verify_deploy

    d = _deploy(expectations=(Expectation("latency_p99", "decrease"),), finished_at=T0 + timedelta(minutes=5))
    fetcher = CatalogSeries(T0, after=timedelta(minutes=60), seed=3)
    early = verify_deploy(d, CFG, None, now=T0 + timedelta(minutes=15), fail_on_no_effect=True, fetcher=fetcher)  # type: ignore[arg-type]
    assert [m.outcome for m in early.metrics if m.metric == "latency_p99"] == ["no_effect"]
    assert early.overall == "pass", early.reason
    late = verify_deploy(d, CFG, None, now=T0 + timedelta(minutes=35), fail_on_no_effect=True, fetcher=fetcher)  # type: ignore[arg-type]
    assert late.overall == "fail" and "latency_p99 (no effect)" in late.reason, late.reason
    # the verdict's intervals are the sequences' and say so
    p99 = next(m for m in late.metrics if m.metric == "latency_p99")
    assert p99.result and p99.result["sequential"]["status"] == "unchanged"
    assert "any-look CI" in p99.reason or p99.result.get("ci_kind") == "confidence sequence"


def test_a_failed_deploys_reason_names_the_overlapping_deploys_itself() -> None:
    # The reason said "Overlapping deploys may share the blame (see warnings)", but the gate's body
    # and `canary --format json` carry the reason without the warnings: the reason names them now.
    from analyzers.verify.deploy import verify_deploy

    d = _deploy(expectations=(Expectation("latency_p99", "decrease"),), finished_at=T0 + timedelta(minutes=5))
    near = _deploy(deploy_id="checkout-v3-hotfix", version="v3", started_at=T0 + timedelta(minutes=2))
    fetcher = CatalogSeries(T0, after=timedelta(minutes=60), seed=3)
    late = verify_deploy(d, CFG, None, others=[near], now=T0 + timedelta(minutes=35),  # type: ignore[arg-type]
                         fail_on_no_effect=True, fetcher=fetcher)
    assert late.overall == "fail", late.reason
    assert "Overlapping deploys may share the blame: checkout-v3-hotfix." in late.reason
    assert "see warnings" not in late.reason
    assert late.multiple_testing.startswith(f"Bonferroni across {sum(1 for m in late.metrics if m.result)} tested metric")


def test_a_no_change_reason_quotes_the_figures_the_card_shows() -> None:
    # audit9: the latency_p99 card read "No change at the deploy: shift -9.6 ms (CI -154.8 to +135.6 ms),
    # p = 0.53" (the one-look test) beside effect -34.6 ms, 99.5% CI -210.0 to +171.7 ms, p 1 (the
    # confidence sequence the decision comes from). One estimate now, the reported one.
    from analyzers.stats.reporting import fmt_change
    from analyzers.verify.deploy import verify_deploy

    d = _deploy(finished_at=T0 + timedelta(minutes=5))
    fetcher = CatalogSeries(T0, after=timedelta(minutes=60), seed=3)
    v = verify_deploy(d, CFG, None, now=T0 + timedelta(minutes=35), fetcher=fetcher)  # type: ignore[arg-type]
    quiet = [m for m in v.metrics if m.result and m.result.get("ci_kind") and "No change at the deploy" in m.reason]
    assert quiet, [m.reason for m in v.metrics]
    for m in quiet:
        res = m.result or {}
        assert f"shift {fmt_change(res['effect'], m.unit)} (any-look interval" in m.reason, m.reason
        assert "always-valid p" in m.reason, m.reason
