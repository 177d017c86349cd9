"""Are verify_series results the same on another CPU? Tolerant comparison, and a check to run.

The reference test (``tests/unit/test_stats_reference.py``) pins the results of a seeded corpus.
Another CPU, BLAS kernel or SIMD path changes the last bits of floats, so the comparison here is
exact for everything but floats, and relative 1e-9 for floats (absolute floor near zero: 1e-12 for
dimensionless figures, 1e-12 times the case's own scale for values in the metric's units).

Run it to check CPU independence on this machine::

    .venv/bin/python -m benchmarks.reproducible [--seeds 4] [--fleet-services 4]

It runs the corpus of ``bench_verify_speed`` in fresh processes under different numerical back
ends (the default; OpenBLAS forced to its generic ``Prescott`` kernels with numpy's AVX-512 paths
disabled; OpenBLAS ``SkylakeX``) and once more with every input value moved by one ulp, and
compares each run with the default one: how many results differ in any bit, and how many
differ beyond the tolerance (any status, direction or decision counts as beyond).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

REL_TOL = 1e-9
ABS_FLOOR = 1e-12
#: Keys whose values carry the metric's unit (their absolute floor scales with the case).
UNIT_KEYS = {"effect", "effect_ci", "events_before", "events_after", "rate_before", "rate_after"}
#: Free text holding printed numbers.
TEXT_KEYS = {"reason", "method"}
_NUM = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def case_scale(rec: dict) -> float:
    vals: list[float] = []

    def walk(d: dict) -> None:
        for k, v in d.items():
            if isinstance(v, dict):
                walk(v)
            elif k in UNIT_KEYS:
                vals.extend(x for x in (v if isinstance(v, list) else [v]) if isinstance(x, float) and math.isfinite(x))
    walk(rec)
    return max((abs(x) for x in vals), default=1.0) or 1.0


def _close(a: float, b: float, floor: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= max(REL_TOL * max(abs(a), abs(b)), floor)


def _same_text(a: str, b: str) -> bool:
    if _NUM.sub("#", a) != _NUM.sub("#", b):
        return False
    return all(abs(float(x) - float(y)) <= 0.011 * max(abs(float(x)), abs(float(y))) + 1e-300
               for x, y in zip(_NUM.findall(a), _NUM.findall(b), strict=True))


def assert_same_result(got: object, want: object, scale: float, path: str = "", key: str = "") -> None:
    """Exact for non-floats, relative 1e-9 (absolute floor near zero) for floats; see the module doc."""
    if isinstance(want, float) or isinstance(got, float):
        assert isinstance(got, (int, float)) and isinstance(want, (int, float)), f"{path}: {got!r} != {want!r}"
        floor = ABS_FLOOR * scale if key in UNIT_KEYS else ABS_FLOOR
        assert _close(float(got), float(want), floor), f"{path}: {got!r} != {want!r} (rel 1e-9, floor {floor:g})"
    elif isinstance(want, dict):
        assert isinstance(got, dict) and sorted(got) == sorted(want), f"{path}: keys {sorted(got)} != {sorted(want)}"
        for k in want:
            assert_same_result(got[k], want[k], scale, f"{path}.{k}", k)
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{path}: {got!r} != {want!r}"
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_same_result(g, w, scale, f"{path}[{i}]", key)
    elif key in TEXT_KEYS and isinstance(want, str) and isinstance(got, str):
        assert _same_text(got, want), f"{path}: {got!r} != {want!r}"
    else:
        assert got == want, f"{path}: {got!r} != {want!r}"



def differs(got: dict, want: dict) -> str | None:
    """None when ``got`` matches ``want`` within the tolerance, else what differs."""
    try:
        assert_same_result(got, want, case_scale(want))
    except AssertionError as exc:
        return str(exc).splitlines()[0]
    return None


#: Numerical back ends to compare (environment of a fresh process).
BACKENDS: dict[str, dict[str, str]] = {
    "default": {},
    "openblas-prescott-no-avx512": {
        "OPENBLAS_CORETYPE": "Prescott",
        "NPY_DISABLE_CPU_FEATURES": "AVX512F AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL AVX512_SPR",
    },
    "openblas-skylakex": {"OPENBLAS_CORETYPE": "SkylakeX"},
}


def _run(seeds: int, services: int, perturb: bool) -> dict[str, dict]:
    """Child process: the corpus results as {name: to_dict()} (inputs moved by one ulp if asked)."""
    import numpy as np

    from analyzers.stats import verify_series
    from benchmarks.bench_verify_speed import corpus, result_json

    out = {}
    for c in corpus(range(seeds), services):
        s = c.series
        if perturb:
            v = s.to_numpy(dtype=float)
            s = s.copy()
            moved = np.nextafter(v, np.where(np.arange(v.size) % 2, np.inf, -np.inf))
            # integer counts stay integers (another CPU does not change the data, and a
            # non-integer count rightly leaves the Poisson path)
            s[:] = np.where(v == np.round(v), v, moved)
        out[c.name] = json.loads(result_json(verify_series(s, c.deploy_at, c.expect, **c.options)))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--fleet-services", type=int, default=4)
    ap.add_argument("--child", choices=["plain", "ulp"], help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        Path(a.out).write_text(json.dumps(_run(a.seeds, a.fleet_services, a.child == "ulp")))
        return 0
    runs: dict[str, dict[str, dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        plan = [(name, env, "plain") for name, env in BACKENDS.items()] + [("default, inputs +-1 ulp", {}, "ulp")]
        for name, env, mode in plan:
            out = Path(tmp) / f"{len(runs)}.json"
            base = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "NPY_DISABLE_CPU_FEATURES")}
            subprocess.run([sys.executable, "-m", "benchmarks.reproducible", "--child", mode, "--out", str(out), "--seeds", str(a.seeds),
                            "--fleet-services", str(a.fleet_services)], env={**base, **env}, check=True, cwd=ROOT)
            runs[name] = json.loads(out.read_text())
    ref = runs["default"]
    print(f"{len(ref)} verify_series results per run; compared with the default back end\n")
    print("| run | results with any bit different | beyond tolerance (rel 1e-9; statuses exact) | statuses different |")
    print("|---|---|---|---|")
    worst = 0
    for name, got in runs.items():
        if name == "default":
            continue
        bits = sum(got[k] != ref[k] for k in ref)
        beyond = [(k, d) for k in ref if (d := differs(got[k], ref[k]))]
        status = sum(got[k]["status"] != ref[k]["status"] for k in ref)
        worst = max(worst, len(beyond) if "ulp" not in name else status)
        print(f"| {name} | {bits} | {len(beyond)} | {status} |")
        for k, d in beyond[:5]:
            print(f"|   {k} | {d} | | |")
    return 1 if worst else 0


if __name__ == "__main__":
    raise SystemExit(main())
