"""The load generator's pre-signed request pool: every request unique, none sent stale."""

from __future__ import annotations

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
