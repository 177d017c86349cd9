"""Ingestion: from an HTTP request to a committed event, in an order an attacker cannot exploit.

Each webhook post goes through these steps; each one can answer on its own:

1. **Headers only.** A post that cannot authenticate (no secret configured for its source
   and unsigned posts not allowed, a missing or stale signature header, a wrong bearer or
   GitLab token) is refused (401) before a byte of its body is read.
2. **Body, under a budget.** At most ``max_body_reads`` bodies are read at once before
   authentication. Each must arrive whole within ``body_timeout_s`` (408 otherwise). When
   the budget is full, the reader with the lowest rate so far is cut off (408) and the
   newcomer reads: a signed sender's body arrives in milliseconds, so held-open slow
   bodies can never starve it. Bodies are capped at ``max_body`` bytes (Content-Length,
   streamed count, and again after gzip).
3. **Signature** over the decompressed body (HMAC sources), constant time.
4. **In-flight slot.** Only now does the event count against ``max_inflight``
   (503 + ``Retry-After: 1`` beyond it): the slots protect the store, and only events that
   proved who sent them can take one.
5. **Parse** (deploy-event/v1, or the source's mapping) and **commit** through the group
   committer; the sender's 2xx comes after the commit that holds its event.
"""

from __future__ import annotations

import asyncio
import json
import logging
import zlib
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from analyzers.errors import AnalyzerError, EventError, SignatureError, StoreError, StoreUnavailable
from analyzers.events.schema import body_event_id, loads_strict, parse_event
from analyzers.events.store import Store
from analyzers.events.store.codec import deploy_dict, plain_deploy
from analyzers.events.store.merge import EventItem
from analyzers.model import Deploy
from analyzers.server.commit import GroupCommitter
from analyzers.server.protocol import buffered as body_buffered
from analyzers.server.settings import RETRY_AFTER_S, Settings

log = logging.getLogger("analyzers.server.receiver")

#: A reader younger than this is never cut off for a newcomer (it may simply be starting).
MIN_AGE_TO_EVICT_S = 0.05


