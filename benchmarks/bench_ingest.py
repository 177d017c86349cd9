"""The receiver's load target, checked in one command: SQLite and PostgreSQL, closed and open loop.

::

    .venv/bin/python -m benchmarks.bench_ingest                      # 3 repeats, 10 s each
    .venv/bin/python -m benchmarks.bench_ingest --before 4a0b74f    # that commit's receiver beside this one
    .venv/bin/python -m benchmarks.bench_ingest --backends sqlite --repeats 1 --seconds 5

Each run is :func:`analyzers.demo.loadgen.run_benchmark`: a fresh store (a temp SQLite file, or a
new database on one throwaway PostgreSQL with fsync on and default settings, its WAL in a running
server's steady state: see :func:`steady_wal`; ``--fresh-wal`` for a just-initialised one),
``--workers`` receiver processes,
keep-alive connections of pre-signed events, and the store's raw single-row
INSERT rate measured right after, in the same run. Two load shapes per backend:

- **closed loop** over ``--connections`` (16): every connection sends its next event as soon
  as the previous one is answered (what the receiver can take);
- **open loop** at ``--rate`` events/s over each of ``--open-connections`` (64, then 16):
  events leave on a fixed schedule whatever the receiver does, one in flight per connection,
  and each latency counts from when the event was due (a receiver that falls behind is
  charged for the backlog). The first count is judged: 64 connections stand for a fleet of
  independent senders; over 16, each connection owes an event every 10.7 ms at 1,500/s, so a
  stall of the server queues every later event of that connection behind the one in flight
  (the client's own head-of-line wait, charged to the receiver). Both are shown side by side
  (docs/benchmarks.md, "Ingest: two round trips per group commit").

Two CPU comparisons come first when asked, since wall-clock figures swing with the machine's load:

- ``--before REV``: receiver CPU per request (user + system from ``/proc``) of REV's receiver
  and this checkout's, one process each running side by side, in alternating 2 s bursts
  (``--cpu-rounds``, default 10); the median of each and their ratio.
- ``--instructions N``: machine instructions per event counted by valgrind (callgrind) over
  exactly N events, at 1 connection (one commit per event) and at 16 (group commits). The
  count does not move with the load; system calls and kernel work are not in it.

With ``--diagnose``, under each run a diagnosis line (:mod:`analyzers.demo.loaddiag`; off by default,
since its probe shares the disk with the store):
an fsync probe in the store's folder beside the run (p50/p99/max), every group commit timed in
the receiver (``$ANALYZERS_COMMIT_LOG``) and SQLite's checkpoints, and the share of the slowest
1% of events that were in flight during a commit, fsync or checkpoint of at least 10 ms. The
columns add the client's and PostgreSQL's CPU per event, the machine's CPU use, and the run-queue
wait of the benchmark's processes (ms per s that they were runnable without a CPU). Variants run
side by side: ``--workers 2,1``, ``--store-dir ,/dev/shm`` (a tmpfs: without the disk, a
diagnostic); ``--autogroup-nice -10`` runs everything in a session of its own at that priority
(nice alone does not reach across sessions when the kernel's autogroups are on).

Runs are interleaved (repeat by repeat, and before/after within a repeat) so that load from
other processes hits every configuration alike. Printed per run and as the median over the
repeats: accepted events/s, p50/p99/max latency, receiver CPU per request (user + system, all
worker processes), raw INSERT/s and the 1-minute load average.

The target (issue 16): at least ``--target-rate`` (1,500) accepted events/s with p99 under
``--target-p99-ms`` (25 ms), on SQLite and on PostgreSQL. Closed loop passes when the median
accepted rate reaches it and the median p99 is under the bound; open loop (over the first
``--open-connections`` count) when the median p99 is under the bound and every offered event
was accepted (2xx). The exit status is 1 when a judged median of this checkout misses the
target (``--before`` figures and the other open-loop counts are shown, never judged).
``--loads open`` or ``--loads closed`` runs one shape only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from analyzers.demo.loaddiag import summary_line
from analyzers.demo.loadgen import (
    SECRET,
    _drive,
    _free_port,
    _request,
    _Requests,
    _run_loop,
    receiver,
    run_benchmark,
    stop_process,
    tree_cpu_seconds,
)

ROOT = Path(__file__).resolve().parents[1]

#: Figures shown per run and as medians: (key, column title, format).
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("accepted_per_s", "accepted/s", "{:,.0f}"),
    ("p50_ms", "p50 ms", "{:.1f}"),
    ("p99_ms", "p99 ms", "{:.1f}"),
    ("max_ms", "max ms", "{:.1f}"),
    ("receiver_cpu_us_per_req", "rx CPU us/req", "{:.0f}"),
    ("client_cpu_us_per_req", "client us/req", "{:.0f}"),
    ("postgres_cpu_us_per_req", "PG us/req", "{:.0f}"),
    ("machine_cpu_pct", "CPU %", "{:.0f}"),
    ("runqueue_ms_per_s", "runq ms/s", "{:.0f}"),
    ("raw_insert_per_s", "raw INSERT/s", "{:,.0f}"),
    ("load_avg_1m", "load", "{:.1f}"),
)


@contextlib.contextmanager
def checkout(rev: str) -> Iterator[str]:
    """The tree of ``rev`` extracted into a temporary folder (``git archive``), removed afterwards;
    ``rev`` may also be a folder holding a checkout, used as it is."""
    if os.path.isdir(os.path.join(rev, "analyzers")):
        yield os.path.abspath(rev)
        return
    with tempfile.TemporaryDirectory(prefix=f"bench-ingest-{rev[:12]}-") as tmp:
        archive = subprocess.run(["git", "archive", "--format=tar", rev], cwd=ROOT, check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        yield tmp


def steady_wal(server_url: str, segments: int = 7) -> None:
    """Give a freshly initialised PostgreSQL the WAL files a server that has been running has.

    A new cluster has one WAL segment: every 16 MB of WAL, the backend that crosses into the
    next segment creates it (16 MB of zeros written and fsynced) while holding the WAL write
    lock, so every commit of every connection waits for it (measured on this machine: 37-55 ms
    for that commit against 4-12 ms when the segment is recycled, at load 18; 40-220 ms for
    ``dd`` of 16 MB with fsync). A running server instead renames old segments at each
    checkpoint for reuse (``min_wal_size``, 80 MB by default). Here: ``segments`` switches
    (creating them once, before any timing), then a CHECKPOINT that recycles them; nothing
    in the server's configuration changes.
    """
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as conn:
        for _ in range(segments):
            conn.execute("SELECT txid_current()")  # a commit record: the segment is not empty
            conn.execute("SELECT pg_switch_wal()")
        conn.execute("SELECT txid_current()")
        conn.execute("CHECKPOINT")


@contextlib.contextmanager
def store_factory(backend: str, *, fresh_wal: bool = False, folder: str | None = None) -> Iterator[Any]:
    """A function giving a fresh, empty store URL for each run of ``backend``.

    PostgreSQL: one throwaway server (fsync on, default settings) for every run, a new
    database per run. Unless ``fresh_wal``, its WAL is brought to a running server's steady
    state (:func:`steady_wal`), and each run starts right after a CHECKPOINT, which recycles
    the segments of the runs before, as the server's own timed checkpoints (every 5 minutes)
    do, and which keeps a timed checkpoint out of the 10 s that are measured.

    ``folder``: where the SQLite files or PostgreSQL's data folder go (default: the temp folder;
    ``/dev/shm``, a tmpfs, takes the disk out of the run: a diagnostic, never the judged run).
    """
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="bench-ingest-", dir=folder) as tmp:
            n = iter(range(1 << 30))
            yield lambda: f"sqlite:///{tmp}/run{next(n)}.db"
    else:
        import psycopg

        from tests.fixtures.postgres import new_database, run_postgres

        with run_postgres(fsync=True, base_dir=folder) as server:
            if fresh_wal:
                yield lambda: new_database(server)
                return
            steady_wal(server)

            def fresh_database() -> str:
                url = new_database(server)
                with psycopg.connect(server, autocommit=True) as conn:
                    conn.execute("CHECKPOINT")
                return url

            yield fresh_database


def store_factory_sqlite(stack: contextlib.ExitStack) -> Any:
    return stack.enter_context(store_factory("sqlite"))


def own_session(nice: int) -> None:
    """Move this process into a new session (a new scheduler autogroup, inherited by everything it
    starts) at ``nice``; re-executes under ``setsid`` when this process leads its process group."""
    if os.getsid(0) != os.getpid():
        try:
            os.setsid()
        except PermissionError:  # a process group leader cannot: run again as a new session's leader
            os.execvp("setsid", ["setsid", "--wait", sys.executable, "-m", "benchmarks.bench_ingest", *sys.argv[1:]])
    try:
        with open("/proc/self/autogroup", "w") as f:
            f.write(str(nice))
        with open("/proc/self/autogroup") as f:
            print(f"scheduler: {f.read().strip()} (a session of its own)", flush=True)
    except OSError as exc:
        print(f"scheduler: could not set the autogroup's nice to {nice} ({exc}); running as is", flush=True)


def passes(row: dict[str, Any], target_rate: float, target_p99_ms: float) -> bool:
    """Whether one (median) row meets the target; see the module docstring."""
    if row["p99_ms"] >= target_p99_ms:
        return False
    if row["mode"] == "closed":
        return bool(row["accepted_per_s"] >= target_rate)
    return bool(row["refused"] == 0)


def median_row(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    out = {k: runs[0][k] for k in ("backend", "mode", "code")}
    for key, _, _ in COLUMNS:
        values = [r[key] for r in runs if r.get(key) is not None]
        out[key] = statistics.median(values) if values else None
    out["refused"] = statistics.median(r["refused"] for r in runs)
    return out


def fmt_row(row: dict[str, Any]) -> str:
    cells = [f"{row['backend']:<10}", f"{row['mode']:<12}", f"{row['code']:<10}"]
    for key, title, f in COLUMNS:
        v = row.get(key)
        cells.append(f"{(f.format(v) if v is not None else '-'):>{len(title)}}")
    cells.append(f"{row['refused']:>7,.0f}")
    return "  ".join(cells)


def header() -> str:
    titles = [f"{'store':<10}", f"{'load':<12}", f"{'code':<10}"] + [t for _, t, _ in COLUMNS] + ["non-2xx"]
    return "  ".join(titles)


def cpu_rounds(codes: Sequence[tuple[str, str | None]], url: Any, *, rounds: int, burst_s: float,
               connections: int) -> dict[str, list[float]]:
    """Receiver CPU per request of each code, in short alternating bursts against receivers running side by side.

    One receiver process per code (``--workers 1``, so the figure is one process's), each on
    its own fresh store; round after round each gets ``burst_s`` of closed-loop load, the
    order alternating. CPU is user + system time from ``/proc`` (all threads: the commit thread
    included), per answered request. Bursts this short, interleaved, see the same machine
    load, so the ratio is steadier than that of two long runs.
    """
    out: dict[str, list[float]] = {code: [] for code, _ in codes}
    with contextlib.ExitStack() as stack:
        procs = [(code, *stack.enter_context(receiver(url(), workers=1, code_root=root))) for code, root in codes]
        for _, _, port in procs:  # warm-up
            _run_loop(_drive("127.0.0.1", port, 1.0, connections, _Requests("127.0.0.1", port, f"w{port}", 3000)))
        for i in range(rounds):
            for code, proc, port in (procs if i % 2 == 0 else procs[::-1]):
                pool = _Requests("127.0.0.1", port, f"r{i}-{port}", int(4000 * burst_s))
                t0 = tree_cpu_seconds(proc.pid)
                _, statuses, _ = _run_loop(_drive("127.0.0.1", port, burst_s, connections, pool))
                t1 = tree_cpu_seconds(proc.pid)
                if t0 is not None and t1 is not None and sum(statuses.values()):
                    out[code].append((t1 - t0) / sum(statuses.values()) * 1e6)
    return out


async def _send_exactly(port: int, requests: Sequence[bytes], connections: int) -> list[int]:
    """Send exactly these requests over ``connections`` keep-alive connections, one at a time
    on each; the status of every answer."""
    pending = iter(requests)
    statuses: list[int] = []

    async def one_connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for req in pending:
            writer.write(req)
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"content-length: *(\d+)", head.lower())
            await reader.readexactly(int(length.group(1)) if length else 0)
            statuses.append(int(head[9:12]))
        writer.close()

    await asyncio.gather(*(one_connection() for _ in range(connections)))
    return statuses


def instructions_per_request(root: str | None, *, n: int, connections: int) -> float:
    """Machine instructions the receiver executes per accepted event, counted by valgrind (callgrind).

    A deterministic figure: the count does not depend on the machine's load (system calls and
    the kernel's work are not counted; the time waiting for fsync is not work). One receiver
    process (``--workers 1``) runs under callgrind with counting off; after 100 warm-up
    events counting is switched on for exactly ``n`` events over ``connections`` connections
    (``connections`` 1: one commit per event; 16: group commits as under load), then off.
    Needs the ``valgrind`` package (``callgrind_control``, ``callgrind_annotate``).
    """
    code_root = root or str(ROOT)
    with tempfile.TemporaryDirectory(prefix="bench-ingest-cg-") as tmp:
        port = _free_port()
        env = {**os.environ, "DEPLOY_WEBHOOK_SECRET": SECRET, "PYTHONPATH": code_root}
        out = f"{tmp}/callgrind.out"
        proc = subprocess.Popen(["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
                                 sys.executable, "-m", "analyzers.server.receiver", "--host", "127.0.0.1",
                                 "--port", str(port), "--store", f"sqlite:///{tmp}/cg.db", "--workers", "1",
                                 "--log-level", "warning"], env=env, cwd=code_root, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 600  # about 60 s to start under valgrind
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                        if conn.recv(12).endswith(b"200"):
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the receiver did not start under valgrind")
                time.sleep(0.5)
            asyncio.run(_send_exactly(port, [_request("127.0.0.1", port, i, "warm") for i in range(100)], connections))
            reqs = [_request("127.0.0.1", port, i, "run") for i in range(n)]
            subprocess.run(["callgrind_control", "-i", "on", str(proc.pid)], check=True, capture_output=True)
            statuses = asyncio.run(_send_exactly(port, reqs, connections))
            subprocess.run(["callgrind_control", "-i", "off", str(proc.pid)], check=True, capture_output=True)
            subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, capture_output=True)
        finally:
            stop_process(proc, 120)
        if statuses.count(201) != n:
            raise RuntimeError(f"expected {n} accepted events, got statuses {sorted(set(statuses))}")
        total = 0
        for name in os.listdir(tmp):
            if name.startswith("callgrind.out."):  # the dump taken while counting
                text = subprocess.run(["callgrind_annotate", os.path.join(tmp, name)], check=True,
                                      capture_output=True, text=True).stdout
                found = re.search(r"^([\d,]+) .*PROGRAM TOTALS", text, re.M)
                total += int(found.group(1).replace(",", "")) if found else 0
        return total / n


def _positive_ints(p: argparse.ArgumentParser, flag: str, text: str, example: str) -> list[int]:
    """A comma-separated list of positive integers from option ``flag``, or the parser's error naming it."""
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        p.error(f"{flag} {text!r}: give one or more positive numbers, e.g. {example}")
    return values


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_ingest", description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seconds", type=float, default=10.0, help="timed phase of each run (after a 2 s warm-up)")
    p.add_argument("--rate", type=float, default=1500.0, help="open-loop offered events/s (0: closed loop only)")
    p.add_argument("--workers", default="2", metavar="N[,N...]",
                   help="receiver processes (default 2); several counts run side by side, interleaved, each "
                        "labelled /wN, and the first is judged")
    p.add_argument("--connections", type=int, default=16, help="closed loop: keep-alive connections (default 16)")
    p.add_argument("--open-connections", default="64,16", metavar="N[,N...]",
                   help="open loop: run it over each of these numbers of keep-alive connections (one request in "
                        "flight on each); the first is judged against the target, the others are shown beside it "
                        "(default 64,16: 64 stands for a fleet of independent senders, 16 is the old client model)")
    p.add_argument("--backends", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql")
    p.add_argument("--loads", default="closed,open", help="comma-separated: closed, open (open needs --rate > 0)")
    p.add_argument("--before", metavar="REV", help="also run the receiver of this git revision (or of the checkout "
                                                   "in this folder), interleaved")
    p.add_argument("--target-rate", type=float, default=1500.0)
    p.add_argument("--target-p99-ms", type=float, default=25.0)
    p.add_argument("--cpu-rounds", type=int, default=10,
                   help="with --before: this many alternating bursts for the CPU-per-request comparison (0: none)")
    p.add_argument("--cpu-only", action="store_true",
                   help="only the CPU comparisons (--before bursts, --instructions), no load runs")
    p.add_argument("--instructions", type=int, default=0, metavar="N",
                   help="also count the receiver's machine instructions per event under valgrind, over N events "
                        "at 1 and at 16 connections (deterministic; a minute or two per count)")
    p.add_argument("--fresh-wal", action="store_true",
                   help="PostgreSQL as just initialised: no recycled WAL segments and no CHECKPOINT before each "
                        "run, so WAL segment creation (16 MB written and fsynced under the WAL lock) and timed "
                        "checkpoints fall inside the runs")
    p.add_argument("--store-dir", metavar="FOLDER[,FOLDER...]", default="",
                   help="put the stores here (default: the temp folder); several run side by side, each labelled "
                        "by its name, the first judged. '--store-dir ,/dev/shm' adds a store on a tmpfs beside the "
                        "judged one: the receiver's own share of the tail without the disk's fsyncs (a diagnostic)")
    p.add_argument("--diagnose", action="store_true",
                   help="a diagnosis per run: an fsync probe beside it and the receiver's commit log (both share the "
                        "disk and CPU with the run, so the judged run goes without them)")
    p.add_argument("--autogroup-nice", type=int, default=None, metavar="N",
                   help="run the benchmark (client, receivers, PostgreSQL) in a session of its own at this "
                        "scheduler priority (-20..19; below 0 needs root). With the kernel's autogroups on, nice "
                        "ranks processes only within a session, so other sessions' jobs share the CPUs equally "
                        "whatever their nice: -10 shows the receiver without them (a diagnostic, not the judged run)")
    p.add_argument("--json", metavar="PATH", help="write every run and the medians as JSON here")
    args = p.parse_args(argv)
    # SIGTERM ends the run like Ctrl-C: the receivers, PostgreSQL servers and temp stores are removed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.autogroup_nice is not None:
        own_session(args.autogroup_nice)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    for b in backends:
        if b not in ("sqlite", "postgresql"):
            p.error(f"unknown backend {b!r}: use sqlite and/or postgresql")
    worker_counts = _positive_ints(p, "--workers", args.workers, "2 or 1,2")
    loads = {x.strip() for x in args.loads.split(",") if x.strip()}
    if not loads or loads - {"closed", "open"}:
        p.error(f"--loads {args.loads!r}: use closed and/or open")
    open_conns = _positive_ints(p, "--open-connections", args.open_connections, "64,16")
    # (label, offered rate or None for closed loop, connections, judged against the target)
    modes: list[tuple[str, float | None, int, bool]] = (
        [("closed", None, args.connections, True)] if "closed" in loads else [])
    if args.rate > 0 and "open" in loads:
        modes += [(f"open@{args.rate:g}x{c}", args.rate, c, i == 0) for i, c in enumerate(open_conns)]
    if not modes:
        p.error("nothing to run: --loads open needs --rate > 0")

    runs: list[dict[str, Any]] = []
    failed = 0
    with contextlib.ExitStack() as stack:
        codes: list[tuple[str, str | None]] = [("current", None)]
        if args.before:
            codes.insert(0, (os.path.basename(args.before.rstrip("/"))[:10], stack.enter_context(checkout(args.before))))
        # (label, code root, receiver processes): every code with every worker count; the first
        # count of "current" is the judged configuration
        folders = [f.strip() or None for f in args.store_dir.split(",")]
        configs = [(code + ("" if len(worker_counts) == 1 else f"/w{w}")
                    + ("" if len(folders) == 1 else f"/{os.path.basename(str(f).rstrip('/')) if f else 'tmp'}"), root, w, f)
                   for code, root in codes for w in worker_counts for f in folders]
        judged_code = next(label for label, root, _, _ in configs if root is None)  # current code's first
        if args.instructions:
            print(f"receiver instructions per event (valgrind callgrind, {args.instructions} events, SQLite, 1 worker)",
                  flush=True)
            counts: dict[str, dict[int, float]] = {}
            for conns in (1, 16):
                for code, root in codes:
                    counts.setdefault(code, {})[conns] = instructions_per_request(root, n=args.instructions,
                                                                                  connections=conns)
                    print(f"  {code:<10} {conns:>2} connection(s): {counts[code][conns] / 1e6:.3f} M instructions/event",
                          flush=True)
            if len(codes) == 2:
                for conns in (1, 16):
                    a, b = (counts[code][conns] for code, _ in codes)
                    print(f"  current / before at {conns:>2} connection(s): {b / a:.3f}")
            print(flush=True)
        if args.before and args.cpu_rounds:
            print(f"receiver CPU per request, {args.cpu_rounds} alternating 2 s bursts, 1 worker each, SQLite "
                  f"(user + system, load {os.getloadavg()[0]:.1f} at start)", flush=True)
            cpu = cpu_rounds(codes, store_factory_sqlite(stack), rounds=args.cpu_rounds, burst_s=2.0,
                             connections=args.connections)
            for code, values in cpu.items():
                print(f"  {code:<10} median {statistics.median(values):6.0f} us/req   rounds: "
                      + " ".join(f"{v:.0f}" for v in values))
            meds = [statistics.median(v) for v in cpu.values()]
            print(f"  current / before: {meds[1] / meds[0]:.3f}   (load {os.getloadavg()[0]:.1f} at end)\n", flush=True)
        if args.cpu_only:
            return 0
        urls = {(b, f): stack.enter_context(store_factory(b, fresh_wal=args.fresh_wal, folder=f))
                for b in backends for f in folders}
        print(f"bench_ingest: {args.repeats} repeats x {len(backends)} stores x {len(modes)} loads x "
              f"{len(configs)} code x workers; {args.seconds:g} s each, load@RATExCONNECTIONS, "
              f"{os.cpu_count()} CPUs", flush=True)
        print(header(), flush=True)
        for repeat in range(args.repeats):
            for backend in backends:
                for mode, rate, conns, _ in modes:
                    order = configs if repeat % 2 == 0 else configs[::-1]  # alternate who goes first
                    for code, root, workers, folder in order:
                        probe_dir = None if not args.diagnose else (folder or tempfile.gettempdir())
                        try:
                            r = run_benchmark(urls[backend, folder](), workers=workers, seconds=args.seconds,
                                              connections=conns, rate=rate, code_root=root, probe_dir=probe_dir)
                        except RuntimeError as exc:  # the receiver did not start: shown, and counted as a miss
                            print(f"{backend:<10}  {mode:<12}  {code:<10}  run failed: {exc}", flush=True)
                            failed += 1
                            continue
                        ok = r["statuses"].get("200", 0) + r["statuses"].get("201", 0)
                        row = {**r, "backend": backend, "mode": mode, "code": code, "repeat": repeat,
                               "refused": sum(r["statuses"].values()) - ok}
                        runs.append(row)
                        print(fmt_row(row), flush=True)
                        if r.get("diagnosis"):
                            print("    " + summary_line(r["diagnosis"]), flush=True)

    print("\nmedian over repeats")
    print(header() + "  target")
    medians: list[dict[str, Any]] = []
    missed = False
    for backend in backends:
        for mode, _, _, judge in modes:
            for code, _, _, _ in configs:
                group = [r for r in runs if (r["backend"], r["mode"], r["code"]) == (backend, mode, code)]
                if not group:
                    missed |= code == judged_code
                    continue
                row = median_row(group)
                judged = code == judged_code and judge
                met = passes(row, args.target_rate, args.target_p99_ms)
                row["meets_target"] = met if judged else None
                missed |= judged and not met
                medians.append(row)
                verdict = ("" if not code.startswith("current") else ("met" if met else "MISSED") if judged
                           else f"({'met' if met else 'missed'}: shown, not judged)")
                print(fmt_row(row) + f"  {verdict}")
    judged_open = next((m for m, rate, _, judge in modes if rate and judge), None)
    print(f"\ntarget: >= {args.target_rate:,.0f} events/s (closed loop) with p99 < {args.target_p99_ms:g} ms; "
          f"open loop ({judged_open or 'not run'}): every event accepted with p99 < {args.target_p99_ms:g} ms -> "
          + ("MISSED" if missed else "met"))
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": runs, "medians": medians}, indent=1))
    return 1 if missed or failed else 0


if __name__ == "__main__":
    sys.exit(main())
