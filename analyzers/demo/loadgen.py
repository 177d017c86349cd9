"""Load generator and benchmark for the receiver: signed events per second and latency.

::

    python -m analyzers.demo.loadgen --workers 2 --seconds 10 [--connections 16]
    python -m analyzers.demo.loadgen --backend postgresql --workers 2   # throwaway server, fsync on
    python -m analyzers.demo.loadgen --store postgresql://user@host:5432/db --workers 2

It starts ``python -m analyzers.server.receiver --workers N`` on a temp store (or the given one),
drives it over loopback with keep-alive connections (plain asyncio, so the client costs
little CPU), and prints one JSON line: accepted events/s, p50/p99/max latency in ms,
status counts, and beside them the raw store rates measured in the same run:
``raw_insert_per_s`` (one plain INSERT per committed transaction, same durability settings)
and ``record_event_per_s`` (the store's full idempotent merge, no HTTP).

Every event is unique (``event_id``), so each accepted one is a durable commit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from analyzers.demo import loaddiag
from analyzers.events.send import encode_event, signed_headers

SECRET = "whsec_" + "bG9hZGdlbi1zZWNyZXQtbG9hZGdlbi1zZWNyZXQ="  # base64 of a fixed 30-byte key


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _request(host: str, port: int, i: int, run: str) -> bytes:
    """One signed POST /webhooks/deploys, as raw HTTP/1.1 bytes (unique event_id per ``i``)."""
    event = {"event_id": f"{run}-{i}", "service": f"svc-{i % 20}", "environment": "production",
             "version": f"v{i}", "started_at": 1795773600 + i, "status": "succeeded"}
    body = encode_event(event)
    headers = signed_headers(body, SECRET)
    lines = ["POST /webhooks/deploys HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class _Requests:
    """Pre-signed requests handed out in order; signing happens before the timed phase.

    Signatures carry the build time, inside the receiver's 5-minute tolerance: after
    :attr:`MAX_AGE_S`, or when the pool runs out, requests are signed on the fly (counted in
    ``signed_late``, so a run whose client did more work than planned is visible).
    """

    #: Pre-signed requests older than this are signed afresh (the receiver allows 300 s).
    MAX_AGE_S = 240.0
    #: At most this many are pre-signed (memory: about 0.5 KB each).
    MAX_POOL = 100_000

    def __init__(self, host: str, port: int, run: str, size: int) -> None:
        self.host, self.port, self.run = host, port, run
        self.signed_at = time.monotonic()
        self.pool = [_request(host, port, i, run) for i in range(min(size, self.MAX_POOL))]
        self.next = 0
        self.signed_late = 0

    def take(self) -> bytes:
        i = self.next
        self.next += 1
        if not i & 1023 and time.monotonic() - self.signed_at > self.MAX_AGE_S:  # checked every 1,024
            self.pool = []
        if i < len(self.pool):
            req = self.pool[i]
            self.pool[i] = b""  # each request once: free it
            return req
        self.signed_late += 1
        return _request(self.host, self.port, i, self.run)


class _Conn(asyncio.Protocol):
    """One keep-alive connection sending one request at a time, callback-driven (no per-request task)."""

    def __init__(self, run: _Run) -> None:
        self.r = run
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.t0 = 0.0
        self.busy = False
        self.next_at = 0.0  # open loop (``rate``): when this connection's next request is due

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.r.interval:
            self.next_at = time.perf_counter() + self.r.stagger()
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        now = time.perf_counter()
        if now >= self.r.deadline:
            self.busy = False
            self.transport.close()
            return
        if self.r.interval:
            if now < self.next_at:
                self.busy = True  # waiting for its slot counts as in flight (the run is not over)
                asyncio.get_running_loop().call_later(self.next_at - now, self._write)
                return
        self._write()

    def _write(self) -> None:
        assert self.transport is not None
        if self.transport.is_closing():
            return
        req = self.r.requests.take()
        self.busy = True
        if self.r.interval:
            # latency counts from when the request was due, not when it left: a server that
            # falls behind is charged for the wait (no coordinated omission)
            self.t0 = self.next_at
            self.next_at += self.r.interval
        else:
            self.t0 = time.perf_counter()
        self.transport.write(req)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buf[:end]).lower() + b"\r\n"
        at = head.find(b"\r\ncontent-length:")
        length = int(head[at + 17:head.index(b"\r\n", at + 2)]) if at >= 0 else 0
        if len(self.buf) < end + 4 + length:
            return
        del self.buf[:end + 4 + length]
        self.r.latencies.append(time.perf_counter() - self.t0)
        self.r.sent.append(self.t0)
        self.r.statuses[int(head[9:12])] += 1
        self.busy = False
        if b"\r\nconnection: close" in head:
            assert self.transport is not None
            self.transport.close()
            self.r.reconnect()
            return
        self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.busy:  # the server closed while we waited: count it, keep the load going
            self.r.statuses[0] += 1
            self.busy = False
            self.r.reconnect()
        self.r.closed()


class _Run:
    def __init__(self, host: str, port: int, deadline: float, requests: _Requests, interval: float | None = None,
                 connections: int = 1) -> None:
        self.host, self.port, self.deadline, self.requests = host, port, deadline, requests
        self.interval = interval  # seconds between one connection's requests (open loop), None: closed loop
        self._staggered = 0
        self.connections = connections
        self.latencies: list[float] = []
        self.sent: list[float] = []  # when each answered request was due (open loop) or sent
        self.statuses: Counter[int] = Counter()
        self.open = 0
        self.pending: set[asyncio.Future[None]] = set()
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def stagger(self) -> float:
        """Offsets spread the connections' first requests evenly over one interval."""
        self._staggered += 1
        return (self._staggered % self.connections) * (self.interval or 0.0) / self.connections

    def reconnect(self) -> None:
        if time.perf_counter() < self.deadline:
            self.open += 1  # before the old connection's closed(): the run is not over
            self.pending.add(asyncio.ensure_future(self.connect(counted=True)))

    async def connect(self, counted: bool = False) -> None:
        if not counted:
            self.open += 1
        try:
            await asyncio.get_running_loop().create_connection(lambda: _Conn(self), self.host, self.port)
        except OSError:
            self.open -= 1
            self.statuses[0] += 1
            if not self.open and not self.done.done():
                self.done.set_result(None)

    def closed(self) -> None:
        self.open -= 1
        if self.open <= 0 and not self.done.done():
            self.done.set_result(None)


