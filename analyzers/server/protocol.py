"""The receiver's HTTP protocol: uvicorn's httptools protocol with a header deadline, answers
written in one piece, and a direct path for the one route under load.

This is the only module that touches uvicorn's internals (``HttpToolsProtocol``,
``RequestResponseCycle``, ``STATUS_LINE``: not public API). They are checked at import: a
uvicorn outside :data:`UVICORN_RANGE`, or one whose classes lack what this module uses, fails
with :class:`UvicornMismatch` naming the version to install (``requirements.txt`` pins it).

The **direct path** (:meth:`ReceiverProtocol.data_received`): a ``POST /webhooks/deploys`` whose
whole body arrived with its headers (no ``Expect: 100-continue``, nothing pipelined behind it)
is handed to the app's ``direct_post`` (:func:`analyzers.server.app.create_app`) as bytes,
without an asyncio task, an ASGI cycle, Starlette request and response objects or two
``send`` messages; its answer is written in one ``write`` when its group commit ends. The
request is checked and stored by the same code, in the same order, with the same answers,
as through ASGI; a body still on its way (a slow or large sender) takes the ASGI path with its
deadline and eviction (:mod:`analyzers.server.ingest`).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from typing import Any

import uvicorn
from uvicorn.protocols.http import httptools_impl
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string

from analyzers.server.settings import ENV_SETTINGS, Settings

log = logging.getLogger("analyzers.server.receiver")

#: uvicorn versions whose private httptools protocol this module was written against: [low, high).
UVICORN_RANGE = ((0, 54), (0, 55))


class UvicornMismatch(RuntimeError):
    """The installed uvicorn's internals are not the ones this receiver extends."""


def check_uvicorn(version: str, protocol: type = httptools_impl.HttpToolsProtocol,
                  cycle: type = httptools_impl.RequestResponseCycle) -> None:
    """Raise :class:`UvicornMismatch` unless ``version`` is in :data:`UVICORN_RANGE` and the
    classes have the methods this module overrides or calls."""
    low, high = UVICORN_RANGE
    want = f"uvicorn>={low[0]}.{low[1]},<{high[0]}.{high[1]}"
    try:
        found = tuple(int(p) for p in version.split(".")[:2])
    except ValueError:
        found = ()
    if not low <= found < high:
        raise UvicornMismatch(f"the receiver extends uvicorn's private httptools protocol and needs {want}; "
                              f"found uvicorn {version}: install the pinned one (pip install -r requirements.txt)")
    missing = [f"{cls.__name__}.{name}" for cls, names in (
        (protocol, ("data_received", "on_headers_complete", "_start_asgi_task", "on_response_complete",
                    "connection_made", "connection_lost")),
        (cycle, ("run_asgi", "send", "receive"))) for name in names if not hasattr(cls, name)]
    if missing:
        raise UvicornMismatch(f"uvicorn {version} lacks {', '.join(missing)}, which the receiver uses; "
                              f"install {want} (pip install -r requirements.txt)")


check_uvicorn(uvicorn.__version__)
RequestResponseCycle = httptools_impl.RequestResponseCycle
STATUS_LINE: dict[int, bytes] = httptools_impl.STATUS_LINE


def buffered(receive: Any) -> bool:
    """Whether ``receive`` is a uvicorn httptools request cycle's and the whole body already sits
    in its buffer (``more_body`` False, message ready, no ``100 Continue`` pending), so one
    ``receive()`` returns it without waiting."""
    cycle = getattr(receive, "__self__", None)
    return (type(cycle) is RequestResponseCycle and cycle.more_body is False and cycle.message_event.is_set()
            and not cycle.waiting_for_100_continue)


class CoalescingTransport:
    """A transport that sends a response's header block together with its body: one write.

    uvicorn writes the status line and headers, then the body, as two ``transport.write``
    calls: two ``send`` system calls and two TCP segments per answer, and the sender wakes up
    twice. Here the header block is held until the body's write joins it (in the same turn of
    the event loop for every response this app sends); anything else that happens first, a
    close or the next loop turn, sends it as it is, so a streamed response never waits for its
    first chunk. ``100 Continue`` is never held. Everything else is the wrapped transport's.
    """

    __slots__ = ("_t", "_held", "_loop")

    def __init__(self, transport: Any, loop: Any) -> None:
        self._t = transport
        self._held: bytes | None = None
        self._loop = loop

    def write(self, data: bytes) -> None:
        if self._held is not None:
            data, self._held = self._held + data, None
        elif data[:9] == b"HTTP/1.1 " and data[9:12] != b"100":
            self._held = data
            self._loop.call_soon(self.flush)
            return
        self._t.write(data)

    def flush(self) -> None:
        if self._held is not None:
            data, self._held = self._held, None
            if not self._t.is_closing():
                self._t.write(data)

    def close(self) -> None:
        self.flush()
        self._t.close()

    def is_closing(self) -> bool:
        return bool(self._t.is_closing())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._t, name)


#: What the app offers the direct path: ``direct_post(scope, body, reply)``; it calls
#: ``reply(response)`` once with a Starlette response (or None: nobody to answer).
DirectPost = Callable[[Any, bytes, Callable[[Any], None]], None]


def _direct_post(app: Any) -> DirectPost | None:
    """The app's ``direct_post`` under any wrapping middleware (``.app`` chain), or None."""
    for _ in range(8):
        found = getattr(app, "direct_post", None)
        if found is not None:
            return found  # type: ignore[no-any-return]
        app = getattr(app, "app", None)
        if app is None:
            return None
    return None


