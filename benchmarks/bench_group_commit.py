"""One PostgreSQL group commit, the two-round-trip path beside the six-round-trip one, in one process.

::

    PYTHONPATH=. .venv/bin/python -m benchmarks.bench_group_commit [--batches 200] [--size 8] [--busy 0.5]

Both paths run on the same throwaway PostgreSQL (fsync on, default settings), on two store
instances, alternating batch by batch so that the machine's load hits both alike:

- **2 round trips** (:meth:`analyzers.events.store.postgres.PostgresStore._record_batch`, what
  the receiver runs): ``BEGIN``, locks, events INSERT and deploys SELECT in one message, the
  deploys upsert and ``COMMIT`` in a second;
- **6 round trips** (:meth:`analyzers.events.store.base.SQLStore._record_batch`, the path
  every back end took before): ``BEGIN``, locks, INSERT, SELECT, upsert, ``COMMIT``, one each.

``--busy F`` runs a second Python thread that holds the GIL a fraction F of the time in bursts
of ``--burst-ms`` (default 5 ms), as the receiver's event loop does while the writer thread
commits: each round trip then also waits for the GIL back (up to the 5 ms switch interval).
Printed per path: the round trips of one batch (counted from libpq's protocol trace: a simple
Query, or a Sync closing extended-protocol statements, each followed by a wait), median and
p90 wall time per batch, and the committing thread's CPU time per batch (``time.thread_time``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from analyzers.events.store.base import SQLStore
from analyzers.events.store.postgres import PostgresStore
from analyzers.model import Deploy


class SixRoundTrips(PostgresStore):
    """The store with the generic batch path: one statement per round trip."""

    batch_from = 2
    _record_batch = SQLStore._record_batch  # type: ignore[assignment]


def round_trips(store: PostgresStore, items: list[Any]) -> int:
    """Messages that end in a wait for the server while ``store`` records ``items``."""
    from psycopg import pq

    store.ping()  # connected
    conn = store._conn
    with tempfile.TemporaryFile("w+") as f:
        conn.pgconn.trace(f.fileno())
        conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        try:
            store.record_events(items)
        finally:
            conn.pgconn.untrace()
        f.seek(0)
        sent = [line.split("\t") for line in f.read().splitlines() if line.startswith("F\t")]
    return sum(1 for m in sent if m[2] in ("Query", "Sync"))


def _busy(stop: threading.Event, share: float, burst_s: float) -> None:
    x = 0
    while not stop.is_set():
        t = time.perf_counter()
        while time.perf_counter() - t < burst_s:
            for i in range(100):
                x += i
        time.sleep(burst_s * (1 - share) / share)


def _item(run: str, k: int) -> tuple[str, str, dict[str, Any], Deploy]:
    now = datetime.now(UTC)
    d = Deploy(deploy_id=f"d{k}", service=f"svc-{k % 20}", environment="production", version=f"v{k}",
               started_at=now, received_at=now, updated_at=now)
    return ("ci", f"{run}-{k}", {"n": k, "pad": "x" * 200}, d)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_group_commit", description=__doc__.split("\n\n")[0])
    p.add_argument("--batches", type=int, default=200, help="batches per path")
    p.add_argument("--size", type=int, default=8, help="events per batch")
    p.add_argument("--busy", type=float, default=0.0, help="share of time a second thread holds the GIL (0-0.95)")
    p.add_argument("--burst-ms", type=float, default=5.0)
    p.add_argument("--store", help="a PostgreSQL URL to use instead of a throwaway server (a new table set is needed: "
                                   "give an empty database)")
    args = p.parse_args(argv)
    if not 0 <= args.busy <= 0.95:
        p.error("--busy must be between 0 and 0.95")
    import contextlib

    with contextlib.ExitStack() as stack:
        if args.store:
            url = args.store
        else:
            from tests.fixtures.postgres import new_database, run_postgres

            url = new_database(stack.enter_context(run_postgres(fsync=True)))
        paths = {"2 round trips": PostgresStore(url), "6 round trips": SixRoundTrips(url)}
        run, k = uuid.uuid4().hex[:6], 0
        trips: dict[str, int] = {}
        for name, store in paths.items():
            trips[name] = round_trips(store, [_item(run, k + i) for i in range(1, args.size + 1)])
            k += args.size
        stop = threading.Event()
        if args.busy:
            threading.Thread(target=_busy, args=(stop, args.busy, args.burst_ms / 1000), daemon=True).start()
        wall: dict[str, list[float]] = {name: [] for name in paths}
        cpu: dict[str, list[float]] = {name: [] for name in paths}
        try:
            for r in range(args.batches):
                for name, store in (list(paths.items()) if r % 2 == 0 else list(paths.items())[::-1]):
                    items = []
                    for _ in range(args.size):
                        k += 1
                        items.append(_item(run, k))
                    t0, c0 = time.perf_counter(), time.thread_time()
                    results = store.record_events(items)
                    wall[name].append(time.perf_counter() - t0)
                    cpu[name].append(time.thread_time() - c0)
                    if not all(isinstance(x, tuple) and x[1] for x in results):
                        print(f"{name}: a batch was not stored: {results}", file=sys.stderr)
                        return 1
        finally:
            stop.set()
            for store in paths.values():
                store.close()
    print(f"{args.batches} batches of {args.size} events per path, GIL busy {args.busy:.0%} "
          f"(bursts of {args.burst_ms:g} ms)")
    for name in paths:
        w = sorted(wall[name])
        print(f"  {name} ({trips[name]} counted): median {statistics.median(w) * 1e3:6.2f} ms  p90 {w[int(0.9 * len(w))] * 1e3:6.2f} ms  "
              f"thread CPU {statistics.median(cpu[name]) * 1e6:5.0f} us per batch")
    return 0


if __name__ == "__main__":
    sys.exit(main())
