"""Load generator and benchmark for the receiver: signed events per second and latency.

::

    python -m analyzers.events.loadgen --backend sqlite --workers 2 --seconds 10
    python -m analyzers.events.loadgen --backend postgresql --store postgresql://... --workers 2

It starts ``python -m analyzers.receiver --workers N`` on a temp store (or the given one),
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
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from .send import encode_event, signed_headers

SECRET = "whsec_" + "bG9hZGdlbi1zZWNyZXQtbG9hZGdlbi1zZWNyZXQ="  # base64 of a fixed 30-byte key


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _request(host: str, port: int, i: int, run: str) -> bytes:
    event = {"event_id": f"{run}-{i}", "service": f"svc-{i % 20}", "environment": "production",
             "version": f"v{i}", "started_at": 1795773600 + i, "status": "succeeded"}
    body = encode_event(event)
    headers = signed_headers(body, SECRET)
    lines = ["POST /webhooks/deploys HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _connection(host: str, port: int, deadline: float, counter: list[int], run: str,
                      latencies: list[float], statuses: Counter[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < deadline:
            counter[0] += 1
            req = _request(host, port, counter[0], run)
            t0 = time.perf_counter()
            writer.write(req)
            await writer.drain()
            status_line = await reader.readline()
            length = 0
            close = False
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                if name.lower() == "content-length":
                    length = int(value.strip())
                elif name.lower() == "connection" and value.strip().lower() == "close":
                    close = True
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - t0)
            statuses[int(status_line.split()[1])] += 1
            if close:
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
    finally:
        writer.close()


async def _drive(host: str, port: int, seconds: float, connections: int) -> tuple[list[float], Counter[int], float]:
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    run = uuid.uuid4().hex[:8]
    start = time.perf_counter()
    deadline = start + seconds
    counter = [0]
    await asyncio.gather(*(_connection(host, port, deadline, counter, run, latencies, statuses)
                           for _ in range(connections)))
    return latencies, statuses, time.perf_counter() - start


def _pct(values: Sequence[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def raw_rates(store_url: str, n: int = 500) -> dict[str, float]:
    """Raw single-row INSERT commits/s and the store's record_event/s, on ``store_url``."""
    from ..model import Deploy
    from .store import open_store

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


def run_benchmark(store_url: str, *, workers: int = 2, seconds: float = 10.0, connections: int = 16,
                  warmup_s: float = 2.0, raw_n: int = 500) -> dict[str, Any]:
    """Start a receiver on ``store_url``, load it, stop it; return the figures."""
    port = _free_port()
    env = {**os.environ, "DEPLOY_WEBHOOK_SECRET": SECRET}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen([sys.executable, "-m", "analyzers.receiver", "--host", "127.0.0.1", "--port", str(port),
                             "--store", store_url, "--workers", str(workers), "--log-level", "warning"],
                            env=env, cwd=root)
    try:
        import requests

        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("receiver did not start")
            time.sleep(0.1)
        asyncio.run(_drive("127.0.0.1", port, warmup_s, connections))
        latencies, statuses, elapsed = asyncio.run(_drive("127.0.0.1", port, seconds, connections))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
    ok = statuses.get(201, 0) + statuses.get(200, 0)
    result: dict[str, Any] = {
        "backend": store_url.split(":", 1)[0], "workers": workers, "connections": connections,
        "seconds": round(elapsed, 2), "accepted_per_s": round(ok / elapsed, 1),
        "p50_ms": round(_pct(latencies, 0.50) * 1000, 2), "p99_ms": round(_pct(latencies, 0.99) * 1000, 2),
        "max_ms": round(max(latencies, default=float("nan")) * 1000, 2),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
    }
    result.update(raw_rates(store_url, raw_n))
    return result


def _cli(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m analyzers.events.loadgen", description=__doc__.split("\n\n")[0])
    p.add_argument("--store", default=None, help="store URL (default: a temp SQLite file)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--connections", type=int, default=16)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        url = args.store or f"sqlite:///{d}/bench.db"
        print(json.dumps(run_benchmark(url, workers=args.workers, seconds=args.seconds,
                                       connections=args.connections)))


if __name__ == "__main__":
    _cli()