class HTTPProblem(Exception):
    """An error answer: status, message, offending field, metric reason."""

    def __init__(self, status: int, message: str, *, field: str | None = None, reason: str = "invalid",
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.reason = reason
        self.headers = dict(headers or {})


def problem_from(exc: AnalyzerError) -> HTTPProblem:
    if isinstance(exc, SignatureError):
        return HTTPProblem(401, str(exc), field=exc.field, reason="signature")
    if isinstance(exc, EventError):
        reason = "malformed" if exc.status_code == 400 else "invalid_event"
        return HTTPProblem(exc.status_code, str(exc), field=exc.field, reason=reason)
    if isinstance(exc, StoreUnavailable):  # details go to the log, not to the sender
        return HTTPProblem(503, "deploy store unavailable (locked, full or unreachable): nothing was stored, "
                                "retry later", reason="store_unavailable", headers={"Retry-After": str(RETRY_AFTER_S)})
    return HTTPProblem(500, f"internal error ({type(exc).__name__}); the event was not stored", reason="internal")


class FastJSONResponse(JSONResponse):
    """JSONResponse rendered by orjson: the same compact UTF-8 JSON, in a tenth of the time.

    For answers built from already-validated values (strings, numbers, booleans, None, lists,
    dicts, and deploys that :func:`deploy_answer` lets through): the accepted-event answer,
    sent for every event.
    """

    def init_headers(self, headers: Mapping[str, str] | None = None) -> None:
        if headers is None and self.status_code in (200, 201):  # what Starlette writes for them, directly
            self.raw_headers = [(b"content-length", str(len(self.body)).encode("latin-1")),
                                (b"content-type", b"application/json")]
        else:
            super().init_headers(headers)

    def render(self, content: Any) -> bytes:
        try:
            return orjson.dumps(content, option=orjson.OPT_UTC_Z)
        except TypeError:  # a lone surrogate (stored by another path): only ASCII escapes can carry it
            return json.dumps(content, ensure_ascii=True, separators=(",", ":"), default=_as_dict).encode("ascii")


def _as_dict(o: Any) -> Any:
    if isinstance(o, Deploy):
        return deploy_dict(o)
    raise TypeError(f"{type(o).__name__} is not JSON serializable")


def deploy_answer(d: Deploy) -> Deploy | dict[str, Any]:
    """What the answer shows of a stored deploy: :func:`deploy_dict`'s JSON, from the deploy
    itself when orjson writes it the same way (:func:`plain_deploy`), else from the dict."""
    return d if plain_deploy(d) else deploy_dict(d)


def error_response(p: HTTPProblem) -> JSONResponse:
    body: dict[str, Any] = {"error": p.message}
    if p.field:
        body["field"] = p.field
    return JSONResponse(body, status_code=p.status, headers=p.headers)


class _Read:
    __slots__ = ("started", "got", "timeout", "evicted")

    def __init__(self, started: float, timeout: asyncio.Timeout) -> None:
        self.started = started
        self.got = 0
        self.timeout = timeout
        self.evicted = False


class BodyReads:
    """The budget of bodies read before authentication (step 2 of the module docstring)."""

    def __init__(self, limit: int, timeout_s: float) -> None:
        self.limit = limit
        self.timeout_s = timeout_s
        self.active: dict[int, _Read] = {}
        self.evictions = 0

    def _make_room(self, now: float) -> None:
        old = [r for r in self.active.values() if now - r.started >= MIN_AGE_TO_EVICT_S and not r.evicted]
        if not old:
            raise HTTPProblem(503, "receiver busy reading other requests: retry later", reason="overload",
                              headers={"Retry-After": "1", "Connection": "close"})
        victim = min(old, key=lambda r: r.got / (now - r.started))
        victim.evicted = True
        self.evictions += 1
        victim.timeout.reschedule(now)  # its pending receive() is cancelled: it answers 408

    async def read(self, request: Request, max_body: int) -> bytes:
        # The whole body already sits in uvicorn's buffer (the receiver's httptools protocol has
        # parsed the message's end): read_body returns without yielding to the event loop, so there
        # is no deadline to keep (a timer armed and cancelled per event), no slot held, no room to make.
        if body_buffered(request.receive):
            return await read_body(request, max_body, buffered=True)
        now = asyncio.get_running_loop().time()
        if len(self.active) >= self.limit:
            self._make_room(now)
        timeout = asyncio.timeout(self.timeout_s)
        entry = _Read(now, timeout)
        key = id(entry)
        self.active[key] = entry
        try:
            async with timeout:
                return await read_body(request, max_body, entry)
        except TimeoutError:
            why = ("cut off: other senders were waiting and this body arrived slowest" if entry.evicted else
                   f"the whole body must arrive within {self.timeout_s:g} s")
            raise HTTPProblem(408, f"request body too slow ({why}); nothing was stored, send the body at once",
                              reason="slow_body", headers={"Connection": "close"}) from None
        finally:
            del self.active[key]


async def read_body(request: Request, max_body: int, progress: _Read | None = None, *,
                    buffered: bool = False) -> bytes:
    """The request body, refusing more than ``max_body`` bytes before reading it all.

    Content-Length is checked first (413 without reading), the streamed count second
    (chunked or lying senders), and gzip output third (bombs) with the same cap.
    ``buffered``: the whole body is one message already received
    (:func:`analyzers.server.protocol.buffered`),
    taken with a single ``receive()`` as Starlette's stream would take it.
    """
    _check_length(request, max_body)
    if buffered:
        message = await request.receive()
        if message["type"] != "http.request":  # http.disconnect, as Request.stream() raises it
            raise ClientDisconnect()
        return whole_body(request, message.get("body", b""), max_body, checked=True)
    buf = bytearray()
    async for chunk in request.stream():
        buf += chunk
        if progress is not None:
            progress.got = len(buf)
        if len(buf) > max_body:
            raise HTTPProblem(413, f"body exceeds the limit of {max_body} bytes", reason="too_large",
                              headers={"Connection": "close"})
    return _decoded(request, bytes(buf), max_body)


def _check_length(request: Any, max_body: int) -> None:
    cl = request.headers.get("content-length")
    if cl is not None:
        if not cl.strip().isdigit():
            raise HTTPProblem(400, "Content-Length is not a number", field="content-length", reason="malformed")
        if int(cl) > max_body:
            raise HTTPProblem(413, f"body of {int(cl)} bytes exceeds the limit of {max_body} bytes",
                              reason="too_large", headers={"Connection": "close"})


def whole_body(request: Any, body: bytes, max_body: int, *, checked: bool = False) -> bytes:
    """A body that arrived whole (one message), through the checks :func:`read_body` applies:
    Content-Length, size, Content-Encoding (``checked``: the Content-Length was checked already)."""
    if not checked:
        _check_length(request, max_body)
    if len(body) > max_body:
        raise HTTPProblem(413, f"body exceeds the limit of {max_body} bytes", reason="too_large",
                          headers={"Connection": "close"})
    return _decoded(request, body, max_body)


def _decoded(request: Any, buf: bytes, max_body: int) -> bytes:
    """The body after its Content-Encoding (identity or gzip, capped at ``max_body``)."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return buf
    if encoding not in ("gzip", "x-gzip"):
        raise HTTPProblem(415, f"Content-Encoding {encoding!r} is not supported: send identity or gzip",
                          field="content-encoding", reason="encoding")
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(buf, max_body + 1)
    except zlib.error as exc:
        raise HTTPProblem(400, f"gzip body is corrupt ({exc})", field="content-encoding", reason="malformed") from None
    if len(out) > max_body or d.unconsumed_tail:
        raise HTTPProblem(413, f"gzip body decompresses to more than the limit of {max_body} bytes",
                          reason="too_large")
    if not d.eof:
        raise HTTPProblem(400, "gzip body is truncated", field="content-encoding", reason="malformed")
    if d.unused_data:  # a second gzip member or junk: refuse rather than ignore bytes the sender sent
        raise HTTPProblem(400, "gzip body has data after its end: send one gzip member",
                          field="content-encoding", reason="malformed")
    return out


#: ``(signed, message id)`` once a request is authenticated.
Auth = tuple[bool, str | None]
#: Checks the headers before the body: returns an Auth when that settles it, or the check
#: that still needs the body (an HMAC over it); raises SignatureError to refuse at once.
PreAuth = Callable[[Request], "Auth | Callable[[bytes], Auth]"]
ToGeneric = Callable[[Any, Request], Mapping[str, Any] | None]


class Ingestor:
    """Steps 1-5 of the module docstring for one app; counts every outcome in ``metrics``."""

    def __init__(self, store: Store, settings: Settings, metrics: Any) -> None:
        self.settings = settings
        self.metrics = metrics
        self.keys = settings.metric_keys
        self.inflight = 0
        self.reads = BodyReads(settings.max_body_reads, settings.body_timeout_s)
        self.committer = GroupCommitter(store)
        # Counters of stored events by (source, new), looked up once each (labels() takes a lock).
        self.counted: dict[tuple[str, bool], Any] = {}

    def _admit(self, auth: Auth | Callable[[bytes], Auth], body: bytes) -> Auth:
        """Steps 3-4: the signature over the body, then an in-flight slot (the caller frees it)."""
        signed_id = auth(body) if callable(auth) else auth
        if self.inflight >= self.settings.max_inflight:
            raise HTTPProblem(503, "receiver overloaded: retry later", reason="overload", headers={"Retry-After": "1"})
        self.inflight += 1
        return signed_id

    def _refused(self, problem: HTTPProblem, source: str, body: bytes | None, exc: Exception | None = None) -> HTTPProblem:
        """Count and log a refusal; a post refused before its body closes its connection."""
        if body is None:  # refused before its body: do not wait for it on this connection
            problem.headers["Connection"] = "close"
        self.metrics.events.labels(source, "rejected", problem.reason).inc()
        if exc is not None and problem.status >= 500:
            log.warning("event not stored: %s", exc)
        else:
            log.info("refused %s event: %d %s (field %r)", source, problem.status, problem.reason, problem.field)
        return problem

    def _failure(self, exc: Exception, source: str, body: bytes | None) -> Exception:
        """What a post that raised ``exc`` answers with: a refusal counted and logged
        (:meth:`_refused`), or ``exc`` itself when it is none (an internal error)."""
        if isinstance(exc, HTTPProblem):
            return self._refused(exc, source, body)
        if isinstance(exc, EventError | StoreError):
            return self._refused(problem_from(exc), source, body, exc)
        return exc

    def _prepare(self, request: Any, body: bytes, source: str, auth: Auth | Callable[[bytes], Auth],
                 to_generic: ToGeneric | None = None) -> EventItem | None:
        """Steps 3-5 up to the commit, for both paths: signature, in-flight slot, parse (through the
        source's mapping, if any). Returns the event to commit, whose slot the caller then frees
        after the commit, or None when the mapping says the post is not a deploy event. On None
        or an exception no slot is held."""
        signed, msg_id = self._admit(auth, body)
        try:
            raw = data = loads_strict(body)
            if to_generic is not None:
                try:
                    data = to_generic(raw, request)
                except (TypeError, AttributeError, KeyError, ValueError) as exc:  # hostile shapes
                    log.warning("%s payload of unexpected shape (%s)", source, type(exc).__name__)
                    raise EventError(f"{source} payload does not have the shape this endpoint maps; see "
                                     "the per-source set-up in the docs", status_code=422) from None
                if data is None:
                    self.inflight -= 1
                    return None
            event = parse_event(data, source=source, metric_keys=self.keys, checked=data is raw)
            return event.source, event.event_id or msg_id or body_event_id(body), raw, event.to_deploy(signed)
        except BaseException:
            self.inflight -= 1
            raise

    def _accepted(self, source: str, event_id: str, stored: Any, new: bool) -> FastJSONResponse:
        counter = self.counted.get((source, new))
        if counter is None:
            counter = self.counted[source, new] = self.metrics.events.labels(
                source, "accepted" if new else "duplicate", "ok" if new else "duplicate")
        counter.inc()
        return FastJSONResponse(
            {"status": "created" if new else "duplicate", "deploy_id": stored.deploy_id, "event_id": event_id,
             "signed": stored.signed, "deploy": deploy_answer(stored)},
            status_code=201 if new else 200,
        )

    async def ingest(self, request: Request, source: str, pre_auth: PreAuth,
                     to_generic: ToGeneric | None) -> JSONResponse:
        body: bytes | None = None
        try:
            auth = pre_auth(request)
            body = await self.reads.read(request, self.settings.max_body)
            item = self._prepare(request, body, source, auth, to_generic)
            if item is None:
                self.metrics.events.labels(source, "ignored", "not_a_deploy").inc()
                return JSONResponse({"status": "ignored", "reason": "not a deploy event"}, status_code=202)
            try:
                stored, new = await self.committer.record(*item)
            finally:
                self.inflight -= 1
        except Exception as exc:
            failure = self._failure(exc, source, body)
            if failure is exc:
                raise
            raise failure from None
        return self._accepted(source, item[1], stored, new)

    def ingest_whole(self, request: Any, body: bytes, source: str, pre_auth: PreAuth,
                     done: Callable[[Any], None]) -> None:
        """:meth:`ingest` of a deploy-event/v1 post whose body arrived whole (the direct path of
        :mod:`analyzers.server.protocol`), without a task: the same steps, checks, counts and
        answers. ``done`` gets the response, or the exception :meth:`ingest` would raise."""
        checked: bytes | None = None
        try:
            auth = pre_auth(request)
            checked = whole_body(request, body, self.settings.max_body)
            item = self._prepare(request, checked, source, auth)
        except Exception as exc:
            done(self._failure(exc, source, checked))
            return
        if item is None:  # only a source's mapping ignores a post, and this path has none
            raise RuntimeError("a deploy-event/v1 post was ignored")
        event_id = item[1]

        def committed(result: Any) -> None:
            self.inflight -= 1
            try:
                if isinstance(result, BaseException):
                    raise result
                stored, new = result
            except Exception as exc:
                done(self._failure(exc, source, checked))
            else:
                done(self._accepted(source, event_id, stored, new))

        self.committer.submit(item, committed)


__all__ = ["HTTPProblem", "Ingestor", "BodyReads", "FastJSONResponse", "deploy_answer", "read_body", "whole_body",
           "problem_from", "error_response"]
