"""The rule that combines a deploy's before/after verdict with its canary verdict, row by row."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from analyzers.events.combined import canary_serving, combine, combine_metric, combine_metrics, latest_pair
from analyzers.model import DeployVerdict, MetricVerdict

T = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def ba_m(outcome: str, metric: str = "error_ratio", dry: bool = False) -> MetricVerdict:
    return MetricVerdict(metric=metric, role="guard", expect="increase", outcome=outcome, reason=f"ba {outcome}",  # type: ignore[arg-type]
                         dry_run=dry)


def c_m(outcome: str, metric: str = "error_ratio", intervals: int = 20, dry: bool = False) -> MetricVerdict:
    return MetricVerdict(metric=metric, role="canary", expect="no worse than baseline", outcome=outcome,  # type: ignore[arg-type]
                         reason=f"canary {outcome}", result={"intervals": intervals}, dry_run=dry)


def verdict(overall: str, *metrics: MetricVerdict, kind: str = "first") -> DeployVerdict:
    return DeployVerdict(deploy_id="d1", overall=overall, reason=f"{kind} {overall}", metrics=metrics,  # type: ignore[arg-type]
                         checked_at=T, check_kind=kind)


# (before/after outcome or None, canary outcome or None, combined outcome, decided by)
METRIC_ROWS = [
    ("regressed", "ok", "fail", "before/after"),  # either failing fails, even when the canary is fine
    ("ok", "regressed", "fail", "canary"),
    ("regressed", "regressed", "fail", "both"),
    ("opposite", None, "fail", "before/after"),  # a declared change that went the wrong way
    ("inconclusive", "ok", "ok", "canary"),
    ("ok", "ok", "ok", "canary"),  # both serve: the canary (no traffic drift) is preferred
    ("improved", "ok", "ok", "canary"),
    ("ok", "inconclusive", "ok", "before/after"),  # the canary cannot decide yet: before/after does
    ("confirmed", None, "confirmed", "before/after"),
    (None, "ok", "ok", "canary"),
    ("inconclusive", "inconclusive", "inconclusive", "neither"),  # only when neither can decide
    ("error", None, "inconclusive", "neither"),
    (None, "inconclusive", "inconclusive", "neither"),
]


def test_a_decided_expectation_is_not_overruled_by_a_canary_ok() -> None:
    exp = MetricVerdict(metric="orders", role="expectation", expect="increase", outcome="no_effect", reason="flat")
    c = combine_metric("orders", exp, c_m("ok", "orders"))
    assert (c.outcome, c.decided_by) == ("no_effect", "before/after")  # "no worse" does not confirm a change
    undecided = replace(exp, outcome="inconclusive")
    assert combine_metric("orders", undecided, c_m("ok", "orders")).decided_by == "canary"


@pytest.mark.parametrize(("ba", "canary", "outcome", "by"), METRIC_ROWS)
def test_metric_rule_row_by_row(ba: str | None, canary: str | None, outcome: str, by: str) -> None:
    c = combine_metric("error_ratio", ba_m(ba) if ba else None, c_m(canary) if canary else None)
    assert (c.outcome, c.decided_by) == (outcome, by)


def test_dry_run_regressions_never_fail_a_metric() -> None:
    c = combine_metric("error_ratio", ba_m("ok"), c_m("regressed", dry=True))
    assert c.outcome == "ok" and c.decided_by == "before/after"
    c = combine_metric("error_ratio", ba_m("regressed", dry=True), c_m("inconclusive"))
    assert c.outcome == "regressed" and c.decided_by == "before/after"  # reported as found, never "fail"


# (before/after overall or None, canary overall or None, canary serving, combined overall, reason starts)
OVERALL_ROWS = [
    ("pass", "fail", True, "fail", "canary"),
    ("fail", "pass", True, "fail", "Before/after"),
    ("fail", None, False, "fail", "Before/after"),
    ("pass", "pass", True, "pass", "canary"),
    ("inconclusive", "pass", True, "pass", "canary"),  # the canary decides while both serve
    ("pass", "inconclusive", True, "inconclusive", "canary"),  # a before/after pass does not promote a canary
    ("pass", "inconclusive", False, "pass", "Before/after"),  # no canary traffic (promoted, no label)
    ("inconclusive", "inconclusive", False, "inconclusive", "Before/after"),
    (None, "inconclusive", False, "inconclusive", "canary"),
    (None, "pass", True, "pass", "canary"),
    ("pass", None, False, "pass", "Before/after"),
    (None, None, False, "inconclusive", "No verdict yet"),
]


@pytest.mark.parametrize(("ba", "canary", "serving", "overall", "why"), OVERALL_ROWS)
def test_overall_rule_row_by_row(ba: str | None, canary: str | None, serving: bool, overall: str, why: str) -> None:
    b = verdict(ba, ba_m("ok")) if ba else None
    c = verdict(canary, c_m("ok" if canary == "pass" else "inconclusive", intervals=20 if serving else 0),
                kind="canary") if canary else None
    got, reason = combine(c, b)
    assert got == overall
    assert reason.startswith(why), reason
    if ba == "pass" and canary == "inconclusive" and serving:
        assert "mixes both versions' traffic" in reason  # says why the before/after pass is not enough


def test_serving_means_some_metric_compared_both_versions() -> None:
    assert canary_serving(verdict("inconclusive", c_m("inconclusive", intervals=0), c_m("ok", "latency_p99", 3), kind="canary"))
    assert not canary_serving(verdict("inconclusive", c_m("inconclusive", intervals=0), kind="canary"))
    assert not canary_serving(None)


def test_metrics_union_keeps_before_after_order_then_canary_only() -> None:
    b = verdict("pass", ba_m("ok", "latency_p99"), ba_m("ok", "error_ratio"), ba_m("confirmed", "orders"))
    c = verdict("fail", c_m("regressed", "error_ratio"), c_m("ok", "memory"), kind="canary")
    rows = combine_metrics(c, b)
    assert [r.metric for r in rows] == ["latency_p99", "error_ratio", "orders", "memory"]
    assert [r.outcome for r in rows] == ["ok", "fail", "confirmed", "ok"]
    assert rows[2].canary is None and rows[3].before_after is None
    assert rows[1].to_dict() == {"metric": "error_ratio", "before_after": "ok", "canary": "regressed",
                                 "outcome": "fail", "decided_by": "canary"}


def test_latest_pair_reads_each_kind_from_the_history() -> None:
    old_c = verdict("inconclusive", kind="canary")
    first = verdict("pass", kind="first")
    new_c = verdict("fail", kind="canary")
    assert latest_pair([old_c, first, new_c]) == (new_c, first)
    assert latest_pair([first]) == (None, first)
    assert latest_pair([]) == (None, None)


# (before/after overall, canary overall, combined once the rollout is over)
ROLLED_OUT_ROWS = [
    ("pass", "inconclusive", "pass"),  # the canary period's overlap was too short to decide: before/after stands
    ("pass", "fail", "fail"),  # a canary that failed still fails the deploy
    ("inconclusive", "pass", "pass"),  # before/after undecided: the canary's decision still counts
    ("inconclusive", "inconclusive", "inconclusive"),
]


@pytest.mark.parametrize(("ba", "canary", "overall"), ROLLED_OUT_ROWS)
def test_after_the_rollout_an_undecided_canary_no_longer_vetoes(ba: str, canary: str, overall: str) -> None:
    from analyzers.events.combined import combined_verdict

    b = verdict(ba, ba_m("ok"))
    c = verdict(canary, c_m({"pass": "ok", "fail": "regressed"}.get(canary, "inconclusive")), kind="canary")
    assert combine(c, b, rolled_out=True)[0] == overall
    both = combined_verdict(c, b, rolled_out=True)
    assert both is not None and both.overall == overall and [m.role for m in both.metrics] == ["guard", "canary"]
    if (ba, canary) == ("pass", "inconclusive"):
        assert combine(c, b)[0] == "inconclusive"  # while it runs, the canary decides
