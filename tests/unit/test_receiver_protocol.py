"""What the receiver relies on from uvicorn's internals, and the body budget's order of checks."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
import uvicorn
from uvicorn.protocols.http import httptools_impl
from uvicorn.protocols.http.flow_control import FlowControl

from analyzers.server.ingest import BodyReads, HTTPProblem, _Read
from analyzers.server.protocol import UVICORN_RANGE, UvicornMismatch, check_uvicorn


def test_the_installed_uvicorn_is_one_the_receiver_was_written_against() -> None:
    check_uvicorn(uvicorn.__version__)  # raises otherwise
    assert UVICORN_RANGE == ((0, 54), (0, 55))  # widen only after reading the new uvicorn's httptools_impl


@pytest.mark.parametrize("version", ["0.53.9", "0.55.0", "1.0.0", "dev"])
def test_another_uvicorn_fails_at_import_with_what_to_install(version: str) -> None:
    with pytest.raises(UvicornMismatch, match=r"uvicorn>=0\.54,<0\.55.*pip install -r requirements\.txt"):
        check_uvicorn(version)


def test_a_uvicorn_without_a_method_the_receiver_overrides_is_refused() -> None:
    stripped = type("HttpToolsProtocol", (), {"data_received": None})
    with pytest.raises(UvicornMismatch, match="HttpToolsProtocol._start_asgi_task"):
        check_uvicorn(uvicorn.__version__, protocol=stripped)


class _Transport(asyncio.Transport):
    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


class _WholeBodyRequest:
    """A request whose body sits whole in a real uvicorn request cycle (as the receiver sees it)."""

    def __init__(self, body: bytes) -> None:
        transport = _Transport()
        cycle = httptools_impl.RequestResponseCycle(
            scope={"type": "http", "method": "POST", "path": "/webhooks/deploys", "headers": []},  # type: ignore[typeddict-item]
            transport=transport, flow=FlowControl(transport), logger=logging.getLogger("t"),
            access_logger=logging.getLogger("t"), access_log=False, default_headers=[],
            message_event=asyncio.Event(), expect_100_continue=False, keep_alive=True, on_response=lambda: None)
        cycle.body = bytearray(body)
        cycle.more_body = False
        cycle.message_event.set()
        self.receive = cycle.receive
        self.headers = {"content-length": str(len(body))}


def test_a_whole_body_is_read_when_every_slot_holds_a_young_slow_reader() -> None:
    """Reading a body already in the buffer takes no slot, so it needs no room: with the budget
    full of readers too young to cut off, it is read (before: 503 "receiver busy")."""

    async def run() -> tuple[bytes, str]:
        reads = BodyReads(limit=2, timeout_s=10)
        now = asyncio.get_running_loop().time()
        for i in range(2):
            reads.active[i] = _Read(now, asyncio.timeout(10))
        body = await reads.read(_WholeBodyRequest(b'{"x": 1}'), 1024)  # type: ignore[arg-type]
        # a body still on its way does need a slot: with none free and none old enough, 503
        pending = _WholeBodyRequest(b"")
        pending.receive.__self__.more_body = True  # type: ignore[attr-defined]
        try:
            await reads.read(pending, 1024)  # type: ignore[arg-type]
        except HTTPProblem as problem:
            return body, f"{problem.status} {problem.message}"
        return body, "read"

    body, second = asyncio.run(run())
    assert body == b'{"x": 1}'
    assert second.startswith("503 receiver busy")  # the readers are younger than MIN_AGE_TO_EVICT_S
