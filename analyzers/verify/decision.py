"""The one decision table of a deploy verdict: per metric, from the evidence to the outcome.

Inputs per metric (:class:`Evidence` and the metric's plan):

* **level**: a significant, persistent level shift and its direction (after Bonferroni across the
  deploy's metrics and the minimum meaningful effect), or none. A transient that returned to
  baseline (restart blip, cold cache) is no level shift: it is reported as information.
* **spread**: the spread of the prewhitened residuals grew, shrank, or did not change.
* **tail**: the requests per latency bucket (histogram-backed percentiles) differ with the slow
  tail's share grown (``differs``) or shrunk (``faster``: the mix moved to faster buckets), differ no
  more than the mix moves without a deploy (``drift``: between adjacent windows before the
  deploy, or as it moved over the same hours a day earlier; traffic falling with the hour,
  bursts; :mod:`analyzers.stats.bucket_drift`), do not differ, or were not compared. Bucket
  counts that do not differ, or differ only by drift, veto a level shift of the percentile line
  (intersection-union, :mod:`analyzers.verify.bucketcheck`).
* **role**: an expectation (``increase``/``decrease``/``unchanged``) or a guard, which fails on
  its metric's bad direction (the opposite of ``good``; a guard without a good direction
  watches but never fails).
* **metric kind**: latency and error ratios whose good direction is ``decrease`` are *tail-bad*
  (higher and wider are worse).

The level is read relative to the role: ``declared``/``against`` for a declared direction;
``bad``/``good``/``moved`` (the metric has no good direction) for guards and ``unchanged``.
The first matching rule of :data:`RULES` gives the outcome. Two principles hold in every row:
a change without a direction (spread only) is never ``opposite``, and a tighter spread on a
latency or error metric is never a regression. ``docs/statistics.md`` prints the table
(:func:`table_markdown`), and ``tests/unit/test_verification_logic.py`` tests it row by row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

Level = Literal["increase", "decrease", "none"]
Spread = Literal["wider", "narrower", "none"]
Tail = Literal["differs", "faster", "drift", "same", "not compared"]

#: Metric kinds whose higher values and wider spread are worse (the tail is what users feel).
TAIL_BAD_KINDS = frozenset({"latency", "ratio"})


@dataclass(frozen=True)
class Evidence:
    """What the tests found on one metric (see the module doc)."""

    level: Level = "none"
    spread: Spread = "none"
    tail: Tail = "not compared"
    judged: bool = True
    #: "transient at deploy, recovered after 4 min" when a transient was seen (information only).
    transient: str | None = None


@dataclass(frozen=True)
class Rule:
    """One row of the table: ``*`` matches anything."""

    role: str  # increase | decrease | unchanged | guard | *
    level: str  # declared | against | bad | good | moved | none | *
    spread: str  # wider | narrower | none | *
    tail: str  # differs | drift | same | not compared | *
    kind: str  # tail-bad | *
    outcome: str
    why: str


RULES: tuple[Rule, ...] = (
    Rule("*", "*", "*", "*", "*", "inconclusive", "not enough data to judge (or a query failed)"),
    Rule("increase", "declared", "*", "*", "*", "confirmed", "moved the declared way"),
    Rule("decrease", "declared", "*", "*", "*", "confirmed", "moved the declared way"),
    Rule("increase", "against", "*", "*", "*", "opposite", "moved the other way"),
    Rule("decrease", "against", "*", "*", "*", "opposite", "moved the other way"),
    Rule("increase", "none", "*", "*", "*", "no_effect", "no level shift; a spread change has no direction"),
    Rule("decrease", "none", "*", "*", "*", "no_effect", "no level shift; a spread change has no direction"),
    Rule("unchanged", "bad", "*", "*", "*", "opposite", "moved in the metric's bad direction"),
    Rule("unchanged", "moved", "*", "*", "*", "opposite", "moved (the metric has no good direction)"),
    Rule("unchanged", "good", "*", "*", "*", "improved", "moved in the metric's good direction"),
    Rule("unchanged", "none", "*", "*", "*", "confirmed", "the level stayed (a spread change is noted)"),
    Rule("guard", "bad", "*", "*", "*", "regressed", "moved in the direction the guard fails on"),
    Rule("guard", "good", "*", "*", "*", "improved", "moved in the good direction"),
    Rule("guard", "moved", "*", "*", "*", "ok", "moved, but the guard has no bad direction"),
    Rule("guard", "none", "wider", "differs", "tail-bad", "regressed",
         "wider spread and the requests per bucket differ beyond their drift before the deploy: the tail got worse"),
    Rule("guard", "none", "wider", "drift", "tail-bad", "ok",
         "wider spread, but the bucket mix moved no more than it does without a deploy (traffic, bursts): noted"),
    Rule("guard", "none", "narrower", "*", "tail-bad", "ok", "tighter spread: not a regression (noted)"),
    Rule("guard", "none", "wider", "faster", "tail-bad", "ok",
         "wider spread, but the slow tail's share of requests shrank (the mix moved to faster buckets): noted"),
    Rule("guard", "none", "*", "*", "*", "ok", "no regression"),
)

_BAD = {"decrease": "increase", "increase": "decrease"}


@dataclass(frozen=True)
class Decision:
    outcome: str
    rule: int  # index in RULES
    why: str


def relative_level(role: str, expect: str, good: str, level: Level) -> str:
    """The level read against the role (see the module doc)."""
    if level == "none":
        return "none"
    if role == "expectation" and expect in ("increase", "decrease"):
        return "declared" if level == expect else "against"
    bad = _BAD.get(good)
    if bad is None:
        return "moved"
    return "bad" if level == bad else "good"


def decide(role: str, expect: str, good: str, kind: str, ev: Evidence) -> Decision:
    """The outcome of one metric: the first rule of :data:`RULES` that matches."""
    level = ev.level if ev.tail not in ("same", "drift") else "none"  # bucket veto (intersection-union)
    keys = {
        "role": "guard" if role == "guard" else expect,
        "level": relative_level(role, expect, good, level),
        "spread": ev.spread,
        "tail": ev.tail,
        "kind": "tail-bad" if kind in TAIL_BAD_KINDS and good == "decrease" else "other",
    }
    for i, rule in enumerate(RULES):
        if i == 0:
            if not ev.judged:
                return Decision(rule.outcome, i, rule.why)
            continue
        if all(getattr(rule, k) in ("*", v) for k, v in keys.items()):
            return Decision(rule.outcome, i, rule.why)
    raise AssertionError(f"no rule matches {keys}")  # the last rule matches every guard; roles are closed


def evidence_from_result(res: dict[str, Any] | None, status: str, alpha: float) -> Evidence:
    """Evidence from a ``verify_series`` result dict and its status after Bonferroni (see deploy.py)."""
    if res is None or status == "inconclusive":
        return Evidence(judged=False)
    details = res.get("details") or {}
    level: Level = "none"
    if status == "shifted" and res.get("change_kind", "level") == "level" and res.get("direction") in ("increase", "decrease"):
        level = res["direction"]
    spread: Spread = "none"
    p_spread, ratio = details.get("p_spread"), details.get("spread_ratio")
    if p_spread is not None and ratio is not None and math.isfinite(ratio) and p_spread <= alpha:
        spread = "wider" if ratio > 1 else "narrower"
    if status == "shifted" and res.get("change_kind") == "variance" and spread == "none" and ratio is not None:
        spread = "wider" if ratio > 1 else "narrower"
    tail: Tail = "not compared"
    bt = res.get("bucket_test") or {}
    p = bt.get("p_value")
    if "error" not in bt and p is not None and math.isfinite(p):
        # At the level the bucket test was judged at (with_buckets: the metric's alpha / k), so
        # the reason's "no more than drift" and the table's tail are one decision, in one budget.
        a_tail = float(bt.get("alpha", alpha))
        tail = "differs" if p <= a_tail else "same"
        pb = bt.get("p_beyond_drift")
        if tail == "differs" and pb is not None and math.isfinite(pb) and pb > a_tail:
            tail = "drift"  # differs, but no more than the mix moves without a deploy
        elif tail == "differs" and bt.get("tail_direction") == "faster":
            tail = "faster"  # differs, with fewer slow requests than before
    return Evidence(level=level, spread=spread, tail=tail, transient=(res.get("transient") or {}).get("text"))


def watch_text(role: str, expect: str, good: str) -> str:
    """What a metric is checked for, in a report's words: "fails on increase" for guards."""
    if role == "guard":
        bad = _BAD.get(good)
        return f"fails on {bad}" if bad else "watched, never fails"
    if expect == "unchanged":
        bad = _BAD.get(good)
        return f"declared unchanged, fails on {bad}" if bad else "declared unchanged, fails on any move"
    return f"declared {expect}"


def table_markdown() -> str:
    """The table as Markdown (printed in docs/statistics.md; a test keeps the two equal)."""
    head = "| # | role | level | spread | tail (buckets) | kind | outcome | why |\n|---|---|---|---|---|---|---|---|\n"
    rows = []
    for i, r in enumerate(RULES):
        if i == 0:
            rows.append(f"| {i} | any | data missing, too short or query failed | | | | inconclusive | {r.why} |")
            continue
        rows.append(f"| {i} | {r.role} | {r.level} | {r.spread} | {r.tail} | {r.kind} | {r.outcome} | {r.why} |")
    return head + "\n".join(rows) + "\n"
