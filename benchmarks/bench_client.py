"""The Prometheus adapter before and after a change, side by side on one real Prometheus.

One command::

    .venv/bin/python -m benchmarks.bench_client --before cf3f1cc --rounds 5

Starts an empty Prometheus on a free loopback port and, in one process, times the client of
``--before`` (its ``analyzers/prometheus/client.py`` as of that commit, loaded from git) and the
working tree's, interleaved round by round so machine load hits both alike: range queries of
1,441 and 10,081 points (``sum(vector(1))`` and a sine over a day / a week), instant queries and a
bad query (typed error path). Reports the median milliseconds per call and CPU per call, and
checks that both return the same series, values and warnings, and raise the same error class
with the same message.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

QUERIES: dict[str, tuple[str, float, float]] = {
    # name: (query, range seconds, step seconds); step 0 = instant
    "range 1,441 points": ("sum(vector(1))", 86400.0, 60.0),
    "range 10,081 points": ("sin(vector(time()) / 3600)", 7 * 86400.0, 60.0),
    "instant": ("sum(vector(1)) + 1", 0.0, 0.0),
}
BAD = "sum(rate(up[5m])"


def load_before(rev: str) -> types.ModuleType:
    """``analyzers/prometheus/client.py`` at ``rev`` as a module (it imports only lower layers,
    which are compatible: errors and config)."""
    source = subprocess.run(["git", "show", f"{rev}:analyzers/prometheus/client.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    spec = importlib.util.spec_from_loader(f"client_{rev}", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    exec(compile(source, f"{rev}:analyzers/prometheus/client.py", "exec"), module.__dict__)  # noqa: S102
    return module


def timed(fn: Callable[[], Any], n: int) -> tuple[float, float, Any]:
    wall, cpu = [], []
    out = None
    for _ in range(n):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return statistics.median(wall) * 1000, statistics.median(cpu) * 1000, out


def make_call(client: Any, query: str, span: float, step: float, end: datetime) -> Callable[[], Any]:
    def call() -> Any:
        if step:
            return client.query_range(query, end - timedelta(seconds=span), end, step)
        return client.query(query, end)

    return call


def shape(result: Any) -> tuple[Any, ...]:
    return (result.result_type, result.warnings, result.step_s,
            tuple((tuple(sorted(s.labels.items())), tuple(s.values.index.asi8), tuple(s.values.to_numpy().tolist()))
                  for s in result.series))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="git revision to compare with")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=20, help="calls per query per round")
    args = parser.parse_args()

    from analyzers.config import PrometheusSettings
    from analyzers.demo.promserver import PrometheusServer
    from analyzers.prometheus import client as after_mod

    before_mod = load_before(args.before)
    with tempfile.TemporaryDirectory() as tmp, PrometheusServer(Path(tmp) / "tsdb") as prom:
        settings = PrometheusSettings(url=prom.url, timeout_s=30.0)
        clients = {args.before: before_mod.PrometheusClient(settings), "working tree": after_mod.PrometheusClient(settings)}
        end = datetime.now(UTC).replace(second=0, microsecond=0)
        results: dict[str, dict[str, list[tuple[float, float]]]] = {k: {q: [] for q in QUERIES} for k in clients}
        answers: dict[str, dict[str, Any]] = {k: {} for k in clients}
        for r in range(args.rounds):
            order = list(clients.items())
            for name, client in order if r % 2 else order[::-1]:  # alternate who goes first
                for q, (query, span, step) in QUERIES.items():
                    wall, cpu, out = timed(make_call(client, query, span, step, end), args.calls)
                    results[name][q].append((wall, cpu))
                    answers[name][q] = shape(out)
        errors = {}
        for name, client in clients.items():
            try:
                client.query(BAD, end)
            except Exception as exc:  # noqa: BLE001 - compared below
                errors[name] = (type(exc).__name__, str(exc))
    names = list(clients)
    print(f"Prometheus client, {args.rounds} rounds x {args.calls} calls, median per call (wall ms / CPU ms)\n")
    print(f"| query | {names[0]} | {names[1]} | same answer |")
    print("|---|---:|---:|---|")
    for q in QUERIES:
        cells = []
        for name in names:
            wall = statistics.median(w for w, _ in results[name][q])
            cpu = statistics.median(c for _, c in results[name][q])
            cells.append(f"{wall:.2f} / {cpu:.2f}")
        same = "yes" if answers[names[0]][q] == answers[names[1]][q] else "NO"
        print(f"| {q} | {cells[0]} | {cells[1]} | {same} |")
    same_error = "yes" if errors.get(names[0]) == errors.get(names[1]) else f"NO: {errors}"
    print(f"| bad query (typed error) | {errors.get(names[0], ('none',))[0]} | {errors.get(names[1], ('none',))[0]} "
          f"| {same_error} |")


if __name__ == "__main__":
    main()
