"""Where a load run's latency tail comes from: the disk, the receiver's commits, or the CPU.

Used by :func:`analyzers.demo.loadgen.run_benchmark` (``diagnose=True``) and
``benchmarks.bench_ingest``; every clock here is ``time.perf_counter`` (CLOCK_MONOTONIC on
Linux, one clock for every process of the machine), so the client's, the receiver's and the
probe's timestamps can be compared.

- :class:`FsyncProbe`: a separate process that writes 8 KiB to a file in the store's folder
  and fsyncs it every 15 ms, recording when each fsync started and how long it took. It shows
  what the disk did during the run, beside the receiver: a disk whose fsyncs stall stalls
  every group commit too.
- The receiver's commit log: with ``$ANALYZERS_COMMIT_LOG`` set to a path prefix, every
  group commit of every receiver process is written to ``PREFIX.PID`` as one line
  ``submitted started ended answered events joined`` (:class:`analyzers.server.commit.GroupCommitter`;
  ``joined``: events that joined the batch while it waited for SQLite's write lock; receivers
  before it wrote five fields, read as none joined).
- :func:`tail_report`: for the slowest 1% of events, the longest commit and the longest probe
  fsync that ran while each was in flight (from when it was due to its answer), beside the same
  figures for all events; and how their time splits between waiting for their own group
  commit to start, that commit, and the answer's way back (:func:`_split`).
- :func:`machine_cpu` and :func:`postgres_pid`: the machine's CPU use over the run, and the
  PostgreSQL server's process (its CPU per event is shown beside the receiver's).
"""

from __future__ import annotations

import bisect
import contextlib
import glob
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

#: A commit or an fsync at least this long counts as a stall in :func:`tail_report`.
STALL_MS = 10.0


