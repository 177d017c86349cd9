"""verify_series results are pinned: a seeded corpus must give exactly the stored answers.

Speed work on :mod:`analyzers.stats` (caching, fewer medians, numpy instead of pandas) must
not move a single result. The corpus is built by ``benchmarks/bench_verify_speed.py`` from the
scenario generators (every null and effect family, all three ``expect`` values, two alphas, a
minimum effect), the fleet benchmark's own series generator (5 catalog metrics around each deploy
of a small seeded fleet) and edge cases (counter resets, 1e+-250 magnitudes, gaps at the deploy,
jittered timestamps, a flat series). ``tests/fixtures/recorded/verify_series_reference.json`` holds
``to_dict()`` of each (first recorded at commit 68909be, before the speed work).

Comparison (:func:`benchmarks.reproducible.assert_same_result`): statuses, directions, baselines, shapes and every
other non-number compare **exactly**; floats within a **relative tolerance of 1e-9**, with an
absolute floor for values near zero of 1e-12 (dimensionless figures: p-values, phi, scores)
or 1e-12 times the case's own scale (values in the metric's units: effect, interval, event
counts and rates, so the 1e-250 edge case is still compared on its own scale). Numbers
printed inside the reason/method text may differ by one unit in their last printed digit
(about 1 %): another CPU changes last bits, and a last bit can move a rounding.

A deliberate change of the method's results must regenerate the file (and say why in the
commit)::

    .venv/bin/python -m tests.unit.test_stats_reference --write
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from analyzers.stats import verify_series
from benchmarks.bench_verify_speed import Case, edge_cases, fleet_cases, result_json, scenario_cases
from benchmarks.reproducible import assert_same_result, case_scale

ROOT = Path(__file__).resolve().parents[2]

FIXTURE = ROOT / "tests" / "fixtures" / "recorded" / "verify_series_reference.json"


def reference_cases() -> list[Case]:
    return scenario_cases(range(2)) + fleet_cases(services=2) + edge_cases()


def _stored() -> dict[str, dict]:
    return json.loads(FIXTURE.read_text())


CASES = reference_cases()


def test_corpus_covers_every_path() -> None:
    stored = _stored()
    assert sorted(stored) == sorted(c.name for c in CASES), "the corpus changed: regenerate the fixture (see doc)"
    statuses = {r["status"] for r in stored.values()}
    assert statuses == {"shifted", "unchanged", "inconclusive"}
    methods = {r["method"].split(" ")[0] for r in stored.values()}
    assert {"AR(1)-prewhitened", "exact"} <= methods
    fleet = [r for k, r in stored.items() if k.startswith("fleet/")]
    assert len(fleet) >= 20 and any(r["status"] == "shifted" for r in fleet)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_result_is_unchanged(case: Case) -> None:
    got = json.loads(result_json(case.run(verify_series)))
    want = _stored()[case.name]
    assert_same_result(got, want, case_scale(want), case.name)


def test_the_comparison_tolerates_last_bits_but_not_changes() -> None:
    """The tolerance is what it says: a last-bit difference passes, a real change does not."""
    want = {"status": "shifted", "p_value": 0.8502, "effect": 1e-250, "details": {"phi": 0.5},
            "reason": "Shift 0.557 (CI -1.49 to 2.6), p=1e-11."}
    ok = {"status": "shifted", "p_value": math.nextafter(0.8502, 1.0), "effect": 1e-250 * (1 + 1e-12),
          "details": {"phi": 0.5 + 1e-15}, "reason": "Shift 0.558 (CI -1.49 to 2.6), p=1e-11."}
    assert_same_result(ok, want, case_scale(want))
    for bad in ({**ok, "status": "unchanged"}, {**ok, "p_value": 0.8490}, {**ok, "effect": 2e-250},
                {**ok, "details": {"phi": 0.5 + 1e-6}}, {**ok, "reason": "No change, p=1e-11."},
                {**ok, "reason": "Shift 0.7 (CI -1.49 to 2.6), p=1e-11."}):
        with pytest.raises(AssertionError):
            assert_same_result(bad, want, case_scale(want))


if __name__ == "__main__" and "--write" in sys.argv:
    FIXTURE.write_text(json.dumps({c.name: json.loads(result_json(c.run(verify_series))) for c in CASES},
                                  indent=1, sort_keys=True) + "\n")
    print(f"wrote {len(CASES)} results to {FIXTURE}")
