"""The deploy verdict's decision table (analyzers.verify.decision), row by row, and its principles
over every combination of inputs."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from analyzers.verify.bucketcheck import tail_direction
from analyzers.verify.decision import (
    RULES,
    Evidence,
    decide,
    evidence_from_result,
    table_markdown,
    watch_text,
)

ROOT = Path(__file__).resolve().parents[2]

# (rule index, role, expect, good, kind, evidence): one example that must land on that very row.
ROWS = [
    (0, "guard", "increase", "decrease", "latency", Evidence(judged=False)),
    (1, "expectation", "increase", "increase", "rate", Evidence(level="increase")),
    (2, "expectation", "decrease", "decrease", "latency", Evidence(level="decrease", spread="narrower")),
    (3, "expectation", "increase", "increase", "rate", Evidence(level="decrease")),
    (4, "expectation", "decrease", "decrease", "latency", Evidence(level="increase")),
    (5, "expectation", "increase", "increase", "rate", Evidence(spread="wider")),
    # the demo's checkout v1.14.1: declared decrease of p99, the spread shrank x0.1, no level shift
    (6, "expectation", "decrease", "decrease", "latency", Evidence(spread="narrower")),
    (7, "expectation", "unchanged", "decrease", "latency", Evidence(level="increase")),
    (8, "expectation", "unchanged", "none", "rate", Evidence(level="decrease")),
    (9, "expectation", "unchanged", "decrease", "latency", Evidence(level="decrease")),
    (10, "expectation", "unchanged", "decrease", "latency", Evidence(spread="wider")),
    (11, "guard", "increase", "decrease", "ratio", Evidence(level="increase")),
    (12, "guard", "increase", "decrease", "latency", Evidence(level="decrease")),
    (13, "guard", "any", "none", "rate", Evidence(level="increase")),
    (14, "guard", "increase", "decrease", "latency", Evidence(spread="wider", tail="differs")),
    # the demo's noop_late checkout at 05:15 UTC: p99 spread x3.2 and the bucket mix moved (plain
    # G-test p < 1e-4 on 12,403 requests), but no more than it drifts between the half-hours before
    (15, "guard", "increase", "decrease", "latency", Evidence(spread="wider", tail="drift")),
    (16, "guard", "increase", "decrease", "latency", Evidence(spread="narrower")),
    # the demo's gradual search rollout (p50 x0.55 over 20 min): the p99 line's spread widened
    # while the requests moved to faster buckets
    (17, "guard", "increase", "decrease", "latency", Evidence(spread="wider", tail="faster")),
    (18, "guard", "increase", "decrease", "latency", Evidence()),
]


def test_every_row_has_an_example() -> None:
    assert sorted(r[0] for r in ROWS) == list(range(len(RULES)))


@pytest.mark.parametrize(("row", "role", "expect", "good", "kind", "ev"), ROWS, ids=[f"row{r[0]}" for r in ROWS])
def test_row(row: int, role: str, expect: str, good: str, kind: str, ev: Evidence) -> None:
    d = decide(role, expect, good, kind, ev)
    assert (d.rule, d.outcome) == (row, RULES[row].outcome)


def _all_inputs():  # type: ignore[no-untyped-def]
    roles = [("expectation", e) for e in ("increase", "decrease", "unchanged")] + [("guard", "x")]
    for (role, expect), good, kind, level, spread, tail in itertools.product(
            roles, ("increase", "decrease", "none"), ("latency", "ratio", "rate", "gauge", "count"),
            ("increase", "decrease", "none"), ("wider", "narrower", "none"), ("differs", "faster", "drift", "same", "not compared")):
        yield role, expect, good, kind, Evidence(level=level, spread=spread, tail=tail)  # type: ignore[arg-type]


def test_principles_hold_for_every_combination() -> None:
    n = 0
    for role, expect, good, kind, ev in _all_inputs():
        d = decide(role, expect, good, kind, ev)
        n += 1
        if ev.level == "none" or ev.tail in ("same", "drift"):  # no (standing) direction
            assert d.outcome != "opposite", (role, expect, good, kind, ev)
            if expect in ("increase", "decrease") and role == "expectation":
                assert d.outcome == "no_effect"
        if ev.spread == "narrower" and kind in ("latency", "ratio") and ev.level == "none":
            assert d.outcome not in ("regressed", "opposite")
        if role == "guard" and good == "none":
            assert d.outcome != "regressed"  # a guard without a bad direction never fails
        if ev.level == "none" and ev.tail != "differs":  # no level, no tail change beyond its drift
            assert d.outcome not in ("regressed", "opposite")
        assert d.outcome in {"confirmed", "no_effect", "opposite", "regressed", "improved", "ok"}
    assert n == 4 * 3 * 5 * 3 * 3 * 5


def test_bucket_counts_that_do_not_differ_veto_the_line() -> None:
    ev = Evidence(level="increase", tail="same")
    assert decide("guard", "increase", "decrease", "latency", ev).outcome == "ok"


def test_a_bucket_mix_within_its_drift_is_drift_and_vetoes_the_line() -> None:
    base = {"status": "shifted", "change_kind": "variance", "direction": None,
            "details": {"p_spread": 0.001, "spread_ratio": 3.19, "p_level": 0.4}}
    drift = dict(base, bucket_test={"p_value": 1e-6, "p_beyond_drift": 0.4})
    beyond = dict(base, bucket_test={"p_value": 1e-6, "p_beyond_drift": 1e-4})
    plain = dict(base, bucket_test={"p_value": 1e-6})  # too few windows before the deploy: the G-test alone
    assert evidence_from_result(drift, "shifted", 0.01).tail == "drift"
    assert evidence_from_result(beyond, "shifted", 0.01).tail == "differs"
    assert evidence_from_result(plain, "shifted", 0.01).tail == "differs"
    faster = dict(base, bucket_test={"p_value": 1e-6, "p_beyond_drift": 1e-4, "tail_direction": "faster"})
    slower = dict(base, bucket_test={"p_value": 1e-6, "p_beyond_drift": 1e-4, "tail_direction": "slower"})
    assert evidence_from_result(faster, "shifted", 0.01).tail == "faster"
    assert evidence_from_result(slower, "shifted", 0.01).tail == "differs"
    assert decide("guard", "increase", "decrease", "latency", evidence_from_result(faster, "shifted", 0.01)).outcome == "ok"
    assert decide("guard", "increase", "decrease", "latency", evidence_from_result(slower, "shifted", 0.01)).outcome == "regressed"
    assert decide("guard", "increase", "decrease", "latency", Evidence(level="increase", tail="drift")).outcome == "ok"
    assert decide("guard", "increase", "decrease", "latency", Evidence(level="increase", tail="differs")).outcome == "regressed"


def test_evidence_from_a_spread_only_result_has_no_direction() -> None:
    res = {"status": "shifted", "change_kind": "variance", "direction": None,
           "details": {"p_spread": 1e-11, "spread_ratio": 0.0953, "p_level": 0.4}}
    ev = evidence_from_result(res, "shifted", 0.01)
    assert ev == Evidence(level="none", spread="narrower")


def test_guards_say_what_they_watch_for() -> None:
    assert watch_text("guard", "increase", "decrease") == "fails on increase"
    assert watch_text("guard", "any", "none") == "watched, never fails"
    assert watch_text("expectation", "unchanged", "increase") == "declared unchanged, fails on decrease"


def test_the_docs_print_the_table_of_the_code() -> None:
    assert table_markdown() in (ROOT / "docs" / "statistics.md").read_text()


def test_the_tail_direction_reads_which_way_the_slow_requests_moved() -> None:
    les = (0.05, 0.1, 0.25, 0.5, 1.0, float("inf"))
    before = (100.0, 500.0, 900.0, 980.0, 998.0, 1000.0)  # cumulative: 10 % slower than 250 ms
    faster = tail_direction(les, before, (300.0, 800.0, 980.0, 995.0, 999.0, 1000.0))
    slower = tail_direction(les, before, (50.0, 300.0, 800.0, 940.0, 990.0, 1000.0))
    assert faster["tail_direction"] == "faster" and slower["tail_direction"] == "slower"
    assert faster["tail_le"] == slower["tail_le"] == 0.25
    assert faster["tail_share_before"] == pytest.approx(0.10, abs=1e-9)
    assert faster["tail_share_after"] == pytest.approx(0.02, abs=1e-9)
    assert slower["tail_share_after"] == pytest.approx(0.20, abs=1e-9)
    # a faster median with a heavier tail is a slower tail: only the before window's p90 and up count
    mixed = tail_direction(les, before, (400.0, 700.0, 850.0, 930.0, 960.0, 1000.0))
    assert mixed["tail_direction"] == "slower"
    assert tail_direction(les, before, before) == {}
    assert tail_direction((), (), ()) == {}
    assert tail_direction(les, before, (0.0,) * 6) == {}
