"""Reports with a canary verdict: before/after and canary vs baseline side by side, per metric."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np

from analyzers.delivery.reports import render_html, render_json, render_markdown
from analyzers.model import Deploy, DeployVerdict, MetricVerdict
from analyzers.stats.canary import compare_rates, judge
from analyzers.verify.canary import CanaryReport, canary_verdict

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
DEPLOY = Deploy(deploy_id="d-1", service="checkout", environment="production", version="v2", started_at=T0)


def before_after() -> DeployVerdict:
    ms = (
        MetricVerdict(metric="error_ratio", role="guard", expect="increase", outcome="ok", reason="no change found.",
                      unit="ratio", result={"effect": 0.001, "effect_rel": 0.1, "effect_ci": [-0.002, 0.004],
                                            "p_value": 0.4}),
        MetricVerdict(metric="latency_p99", role="guard", expect="increase", outcome="inconclusive",
                      reason="too few points.", unit="seconds"),
    )
    return DeployVerdict(deploy_id="d-1", overall="pass", reason="checkout v2 passed verification.", metrics=ms,
                         checked_at=T0 + timedelta(minutes=20), service="checkout", version="v2", check_kind="first")


def canary() -> DeployVerdict:
    # 30 errors per 100 canary requests against 10 per 1000 on the baseline, ten minutes: regressed
    c = compare_rates("error_ratio", np.full(10, 30.0), np.full(10, 10.0), np.full(10, 100.0), np.full(10, 1000.0),
                      alpha=0.005)
    rep = CanaryReport(judgement=judge([c]), start=T0, end=T0 + timedelta(minutes=10), queries={"error_ratio": ["q"]})
    return canary_verdict(DEPLOY, rep, now=T0 + timedelta(minutes=21))


def test_markdown_puts_both_results_next_to_each_other() -> None:
    md = render_markdown(before_after(), DEPLOY, canary=canary())
    section = md.split("### Before/after and canary vs baseline")[1]
    assert section.startswith(": ❌ **FAIL** together")  # before/after passed, the canary regressed
    assert "| metric | before/after | canary vs baseline | together |" in section
    row = next(line for line in section.splitlines() if line.startswith("| error\\_ratio"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1].startswith("ok: +0.10 pp")  # before/after: its effect with the unit
    assert cells[2].startswith("regressed: canary/baseline x3")  # canary: the rate ratio
    assert cells[3] == "fail (decided by canary)"
    lat = next(line for line in section.splitlines() if line.startswith("| latency\\_p99"))
    assert "not checked" in lat and "inconclusive" in lat  # only before/after looked at it


def test_without_a_canary_the_report_is_unchanged() -> None:
    assert "canary vs baseline" not in render_markdown(before_after(), DEPLOY)
    assert render_markdown(before_after(), DEPLOY) == render_markdown(before_after(), DEPLOY, canary=None)
    assert "combined" not in json.loads(render_json(before_after(), DEPLOY))


def test_json_carries_the_canary_verdict_and_the_combined_rows() -> None:
    doc = json.loads(render_json(before_after(), DEPLOY, canary=canary()))
    assert doc["verdict"]["overall"] == "pass" and doc["canary"]["overall"] == "fail"
    assert doc["canary"]["check_kind"] == "canary"
    comb = doc["combined"]
    assert comb["verdict"] == "fail" and comb["reason"].startswith("Canary vs baseline")
    assert comb["metrics"] == [
        {"metric": "error_ratio", "before_after": "ok", "canary": "regressed", "outcome": "fail", "decided_by": "canary"},
        {"metric": "latency_p99", "before_after": "inconclusive", "canary": None, "outcome": "inconclusive",
         "decided_by": "neither"},
    ]
    assert DeployVerdict.from_dict(doc["canary"]).overall == "fail"  # round-trips like the main verdict


def test_json_top_level_overall_is_the_answer_the_exit_code_gives() -> None:
    """`jq .verdict.overall` said pass while `verify` exited 1 on a failing canary (audit9): the
    before/after verdict is not the answer when a canary was judged. `overall` is, in every report."""
    with_canary = json.loads(render_json(before_after(), DEPLOY, canary=canary()))
    assert (with_canary["overall"], with_canary["verdict"]["overall"]) == ("fail", "pass")
    assert with_canary["overall"] == with_canary["combined"]["verdict"]
    alone = json.loads(render_json(before_after(), DEPLOY))
    assert alone["overall"] == alone["verdict"]["overall"] == "pass"
    assert list(alone)[:2] == ["schema", "overall"]


def test_html_side_by_side_table_is_escaped() -> None:
    c = canary()
    evil = replace(c, metrics=(replace(c.metrics[0], metric="<img src=x onerror=alert(1)>"),))
    page = render_html(before_after(), DEPLOY, canary=evil)
    side = page.split('id="side-by-side"')[1]
    assert "<img" not in page and "&lt;img src=x" in side
    assert '<td data-label="canary vs baseline">regressed: canary/baseline x' in side
    assert '<span class="badge fail">FAIL</span> together' in side


def test_a_canary_only_report_compares_with_nothing() -> None:
    c = canary()
    doc = json.loads(render_json(c, DEPLOY, canary=c))
    assert doc["combined"]["verdict"] == "fail"
    assert doc["combined"]["metrics"][0]["before_after"] is None  # a canary verdict is not its own before/after


def test_a_latency_canary_interval_is_labelled_at_the_level_it_was_computed() -> None:
    """Two bucket bounds share alpha 0.0025: the deciding bound's interval is a 99.875 % one (its
    reason says so); the report's cell must not call the same interval 99.75 %."""
    from analyzers.stats.canary import compare_buckets

    les = [0.1, 0.25, 0.5, float("inf")]
    # ten one-minute intervals: the canary sends 40% of its requests over 250 ms, the baseline 2%
    canary_cum = np.tile([30.0, 60.0, 90.0, 100.0], (10, 1))
    baseline_cum = np.tile([600.0, 980.0, 995.0, 1000.0], (10, 1))
    c = compare_buckets("latency_p99", les, canary_cum, baseline_cum, bounds=[0.1, 0.25], alpha=0.0025)
    assert c.status == "regressed" and "99.875% interval" in c.reason
    rep = CanaryReport(judgement=judge([c]), start=T0, end=T0 + timedelta(minutes=10), queries={"latency_p99": ["q"]})
    md = render_markdown(before_after(), DEPLOY, canary=canary_verdict(DEPLOY, rep, now=T0 + timedelta(minutes=21)))
    row = next(line for line in md.split("### Before/after and canary vs baseline")[1].splitlines()
               if line.startswith("| latency\\_p99"))
    assert "99.875% CI x" in row and "99.75%" not in row


