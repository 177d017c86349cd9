"""The receiver's direct path (analyzers.server.protocol) answers exactly as the ASGI path does.

Two receivers on their own SQLite stores, both with ``ReceiverProtocol`` as ``serve`` runs it,
get the same requests: one each request in one piece (its body arrives with its headers: the
direct path), the other with the body sent 50 ms after the headers (the ASGI path, with its
body deadline). Status, headers (but the date), body and the receiver's counters must match.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from analyzers.events.send import signed_headers
from analyzers.events.store import open_store
from analyzers.server.app import create_app
from analyzers.server.protocol import ReceiverProtocol
from tests.fixtures.receiver import SECRET, serve_app

MAX_BODY = 2048


def _event(i: str, **extra: Any) -> bytes:
    return json.dumps({"event_id": f"direct-{i}", "service": "direct-svc", "environment": "production",
                       "version": f"v{i}", "started_at": 1795773600, "status": "succeeded", **extra}).encode()


def _signed(body: bytes) -> dict[str, str]:
    return signed_headers(body, SECRET, msg_id="msg_" + hashlib.sha256(body).hexdigest()[:24])  # same id both sides


def _post(body: bytes, headers: dict[str, str] | None = None, *, sign: bool = True, length: int | None = None) -> bytes:
    head = {"Host": "x", "Content-Type": "application/json", "Content-Length": str(len(body) if length is None else length)}
    if sign:
        head.update(_signed(body))
    head.update(headers or {})
    return ("POST /webhooks/deploys HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head.items()) + "\r\n").encode() + body


def _bad_signature(body: bytes) -> bytes:
    headers = _signed(body)
    headers["webhook-signature"] = "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
    return _post(body, headers, sign=False)


def _gzip_post(body: bytes) -> bytes:
    packed = gzip.compress(body)
    return _post(packed, {**_signed(packed), "Content-Encoding": "gzip"}, sign=False)


#: name -> request bytes (built when sent: signatures carry the time).
CASES: dict[str, Callable[[], bytes]] = {
    "new event": lambda: _post(_event("1")),
    "the same event again (duplicate)": lambda: _post(_event("1")),
    "an event with labels and a message id from the header": lambda: _post(
        json.dumps({"service": "direct-svc", "environment": "staging", "version": "v2", "started_at": 1795773600,
                    "labels": {"team": "a"}}).encode()),
    "gzip body": lambda: _gzip_post(_event("3")),
    "corrupt gzip": lambda: _post(b"\x1f\x8b not gzip", {"Content-Encoding": "gzip"}),
    "unsupported encoding": lambda: _post(_event("4"), {"Content-Encoding": "br"}),
    "wrong signature": lambda: _bad_signature(_event("5")),
    "no signature": lambda: _post(_event("6"), sign=False),
    "stale timestamp": lambda: _post(_event("7"), {"webhook-timestamp": str(int(time.time()) - 3600)}),
    "body over the limit": lambda: _post(_event("8", description="x" * MAX_BODY)),
    "gzip bomb": lambda: _gzip_post(_event("9", description="y" * 50_000)),
    "not JSON": lambda: _post(b"{not json"),
    "duplicate key": lambda: _post(b'{"service": "a", "service": "b"}'),
    "invalid event (no service)": lambda: _post(json.dumps({"environment": "production", "version": "v1"}).encode()),
    "unknown field": lambda: _post(_event("10", colour="red")),
    "control character in a field": lambda: _post(_event("11", version="v\u0001")),
    "wrong type": lambda: _post(_event("12", started_at=[1])),
}


def _exchange(port: int, request: bytes, *, split: bool) -> tuple[int, dict[str, str], bytes]:
    """One request on a new connection: whole, or its body 50 ms after its headers."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        head, _, body = request.partition(b"\r\n\r\n")
        if split and body:
            sock.sendall(head + b"\r\n\r\n")
            time.sleep(0.05)
            try:
                sock.sendall(body)
            except OSError:  # answered (and closed) before its body: as the whole request would be
                pass
        else:
            sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        raw_head, _, rest = data.partition(b"\r\n\r\n")
        lines = raw_head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        while len(rest) < int(headers.get("content-length", 0)):
            rest += sock.recv(65536)
        headers.pop("date", None)
        return int(lines[0].split()[1]), headers, rest


def _same_but_times(answer: tuple[int, dict[str, str], bytes]) -> tuple[int, dict[str, str], Any]:
    """An answer with the store's clock readings (``received_at``, ``updated_at``) taken out."""
    status, headers, body = answer
    doc = json.loads(body)
    for key in ("received_at", "updated_at"):
        doc.get("deploy", {}).pop(key, None)
    return status, headers, doc