class ReceiverProtocol(httptools_impl.HttpToolsProtocol):
    """uvicorn's httptools protocol plus a header deadline (slowloris protection), each answer
    written in one piece (:class:`CoalescingTransport`), and the direct path (module docstring).

    Header deadline: a timer runs from the moment the connection opens, and again from each
    answer; when it fires before the next request's headers are complete, the connection is
    closed. A request whose headers are complete is not affected (its body has its own deadline).
    """

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.raw_transport = transport
        self.transport = CoalescingTransport(transport, self.loop)  # type: ignore[assignment]
        self.header_timeout_s = process_settings().header_timeout_s
        self._header_timer: Any = None
        self._timer_at = 0.0
        self._awaiting_headers = True
        self._idle = False
        self._idle_deadline = 0.0
        self._feeding = False
        self._deferred: tuple[Any, Any] | None = None
        self._direct = _direct_post(self.app)
        self._arm()

    # -- the direct path ------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        self._idle = False
        self._feeding = True
        try:
            super().data_received(data)
        finally:
            self._feeding = False
        deferred = self._deferred
        if deferred is None:
            return
        self._deferred = None
        cycle, app = deferred
        if (cycle.more_body is False and self.cycle is cycle and not self.pipeline and not cycle.disconnected
                and not self.transport.is_closing()):
            self._direct(cycle.scope, bytes(cycle.body), functools.partial(self._reply, cycle))  # type: ignore[misc]  # set when deferred
        else:  # the body is still on its way (or something else is queued): the ASGI path
            super()._start_asgi_task(cycle, app)

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        scope = cycle.scope
        if (self._feeding and self._direct is not None and self._deferred is None and app is self.app
                and scope["method"] == "POST" and scope["path"] == "/webhooks/deploys" and not scope["root_path"]
                and not cycle.waiting_for_100_continue):
            self._deferred = (cycle, app)  # decided when this read's bytes are parsed (data_received)
            return
        super()._start_asgi_task(cycle, app)

    def _reply(self, cycle: Any, response: Any) -> None:
        """Write ``response`` as uvicorn's cycle would (its default headers, ``connection: close``
        when the connection ends), in one write, then complete the cycle."""
        if response is None or cycle.disconnected or cycle.response_complete:
            return
        keep_alive = cycle.keep_alive
        parts = [STATUS_LINE[response.status_code]]
        for name, value in cycle.default_headers:
            parts += (name, b": ", value, b"\r\n")
        closing = False
        for name, value in response.raw_headers:
            if name == b"connection" and b"close" in [t.strip().lower() for t in value.split(b",")]:
                keep_alive = False
                closing = True
            parts += (name, b": ", value, b"\r\n")
        if not keep_alive and not closing:
            parts.append(b"connection: close\r\n")
        parts += (b"\r\n", response.body)
        if self.access_log:  # the line uvicorn's cycle logs
            scope = cycle.scope
            self.access_logger.info('%s - "%s %s HTTP/%s" %d', get_client_addr(scope), scope["method"],
                                    get_path_with_query_string(scope), scope["http_version"], response.status_code)
        cycle.keep_alive = keep_alive
        cycle.response_started = cycle.response_complete = True
        self.raw_transport.write(b"".join(parts))
        cycle.message_event.set()
        if not keep_alive:
            self.transport.close()
        self.on_response_complete()

    # -- header deadline and keep-alive: one timer per connection ------------------------------
    # The timer is armed lazily: an answer only moves the deadlines (no timer set and cancelled
    # per request, where uvicorn sets one for its keep-alive at every answer and cancels it at
    # the next request's bytes); when the timer fires before a deadline it re-arms for it, and
    # it lapses while a request is in progress until the next answer arms it again.
    def _arm(self) -> None:
        self._awaiting_headers = True
        self._header_deadline = self.loop.time() + self.header_timeout_s
        self._schedule(self._header_deadline)

    def _schedule(self, when: float) -> None:
        timer = self._header_timer
        if timer is not None:
            if self._timer_at <= when:
                return  # it fires first and re-arms for ``when``
            timer.cancel()
        self._timer_at = when
        self._header_timer = self.loop.call_at(when, self._header_timeout)

    def _disarm(self) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        now = self.loop.time()
        due = []
        if self._idle:  # no byte since the last answer: uvicorn's keep-alive timeout
            if now >= self._idle_deadline - 0.005:
                self.transport.close()
                return
            due.append(self._idle_deadline)
        if self._awaiting_headers:
            if now >= self._header_deadline - 0.005:
                log.info("closed a connection that sent no complete request headers within %g s",
                         self.header_timeout_s)
                self.transport.close()
                return
            due.append(self._header_deadline)
        if due:  # an answer moved a deadline since the timer was set
            self._schedule(min(due))

    def on_headers_complete(self) -> None:
        self._awaiting_headers = False
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        # uvicorn's, with its keep-alive deadline kept in this connection's timer
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        # uvicorn's own keep-alive timer is set only by the on_response_complete this replaces, so
        # it is normally None here; cancelled all the same (what uvicorn's private unset does)
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
            self.timeout_keep_alive_task = None
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        else:
            self._idle = True
            self._idle_deadline = self.loop.time() + self.timeout_keep_alive
            self._schedule(self._idle_deadline)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


@functools.cache
def process_settings() -> Settings:
    """This process's settings (uvicorn pickles the protocol class by name into each worker
    process, so the class reads them from what ``serve`` handed down)."""
    text = os.environ.get(ENV_SETTINGS)
    return Settings.from_json(text) if text else Settings.build()