def test_the_headline_is_the_answer_the_exit_code_gives() -> None:
    """Before/after passed, the canary regressed: `verify` exits 1, the gate says fail, yet the
    Markdown and HTML reports (the PR comment, the artifact) were headed "PASS" with the before/after
    reason. The headline is now the combined verdict; the before/after result stays, labelled."""
    ba, c = before_after(), canary()
    md = render_markdown(ba, DEPLOY, canary=c)
    head, reason = md.splitlines()[0], md.splitlines()[2]
    assert head == "## ❌ Deploy verification: checkout v2 — **FAIL**", head
    assert reason.startswith("Canary vs baseline")
    assert "**Before/after: PASS.** checkout v2 passed verification." in md
    assert md.count("Canary vs baseline: error") == 1  # the combined reason once, not again in the section
    page = render_html(ba, DEPLOY, canary=c)
    assert '<h1>Deploy verification: checkout v2 <span class="badge fail">FAIL</span></h1>' in page
    assert "<title>Deploy verification: checkout v2 FAIL</title>" in page
    assert "<b>Before/after: PASS.</b> checkout v2 passed verification." in page
    waiting = replace(ba, overall="inconclusive", retry_after_s=600.0)
    assert "Before/after: not enough data yet: check again in about 10 min." in render_markdown(
        waiting, DEPLOY, canary=c)  # not a bare "check again" under a FAIL headline
    assert render_markdown(ba, DEPLOY).splitlines()[0].endswith("**PASS**")  # no canary: the before/after verdict
