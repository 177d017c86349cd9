"""Slow and idle clients against the real receiver process over HTTP.

Before the fix, 64 held-open bodies took every in-flight slot: each signed event then got
``503 Retry-After: 1`` for as long as the sockets stayed open, through ``/webhooks/github``
too with no GitHub secret configured, and half-sent requests were never timed out.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from analyzers.events.send import send_event
from tests.fixtures.receiver import ReceiverInfo, start_receiver


def _event(i: int) -> dict[str, object]:
    return {"service": "attack-target", "environment": "production", "version": f"v{i}",
            "started_at": "2026-11-27T10:00:00Z", "event_id": f"attack-{i}-{time.monotonic_ns()}"}


def _port(info: ReceiverInfo) -> int:
    return int(info.base_url.rsplit(":", 1)[1])


@contextmanager
def _held(port: int, n: int, head: bytes) -> Iterator[list[socket.socket]]:
    """``n`` connections that each sent ``head`` and then nothing more."""
    with ExitStack() as stack:
        socks = []
        for _ in range(n):
            s = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=10))
            if head:
                s.sendall(head)
            socks.append(s)
        yield socks


def _slow_post(path: str, length: int = 200_000) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n\r\n{{").encode()


def _closed_within(s: socket.socket, seconds: float) -> bytes | None:
    """What the server sent before closing ``s`` within ``seconds``; None if it stayed open."""
    s.settimeout(0.2)
    got = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            chunk = s.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            return got
        if not chunk:
            return got
        got += chunk
    return None


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReceiverInfo]:
    path = tmp_path_factory.mktemp("attack") / "deploys.db"
    with start_receiver(f"sqlite:///{path}", log_path=str(path) + ".log") as info:
        yield info


def test_held_open_bodies_do_not_lock_out_signed_senders(target: ReceiverInfo) -> None:
    """300 slow bodies on /webhooks/deploys (more than the 256 pre-auth budget) and 64 on
    /webhooks/github: every signed event sent meanwhile is stored (201), none gets 503."""
    port = _port(target)
    with _held(port, 300, _slow_post("/webhooks/deploys")), _held(port, 64, _slow_post("/webhooks/github")):
        time.sleep(0.3)  # every slow request is now inside the app, waiting for its body
        codes = []
        for i in range(30):
            codes.append(send_event(target.webhook_url, _event(i), target.secret, timeout=10).status_code)
        assert codes == [201] * 30, codes


def test_github_without_a_secret_is_refused_before_its_body(target: ReceiverInfo) -> None:
    with socket.create_connection(("127.0.0.1", _port(target)), timeout=5) as s:
        s.sendall(_slow_post("/webhooks/github"))
        answer = _closed_within(s, 2.0)
    assert answer is not None and answer.startswith(b"HTTP/1.1 401"), answer


def test_unsigned_generic_post_is_refused_before_its_body(target: ReceiverInfo) -> None:
    with socket.create_connection(("127.0.0.1", _port(target)), timeout=5) as s:
        s.sendall(_slow_post("/webhooks/deploys"))
        # the whole answer, however many segments it comes in (headers and body may be sent apart)
        answer = _closed_within(s, 2.0)
    assert answer is not None and answer.startswith(b"HTTP/1.1 401") and b"missing webhook-id header" in answer, answer


def test_slow_body_and_slow_headers_are_cut_off(tmp_path: Path) -> None:
    """A body that has not arrived within --body-timeout gets 408 and the connection closes;
    headers not complete within --header-timeout: the connection is closed."""
    from analyzers.events.send import encode_event, signed_headers

    with start_receiver(f"sqlite:///{tmp_path / 't.db'}",
                        extra_args=["--body-timeout", "1", "--header-timeout", "1"]) as rx:
        port = _port(rx)
        body = encode_event(_event(0))
        head = "".join(f"{k}: {v}\r\n" for k, v in signed_headers(body, rx.secret).items())
        with socket.create_connection(("127.0.0.1", port), timeout=5) as slow_body, \
                socket.create_connection(("127.0.0.1", port), timeout=5) as slow_head, \
                socket.create_connection(("127.0.0.1", port), timeout=5) as idle:
            slow_body.sendall(f"POST /webhooks/deploys HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{head}\r\n"
                              .encode() + body[:5])
            slow_head.sendall(b"POST /webhooks/deploys HTTP/1.1\r\nHost: x\r\n")
            t0 = time.monotonic()
            got = _closed_within(slow_body, 5.0)
            assert got is not None and got.startswith(b"HTTP/1.1 408"), got
            assert b"within 1 s" in got
            assert _closed_within(slow_head, 5.0) is not None
            assert _closed_within(idle, 5.0) is not None  # never sent a byte: closed too
            assert time.monotonic() - t0 < 4.0
        assert send_event(rx.webhook_url, _event(1), rx.secret).status_code == 201
        # Each answer restarts the header deadline: a keep-alive connection answered 0.7 s after
        # it opened, then sending half a request's headers, closes about 1 s after the answer
        # (not when the deadline set at its opening passes, 0.3 s after the answer).
        body = encode_event(_event(2))
        head = "".join(f"{k}: {v}\r\n" for k, v in signed_headers(body, rx.secret).items())
        with socket.create_connection(("127.0.0.1", port), timeout=5) as kept:
            time.sleep(0.7)
            kept.sendall(f"POST /webhooks/deploys HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{head}\r\n"
                         .encode() + body)
            kept.settimeout(5)
            answer = kept.recv(65536)
            answered = time.monotonic()
            assert answer.startswith(b"HTTP/1.1 201"), answer
            kept.sendall(b"POST /webhooks/deploys HTTP/1.1\r\nHost: x\r\n")
            assert _closed_within(kept, 5.0) == b""
            assert 0.6 < time.monotonic() - answered < 4.0


def test_a_thousand_concurrent_connections(target: ReceiverInfo) -> None:
    """1,000 connections open at once (idle, half-sent headers and slow bodies): the receiver
    keeps answering health checks and signed events, and nothing acknowledged is lost."""
    import requests

    port = _port(target)
    before = requests.get(target.base_url + "/metrics", timeout=10).text.count("\n")
    head_only = b"POST /webhooks/deploys HTTP/1.1\r\nHost: x\r\n"
    with _held(port, 400, b""), _held(port, 300, head_only), _held(port, 300, _slow_post("/webhooks/deploys")):
        time.sleep(0.3)
        assert requests.get(target.base_url + "/healthz", timeout=10).status_code == 200
        ids = []
        for i in range(20):
            r = send_event(target.webhook_url, _event(1000 + i), target.secret, timeout=10)
            assert r.status_code == 201, r.text
            ids.append(r.json()["deploy_id"])
    for deploy_id in ids:
        assert requests.get(f"{target.base_url}/v1/deploys/{deploy_id}", timeout=10).status_code == 200
    assert before > 0
