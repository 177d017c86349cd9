"""The load generator's pre-signed request pool: every request unique, none sent stale."""

from __future__ import annotations

import contextlib
import os
import signal
import time

from analyzers.demo import loadgen
from analyzers.events.signatures import parse_secrets, verify


def _headers_and_body(raw: bytes) -> tuple[dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")[1:]
    return {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}, body


def test_pool_hands_out_each_signed_request_once_then_signs_on_the_fly() -> None:
    pool = loadgen._Requests("127.0.0.1", 8000, "run1", 50)
    reqs = [pool.take() for _ in range(60)]
    assert len(set(reqs)) == 60 and pool.signed_late == 10
    headers, body = _headers_and_body(reqs[0])
    assert int(headers["content-length"]) == len(body)
    assert verify(parse_secrets(loadgen.SECRET), headers, body, now=time.time()) == headers["webhook-id"]


def test_requests_older_than_the_tolerance_allows_are_signed_afresh() -> None:
    pool = loadgen._Requests("127.0.0.1", 8000, "run2", 3000)
    pool.signed_at -= loadgen._Requests.MAX_AGE_S + 1  # as if the run had lasted four minutes
    reqs = [pool.take() for _ in range(10)]
    assert pool.signed_late == 10  # none of the aged pool is sent
    headers, body = _headers_and_body(reqs[-1])
    assert verify(parse_secrets(loadgen.SECRET), headers, body, now=time.time()) == headers["webhook-id"]


def test_open_loop_rate_offers_the_rate_and_charges_a_slow_server_for_the_wait() -> None:
    """``rate``: requests leave on a fixed schedule whatever the server does; a server that
    answers late is charged from when each request was due (no coordinated omission)."""
    import asyncio

    from analyzers.demo.loadgen import _drive, _Requests, _run_loop

    async def scenario(delay_s: float) -> tuple[list[float], float]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                    await reader.readexactly(length)
                    await asyncio.sleep(delay_s)
                    writer.write(b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}")
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            latencies, statuses, elapsed = await _drive("127.0.0.1", port, 1.0, 4,
                                                        _Requests("127.0.0.1", port, "rate", 400), rate=200.0)
        assert set(statuses) == {201}
        return latencies, elapsed

    fast, elapsed = _run_loop(scenario(0.0))
    assert abs(len(fast) / elapsed - 200) < 30, (len(fast), elapsed)  # the offered rate, not as fast as possible
    slow, _ = _run_loop(scenario(0.05))  # 50 ms answers: one connection can do 20/s, 4 do 80/s < 200/s offered
    slow_sorted = sorted(slow)
    assert slow_sorted[len(slow) // 2] > 0.2  # the backlog shows in the latency, not only the 50 ms service time


def test_tree_cpu_counts_live_grandchildren_and_reaped_children_once() -> None:
    """The benchmarks' CPU meter (:func:`loadgen.tree_cpu_seconds`): a process's tree is its
    own time, every live descendant's (a grandchild too) and its reaped children's (their
    time moved to its cutime/cstime). Each child burns a fixed amount of CPU time (not wall
    time), so the figure does not depend on the machine's load."""
    import subprocess
    import sys

    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < {s}: pass\n"
    grandchild = burn.format(s=0.3) + "print('burnt', flush=True)\ntime.sleep(60)\n"
    child = ("import subprocess, sys\n"
             f"g = subprocess.Popen([sys.executable, '-c', {grandchild!r}], stdout=sys.stdout)\n"
             "g.wait()\n")
    parent = ("import subprocess, sys\n"
              f"subprocess.run([sys.executable, '-c', {burn.format(s=0.3)!r}], check=True)\n"  # reaped
              f"subprocess.Popen([sys.executable, '-c', {child!r}], stdout=sys.stdout)\n"
              "import time; time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "burnt"  # grandchild done burning
        total = loadgen.tree_cpu_seconds(proc.pid)
        assert total is not None
        # 0.3 s reaped child + 0.3 s live grandchild, plus four Python start-ups (a few tens of ms
        # each); the old walker (the process and its live children only) saw about 0.05 s.
        assert 0.55 <= total <= 0.6 + 4 * 0.25, total
        assert len(_descendants(proc.pid)) == 3  # the parent, the child and the grandchild are alive
    finally:
        for pid in _descendants(proc.pid)[::-1]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait(10)


def _descendants(pid: int) -> list[int]:
    """``pid`` and its live descendants, parents first (from /proc)."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    out, i = [pid], 0
    while i < len(out):
        out += [c for c, p in parent.items() if p == out[i]]
        i += 1
    return out