def _probe_main(folder: str, out: str, interval_s: float, size: int) -> None:
    """The probe process: write + fsync ``size`` bytes every ``interval_s`` until SIGTERM, then
    write ``start duration`` lines (seconds, perf_counter) to ``out``."""
    stop = False

    def on_term(*_: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    path = os.path.join(folder, f"fsync-probe-{os.getpid()}.bin")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    block = os.urandom(size)
    samples: list[tuple[float, float]] = []
    offset = 0
    try:
        next_at = time.perf_counter()
        while not stop:
            t0 = time.perf_counter()
            os.pwrite(fd, block, offset)
            os.fsync(fd)
            samples.append((t0, time.perf_counter() - t0))
            offset = (offset + size) % (256 * size)  # a 2 MiB file, rewritten in turn
            next_at += interval_s
            time.sleep(max(0.0, next_at - time.perf_counter()))
    finally:
        os.close(fd)
        os.unlink(path)
        with open(out, "w") as f:
            f.writelines(f"{t:.6f} {d:.6f}\n" for t, d in samples)


class FsyncProbe:
    """Run the probe process in ``folder`` while the ``with`` block runs; :attr:`samples` after it."""

    def __init__(self, folder: str, interval_s: float = 0.015, size: int = 8192) -> None:
        self.folder, self.interval_s, self.size = folder, interval_s, size
        self.samples: list[tuple[float, float]] = []

    def __enter__(self) -> FsyncProbe:
        self.out = os.path.join(self.folder, f"fsync-probe-{os.getpid()}-{id(self)}.txt")
        self.proc = subprocess.Popen([sys.executable, "-m", "analyzers.demo.loaddiag", self.folder, self.out,
                                      str(self.interval_s), str(self.size)])
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        with contextlib.suppress(OSError):
            with open(self.out) as f:
                self.samples = [(float(a), float(b)) for a, b in (line.split() for line in f)]
            os.unlink(self.out)


#: One group commit of the commit log: submitted, started, ended, answered, events, joined.
CommitRow = tuple[float, float, float, float, int, int]


def read_commit_logs(prefix: str) -> tuple[list[CommitRow], list[tuple[float, float]]]:
    """Every receiver process's commit log under ``prefix`` (then removed): its group commits
    sorted by start, and its SQLite WAL checkpoints as (start, duration) sorted by start."""
    rows: list[CommitRow] = []
    checkpoints: list[tuple[float, float]] = []
    for path in glob.glob(glob.escape(prefix) + ".*"):
        with open(path) as f:
            for line in f:
                if line.startswith("C "):
                    _, a, b = line.split()
                    checkpoints.append((float(a), float(b) - float(a)))
                    continue
                a, b, c, d, n, *joined = line.split()
                rows.append((float(a), float(b), float(c), float(d), int(n), int(joined[0]) if joined else 0))
        os.unlink(path)
    return sorted(rows, key=lambda r: r[1]), sorted(checkpoints)


def machine_cpu() -> tuple[int, int] | None:
    """(busy, total) clock ticks of all CPUs so far, from /proc/stat; None when not on Linux."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


def runqueue_seconds(pids: Sequence[int]) -> float:
    """Seconds that every thread of these processes has spent runnable but waiting for a CPU
    (``/proc/PID/task/TID/schedstat``, second field): how much the machine's other work held
    them up. Processes or threads that are gone are skipped."""
    total = 0
    for pid in pids:
        for stat in glob.glob(f"/proc/{pid}/task/*/schedstat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                with open(stat) as f:
                    total += int(f.read().split()[1])
    return total / 1e9


def descendants(pid: int) -> list[int]:
    """``pid`` and every live process below it."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                with open(f"/proc/{entry}/stat") as f:
                    parent[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
    return process_tree(parent, pid)


def process_tree(parent: Mapping[int, int], pid: int) -> list[int]:
    """``pid`` first, then every process below it, from ``parent`` (PID -> parent PID, as
    ``/proc/PID/stat`` gives it); each once, even if a reused PID made the table loop."""
    children: dict[int, list[int]] = {}
    for child, p in parent.items():
        children.setdefault(p, []).append(child)
    tree, seen, todo = [], set(), [pid]
    while todo:
        p = todo.pop()
        if p not in seen:
            seen.add(p)
            tree.append(p)
            todo += children.get(p, [])
    return tree


def postgres_pid(url: str) -> int | None:
    """The PID of the PostgreSQL server behind ``url`` when it runs on this machine (its postmaster:
    :func:`analyzers.demo.loadgen.tree_cpu_seconds` of it counts every backend), or None.

    Read from the first line of ``postmaster.pid`` in the server's data folder (``SHOW
    data_directory``; the benchmark's throwaway server lets its owner read it), as ``pg_ctl``
    finds it; None when the folder cannot be read here or the process is gone.
    """
    try:
        import psycopg
    except ImportError:
        return None
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            row = conn.execute("SHOW data_directory").fetchone()
        with open(os.path.join(str(row[0]), "postmaster.pid")) as f:  # type: ignore[index]
            pid = int(f.readline())
    except (OSError, ValueError, TypeError, psycopg.Error):
        return None
    return pid if os.path.exists(f"/proc/{pid}") else None


def pct(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (nearest rank, no interpolation); NaN when empty."""
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def _longest_overlap(starts: Sequence[float], spans: Sequence[tuple[float, float]], max_len: float,
                     lo: float, hi: float) -> float:
    """The longest of ``spans`` (start, duration; sorted by start) that overlaps [lo, hi]."""
    best = 0.0
    i = bisect.bisect_left(starts, lo - max_len)
    while i < len(starts) and starts[i] <= hi:
        s, d = spans[i]
        if s + d >= lo:
            best = max(best, d)
        i += 1
    return best


def _split(dues: Sequence[float], latencies: Sequence[float], cut: float,
           commits: Sequence[Sequence[float]]) -> dict[str, float]:
    """Where the slowest events' time went, as medians over those of ``latencies >= cut``: from
    due to the hand-over of its own group commit (waiting behind the commit in flight), that
    commit (hand-over, writer thread, back to the loop), and from then to the client's answer.

    The receiver does not log which commit held which event: an event's own commit is taken to
    be the last one (of any receiver process) handed over after the event was due and answered
    before the client got its answer. Events with no such commit are counted in ``unmatched``.
    """
    by_answer = sorted(commits, key=lambda r: r[3])
    answered = [r[3] for r in by_answer]
    wait: list[float] = []
    own: list[float] = []
    after: list[float] = []
    unmatched = 0
    for due, lat in zip(dues, latencies, strict=True):
        if lat < cut:
            continue
        i = bisect.bisect_right(answered, due + lat) - 1
        while i >= 0 and by_answer[i][0] < due:
            i -= 1
        if i < 0:
            unmatched += 1
            continue
        r = by_answer[i]
        wait.append((r[0] - due) * 1e3)
        own.append((r[3] - r[0]) * 1e3)
        after.append((due + lat - r[3]) * 1e3)
    return {"queue_wait": pct(wait, 0.5), "own_commit": pct(own, 0.5), "after": pct(after, 0.5),
            "unmatched": unmatched}


def tail_report(dues: Sequence[float], latencies: Sequence[float],
                commits: Sequence[Sequence[float]],
                fsyncs: Sequence[tuple[float, float]],
                checkpoints: Sequence[tuple[float, float]] = ()) -> dict[str, Any]:
    """What the slowest 1% of events overlapped, beside all events (figures in ms and fractions).

    An event is in flight from when it was due (open loop) or sent (closed loop) until its
    answer. For each event: the longest group commit (writer thread start to end, any receiver
    process) and the longest probe fsync that overlapped that span. Reported for the slowest
    1% and for all events: the median of those longest durations, and the share of events that
    overlapped a stall (at least :data:`STALL_MS`). Also the commits' and fsyncs' p50/p99/max,
    and the hand-over waits around each commit (event loop to writer thread, and back); with
    ``checkpoints`` (SQLite's background WAL checkpoints), the same for them.
    """
    out: dict[str, Any] = {}
    if fsyncs:
        d = [x[1] * 1e3 for x in fsyncs]
        out["fsync_ms"] = {"n": len(d), "p50": pct(d, 0.5), "p99": pct(d, 0.99), "max": max(d)}
    if checkpoints:
        k = [x[1] * 1e3 for x in checkpoints]
        out["checkpoint_ms"] = {"n": len(k), "p50": pct(k, 0.5), "p99": pct(k, 0.99), "max": max(k)}
    if commits:
        c = [(r[2] - r[1]) * 1e3 for r in commits]
        out["commit_ms"] = {"n": len(c), "p50": pct(c, 0.5), "p99": pct(c, 0.99), "max": max(c),
                            "events_per_commit": sum(r[4] for r in commits) / len(commits),
                            "joined_share": sum(r[5] for r in commits if len(r) > 5) / max(1, sum(r[4] for r in commits))}
        to_thread = [(r[1] - r[0]) * 1e3 for r in commits]
        back = [(r[3] - r[2]) * 1e3 for r in commits]
        out["handover_ms"] = {"to_thread_p99": pct(to_thread, 0.99), "back_p99": pct(back, 0.99)}
    if not latencies or len(dues) != len(latencies):
        return out
    cut = pct(latencies, 0.99)
    if commits:
        out["slowest_split_ms"] = _split(dues, latencies, cut, commits)
    spans = {"commit": [(r[1], r[2] - r[1]) for r in commits], "fsync": list(fsyncs),
             "checkpoint": list(checkpoints)}
    for name, sp in spans.items():
        if not sp:
            continue
        starts = [s for s, _ in sp]
        longest = max(d for _, d in sp)
        every = [_longest_overlap(starts, sp, longest, t, t + lat) * 1e3 for t, lat in zip(dues, latencies, strict=True)]
        slow = [x for x, lat in zip(every, latencies, strict=True) if lat >= cut]
        out[f"{name}_overlap"] = {
            "slowest_1pct_median_ms": pct(slow, 0.5),
            "slowest_1pct_stalled": sum(x >= STALL_MS for x in slow) / len(slow),
            "all_median_ms": pct(every, 0.5),
            "all_stalled": sum(x >= STALL_MS for x in every) / len(every),
        }
    return out


def summary_line(rep: dict[str, Any]) -> str:
    """One line of :func:`tail_report`'s figures for a benchmark's output."""
    parts = []
    if "fsync_ms" in rep:
        f = rep["fsync_ms"]
        parts.append(f"probe fsync p50/p99/max {f['p50']:.1f}/{f['p99']:.1f}/{f['max']:.1f} ms")
    if "commit_ms" in rep:
        c = rep["commit_ms"]
        parts.append(f"commit p50/p99/max {c['p50']:.1f}/{c['p99']:.1f}/{c['max']:.1f} ms "
                     f"({c['events_per_commit']:.1f} events each, {c['joined_share']:.0%} of them joined "
                     "while it waited for the write lock)")
        h = rep["handover_ms"]
        parts.append(f"hand-over p99 to thread {h['to_thread_p99']:.1f} ms, back {h['back_p99']:.1f} ms")
    if "checkpoint_ms" in rep:
        k = rep["checkpoint_ms"]
        parts.append(f"{k['n']} checkpoints p50/max {k['p50']:.1f}/{k['max']:.1f} ms")
    if "slowest_split_ms" in rep:
        w = rep["slowest_split_ms"]
        parts.append(f"slowest 1% (median): {w['queue_wait']:.1f} ms before its commit, {w['own_commit']:.1f} ms "
                     f"its commit, {w['after']:.1f} ms after")
    for name in ("commit", "fsync", "checkpoint"):
        o = rep.get(f"{name}_overlap")
        if o:
            parts.append(f"slowest 1% in flight during a {name} >= {STALL_MS:g} ms: {o['slowest_1pct_stalled']:.0%} "
                         f"(all events {o['all_stalled']:.0%})")
    return "; ".join(parts)


if __name__ == "__main__":
    _probe_main(sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]))
