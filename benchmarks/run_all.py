"""Run every benchmark, one after the other (`make bench`). Each also runs alone:

    .venv/bin/python -m benchmarks.bench_scenarios     # verdict accuracy vs naive tests
    .venv/bin/python -m benchmarks.bench_changepoints  # speed vs ruptures
    .venv/bin/python -m benchmarks.bench_tcpd --synthetic   # TCPD F1 / cover + seeded check
    .venv/bin/python -m benchmarks.bench_fleet         # fleet scale: batched vs naive
    .venv/bin/python -m benchmarks.bench_canary        # canary vs baseline, side by side with Kayenta
    .venv/bin/python -m benchmarks.bench_dashboard_speed    # latency page in headless Chromium
    .venv/bin/python -m benchmarks.bench_ingest        # receiver load target, SQLite and PostgreSQL

Figures and the commands that made them: benchmarks/README_stats.md, docs/scaling.md,
docs/benchmarks.md, docs/progressive-delivery.md.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = [
    [sys.executable, "-m", "benchmarks.bench_scenarios"],
    [sys.executable, "-m", "benchmarks.bench_changepoints"],
    [sys.executable, "-m", "benchmarks.bench_tcpd", "--synthetic"],
    [sys.executable, "-m", "benchmarks.bench_fleet"],
    [sys.executable, "-m", "benchmarks.bench_canary"],
    [sys.executable, "-m", "benchmarks.bench_dashboard_speed"],
    [sys.executable, "-m", "benchmarks.bench_ingest"],
]


def main() -> int:
    failed = []
    for cmd in COMMANDS:
        print(f"\n=== {' '.join(cmd[1:])} ===", flush=True)
        t0 = time.monotonic()
        rc = subprocess.call(cmd, cwd=ROOT)
        print(f"=== exit {rc} after {time.monotonic() - t0:.0f} s ===", flush=True)
        if rc != 0:
            failed.append(" ".join(cmd[1:]))
    if failed:
        print("failed: " + "; ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