@pytest.fixture(scope="module")
def receivers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[tuple[int, Any, list[int]]]]:
    """Two receivers as ``serve`` runs them: (port, app, count of direct-path calls), one store each."""
    out = []
    with contextlib.ExitStack() as stack:
        for name in ("whole", "split"):
            store = open_store(f"sqlite:///{tmp_path_factory.mktemp(name)}/d.db")
            stack.callback(store.close)
            app = create_app(store, secrets=SECRET, max_body=MAX_BODY)
            calls = [0]

            def counted(scope: Any, body: bytes, reply: Any, inner: Any = app.direct_post, calls: list[int] = calls) -> None:
                calls[0] += 1
                inner(scope, body, reply)

            app.direct_post = counted
            base = stack.enter_context(serve_app(app, http=ReceiverProtocol))
            out.append((int(base.rsplit(":", 1)[1]), app, calls))
        yield out


def _counters(port: int) -> list[str]:
    status, _, body = _exchange(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", split=False)
    assert status == 200
    return sorted(line for line in body.decode().splitlines()
                  if line.startswith(("receiver_http_requests_total", "receiver_events_total"))
                  and "/metrics" not in line)


def test_direct_path_answers_every_case_as_the_asgi_path(receivers: list[tuple[int, Any, list[int]]]) -> None:
    (whole_port, _, whole_calls), (split_port, _, split_calls) = receivers
    statuses = {}
    for name, build in CASES.items():
        direct = _exchange(whole_port, build(), split=False)
        asgi = _exchange(split_port, build(), split=True)
        assert direct[2].count(b"_at") == asgi[2].count(b"_at"), name
        assert _same_but_times(direct) == _same_but_times(asgi), name
        statuses[name] = direct[0]
    assert whole_calls[0] == len(CASES)  # every whole request took the direct path ...
    assert split_calls[0] == 0  # ... and none whose body came later
    assert statuses["new event"] == 201 and statuses["the same event again (duplicate)"] == 200
    assert statuses["wrong signature"] == 401 and statuses["body over the limit"] == 413
    assert statuses["unknown field"] == 422 and statuses["not JSON"] == 400
    assert _counters(whole_port) == _counters(split_port)


def test_pipelined_posts_are_answered_in_order(receivers: list[tuple[int, Any, list[int]]]) -> None:
    """Two posts in one segment: the first cannot take the direct path (a request waits behind
    it); both are answered, in order, on the kept-alive connection."""
    port = receivers[0][0]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(_post(_event("p1")) + _post(_event("p2")))
        data = b""
        deadline = time.monotonic() + 10
        while data.count(b'"status":"created"') < 2 and time.monotonic() < deadline:
            data += sock.recv(65536)
    assert data.startswith(b"HTTP/1.1 201")
    assert data.index(b'"direct-p1"') < data.index(b'"direct-p2"')


def test_an_event_whose_sender_hangs_up_is_still_stored(receivers: list[tuple[int, Any, list[int]]]) -> None:
    """Nothing acknowledged is lost, and nothing accepted is dropped: the sender closes right
    after its post; the event commits all the same."""
    port, app, _ = receivers[0]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(_post(_event("gone")))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if any(d.version == "vgone" for d in app.state.store.list_deploys(service="direct-svc", limit=100)):
            break
        time.sleep(0.05)
    else:
        pytest.fail("the event of a sender that hung up was not stored")
    assert app.state.ingestor.inflight == 0


def test_keep_alive_closes_an_idle_connection_and_each_request_moves_it(tmp_path) -> None:
    """uvicorn's keep-alive timeout, kept in the connection's one timer (no timer per request):
    requests 0.6 s apart on a 1 s keep-alive all get answers on one connection; once idle, the
    connection closes about 1 s after its last answer (not at the 10 s header deadline)."""
    store = open_store(f"sqlite:///{tmp_path}/k.db")
    try:
        app = create_app(store, secrets=SECRET)
        with serve_app(app, http=ReceiverProtocol, timeout_keep_alive=1) as base:
            port = int(base.rsplit(":", 1)[1])
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                for i in range(3):
                    sock.sendall(_post(_event(f"k{i}")))
                    data = b""
                    while b'"status":"created"' not in data:
                        chunk = sock.recv(65536)
                        assert chunk, f"closed before answering request {i}"
                        data += chunk
                    answered = time.monotonic()
                    time.sleep(0.6)
                assert sock.recv(65536) == b""  # closed by the server while idle
                closed_after = time.monotonic() - answered
        assert 0.9 <= closed_after <= 3.0
    finally:
        store.close()