async def _drive(host: str, port: int, seconds: float, connections: int, requests: _Requests | None = None,
                 rate: float | None = None, sent: list[float] | None = None) -> tuple[list[float], Counter[int], float]:
    """Keep ``connections`` requests in flight for ``seconds``: (latencies s, status counts, elapsed s).

    With ``rate`` (events/s over all connections) the load is open-loop: each connection sends
    on a fixed schedule, and a request's latency runs from when it was due. Status 0 counts
    connections lost or refused (never a success). ``sent`` receives when each answered request
    was due or sent (perf_counter), in the order of the latencies.
    """
    if requests is None:
        requests = _Requests(host, port, uuid.uuid4().hex[:8], 0)
    start = time.perf_counter()
    run = _Run(host, port, start + seconds, requests, connections / rate if rate else None, connections)
    await asyncio.gather(*(run.connect() for _ in range(connections)))
    await run.done
    if sent is not None:
        sent.extend(run.sent)
    return run.latencies, run.statuses, time.perf_counter() - start


def _run_loop(coro: Any) -> Any:
    """asyncio.run on uvloop when installed (the client then costs less of the CPU it shares)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def raw_rates(store_url: str, n: int = 500) -> dict[str, float]:
    """Raw single-row INSERT commits/s and the store's record_event/s, on ``store_url``."""
    from analyzers.events.store import open_store
    from analyzers.model import Deploy

    store = open_store(store_url)
    run = uuid.uuid4().hex[:8]
    t0 = time.perf_counter()
    for i in range(n):
        now = datetime.now(UTC)
        d = Deploy(deploy_id=f"raw-{run}-{i}", service="raw", environment="bench", version=str(i),
                   started_at=now, received_at=now, updated_at=now)
        store.record_event("bench", f"{run}-{i}", {}, d)
    record_rate = n / (time.perf_counter() - t0)
    store.close()
    if store_url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(store_url[len("sqlite:///"):], isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE IF NOT EXISTS bench_raw (k TEXT PRIMARY KEY, v TEXT)")
        t0 = time.perf_counter()
        for i in range(n):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO bench_raw VALUES (?, ?)", (f"{run}-{i}", "x" * 300))
            conn.execute("COMMIT")
        raw = n / (time.perf_counter() - t0)
        conn.execute("DROP TABLE bench_raw")
        conn.close()
    else:
        import psycopg

        with psycopg.connect(store_url, autocommit=True) as pg:
            pg.execute("CREATE TABLE IF NOT EXISTS bench_raw (k TEXT PRIMARY KEY, v TEXT)")
            t0 = time.perf_counter()
            for i in range(n):
                pg.execute("INSERT INTO bench_raw VALUES (%s, %s)", (f"{run}-{i}", "x" * 300))
            raw = n / (time.perf_counter() - t0)
            pg.execute("DROP TABLE bench_raw")
    return {"raw_insert_per_s": round(raw, 1), "record_event_per_s": round(record_rate, 1)}


#: Clock ticks per second of /proc/PID/stat's times.
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def tree_cpu_seconds(pid: int) -> float | None:
    """CPU seconds that process ``pid`` and all its descendants have spent so far, from /proc.

    The one process-tree CPU meter of the benchmarks (the receiver's workers, the dashboard's
    Streamlit server and Chromium). For ``pid`` and every live descendant (children,
    grandchildren, ..., found through each process's parent id) it adds the fields of
    ``/proc/PID/stat`` that count CPU:

    - ``utime`` + ``stime`` (fields 14-15): user and system time of the process itself, all
      its threads included (the receiver's writer threads);
    - ``cutime`` + ``cstime`` (fields 16-17): the user and system time of its children that
      have exited and been reaped. They are included so that a child that exits between two
      readings (a Chromium renderer, a restarted worker) does not take its time out of the
      total: its time moves from its own line to its parent's, and a difference of two
      readings stays the CPU spent in between. A child not reaped yet is still a live
      descendant; none is counted twice.

    None when /proc cannot be read (not Linux); a process that exits while being read is
    skipped.
    """
    parent: dict[int, int] = {}
    ticks: dict[int, int] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
        except (OSError, IndexError):
            continue
        parent[int(entry)] = int(fields[1])  # ppid (field 4)
        ticks[int(entry)] = int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return sum(ticks.get(p, 0) for p in loaddiag.process_tree(parent, pid)) / CLK_TCK


def stop_process(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM, then SIGKILL if ``proc`` has not exited within ``timeout`` seconds."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()


@contextlib.contextmanager
def receiver(store_url: str, *, workers: int = 2, code_root: str | None = None,
             env_extra: dict[str, str] | None = None) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """A receiver (``python -m analyzers.server.receiver``) on a free loopback port, answering
    ``/healthz``: yields ``(process, port)``; stopped with SIGTERM on exit.

    ``code_root``: run it from this checkout instead of this one (a before/after comparison
    with the same client, e.g. ``benchmarks.bench_ingest --before REV``).
    """
    port = _free_port()
    env = {**os.environ, "DEPLOY_WEBHOOK_SECRET": SECRET, **(env_extra or {})}
    root = code_root or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen([sys.executable, "-m", "analyzers.server.receiver", "--host", "127.0.0.1", "--port", str(port),
                             "--store", store_url, "--workers", str(workers), "--log-level", "warning"],
                            env=env, cwd=root)
    try:
        import requests

        deadline = time.monotonic() + 120  # a loaded 2-core machine takes tens of seconds to import it all
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("receiver did not start")
            time.sleep(0.1)
        yield proc, port
    finally:
        stop_process(proc, 15)


def run_benchmark(store_url: str, *, workers: int = 2, seconds: float = 10.0, connections: int = 16,
                  warmup_s: float = 2.0, raw_n: int = 500, max_rate: float = 4000.0,
                  rate: float | None = None, code_root: str | None = None,
                  probe_dir: str | None = None) -> dict[str, Any]:
    """Start a receiver on ``store_url``, load it, stop it; return the figures.

    ``code_root``: run the receiver from that checkout (see :func:`receiver`).
    ``probe_dir``: also find where the tail came from (:mod:`analyzers.demo.loaddiag`): an fsync
    probe in that folder (the store's) beside the run, the receiver's commit log, and the
    share of the slowest 1% of events that were in flight during a long commit or fsync
    (``diagnosis``); the machine's CPU use and the PostgreSQL server's CPU per event are
    always given.

    Requests are signed before the timed phase (``max_rate`` x ``seconds`` of them), so the
    client's CPU during the run is little more than socket writes and reads;
    ``client_cpu_us_per_req`` and ``receiver_cpu_us_per_req`` say what each side spent.
    """
    from analyzers.server.settings import ENV_COMMIT_LOG

    logdir = tempfile.mkdtemp(prefix="loadgen-commits-") if probe_dir else None
    prefix = os.path.join(logdir, "commits") if logdir else None
    pg = loaddiag.postgres_pid(store_url) if store_url.startswith("postgres") else None
    sent: list[float] = []
    try:
        with receiver(store_url, workers=workers, code_root=code_root,
                      env_extra={ENV_COMMIT_LOG: prefix} if prefix else None) as (proc, port):
            run = uuid.uuid4().hex[:8]
            warm = _Requests("127.0.0.1", port, run + "w", int(max_rate * warmup_s))
            _run_loop(_drive("127.0.0.1", port, warmup_s, connections, warm))
            pool = _Requests("127.0.0.1", port, run, int(max_rate * seconds))
            gc.collect()
            gc.freeze()  # the client's collector never walks the pool mid-run (its pauses would count as latency)
            probe = loaddiag.FsyncProbe(probe_dir) if probe_dir else contextlib.nullcontext()
            with probe:
                t_start = time.perf_counter()
                ours = [*loaddiag.descendants(proc.pid), os.getpid(), *(loaddiag.descendants(pg) if pg else [])]
                rx0, cpu0, pg0, m0 = (tree_cpu_seconds(proc.pid), time.process_time(),
                                      tree_cpu_seconds(pg) if pg else None, loaddiag.machine_cpu())
                rq0 = loaddiag.runqueue_seconds(ours)
                latencies, statuses, elapsed = _run_loop(_drive("127.0.0.1", port, seconds, connections, pool, rate, sent))
                rx1, cpu1, pg1, m1 = (tree_cpu_seconds(proc.pid), time.process_time(),
                                      tree_cpu_seconds(pg) if pg else None, loaddiag.machine_cpu())
                rq1 = loaddiag.runqueue_seconds(ours)
            gc.unfreeze()
        ok = statuses.get(201, 0) + statuses.get(200, 0)
        n = max(1, sum(statuses.values()))
        result: dict[str, Any] = {
            "backend": store_url.split(":", 1)[0], "workers": workers, "connections": connections,
            "offered_per_s": rate,
            "seconds": round(elapsed, 2), "accepted_per_s": round(ok / elapsed, 1),
            "p50_ms": round(loaddiag.pct(latencies, 0.50) * 1000, 2), "p99_ms": round(loaddiag.pct(latencies, 0.99) * 1000, 2),
            "max_ms": round(max(latencies, default=float("nan")) * 1000, 2),
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "client_cpu_us_per_req": round((cpu1 - cpu0) / n * 1e6, 1),
            "receiver_cpu_us_per_req": (round((rx1 - rx0) / n * 1e6, 1) if rx0 is not None and rx1 is not None else None),
            "signed_during_run": pool.signed_late,
            "postgres_cpu_us_per_req": round((pg1 - pg0) / n * 1e6, 1) if pg0 is not None and pg1 is not None else None,
            # ms per second that the benchmark's processes (client, receiver, PostgreSQL) were runnable
            # but waited for a CPU: the share of the tail that other work on the machine caused
            "runqueue_ms_per_s": round((rq1 - rq0) / elapsed * 1e3, 1),
            "machine_cpu_pct": (round(100 * (m1[0] - m0[0]) / max(1, m1[1] - m0[1]), 1) if m0 and m1 else None),
            "load_avg_1m": round(os.getloadavg()[0], 2),
        }
        if prefix and logdir:  # the receiver has exited: its commit logs are complete
            commits, checkpoints = loaddiag.read_commit_logs(prefix)
            fsyncs = probe.samples if isinstance(probe, loaddiag.FsyncProbe) else []
            result["diagnosis"] = loaddiag.tail_report(sent, latencies, [c for c in commits if c[1] >= t_start], fsyncs,
                                                       [c for c in checkpoints if c[0] >= t_start])  # not the warm-up's
        result.update(raw_rates(store_url, raw_n))
        return result
    finally:  # also when the run fails: no commit logs left behind
        if logdir:
            shutil.rmtree(logdir, ignore_errors=True)


def _cli(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m analyzers.demo.loadgen", description=__doc__.split("\n\n")[0])
    p.add_argument("--store", default=None, help="store URL (default: a temp SQLite file, or with --backend "
                                                     "postgresql a throwaway local server)")
    p.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite",
                   help="without --store: postgresql starts a temporary PostgreSQL (fsync on, as in production) "
                        "with the test suite's helper (needs the repository checkout and PostgreSQL installed)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--rate", type=float, default=None,
                   help="open loop: offer this many events/s in total (latency counted from when each was due); "
                        "default: closed loop, as fast as the receiver answers")
    args = p.parse_args(argv)
    with contextlib.ExitStack() as stack:
        if args.store:
            url = args.store
        elif args.backend == "postgresql":
            from tests.fixtures.postgres import new_database, run_postgres

            url = new_database(stack.enter_context(run_postgres(fsync=True)))
        else:
            url = f"sqlite:///{stack.enter_context(tempfile.TemporaryDirectory())}/bench.db"
        print(json.dumps(run_benchmark(url, workers=args.workers, seconds=args.seconds,
                                       connections=args.connections, rate=args.rate)))


if __name__ == "__main__":
    _cli()
