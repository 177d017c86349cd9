"""The webhook receiver: signed deploy events in, committed to the store, then 2xx.

Run it::

    DEPLOY_WEBHOOK_SECRET=whsec_... python -m analyzers serve        # the CLI calls main()
    python -m analyzers.server.receiver --port 8000 --store sqlite:///data/deploys.db

``main(host="127.0.0.1", port=8000, store_url="sqlite:///data/deploys.db", *, secrets=None,
allow_unsigned=False, max_body=262144, metric_keys=None, read_token=None, workers=1,
log_level="info", source_secrets=None)`` runs uvicorn until interrupted. ``secrets=None``
reads ``$DEPLOY_WEBHOOK_SECRET`` (comma/space-separated list: several secrets are valid at
once while rotating); ``read_token=None`` reads ``$DEPLOY_READ_TOKEN`` (unset: the read
API is open, which suits loopback only). ``allow_unsigned`` is True (every source) or a set of
source names (``{"argocd"}``). With ``workers > 1`` each worker is its own process on the
same store.

Endpoints (``create_app``):

- ``POST /webhooks/deploys``  deploy-event/v1 JSON, Standard Webhooks signature. 201 new,
  200 duplicate (same ``(source, event_id)``; ``event_id`` defaults to ``webhook-id``),
  both only after the commit; 400 malformed body, 401 signature, 413 too large, 415
  encoding, 422 invalid event (the message names the field), 503 + Retry-After when the
  store is locked/down or too many requests are in flight. Error bodies are
  ``{"error": "...", "field": "..."}``.
- Source endpoints beside it: ``POST /webhooks/github`` (``X-Hub-Signature-256``, dedup on
  ``X-GitHub-Delivery``), ``/webhooks/gitlab`` (``X-Gitlab-Token`` or Standard Webhooks),
  ``/webhooks/argocd`` and ``/webhooks/spinnaker`` (``Authorization: Bearer``), and
  ``POST /api/annotations`` (Grafana's annotation API shape). Secrets per source from
  ``$DEPLOY_WEBHOOK_SECRET_<SOURCE>`` (e.g. ``..._GITHUB``) or ``source_secrets``.
  Payloads that are not about a deploy (GitHub ``ping``) get 202 and are not stored;
  ``/api/annotations`` answers 200 like Grafana. Set-up per source: :mod:`analyzers.events.sources`.
- ``GET /healthz`` (checks the store), ``GET /metrics`` (Prometheus text, this app's own
  registry), ``GET /v1/deploys`` (filters ``service``, ``environment``, ``since``,
  ``until``, ``limit``; each with its latest verdict), ``GET /v1/deploys/{id}`` (with the
  verdict history), ``GET /openapi.json``. ``read_token`` protects ``/v1/*`` with
  ``Authorization: Bearer <token>``.

Bodies are capped at ``max_body`` bytes before being read whole (Content-Length and the
streamed count), and gzip bodies (``Content-Encoding: gzip``) are capped again after
decompression. The signature covers the decompressed body. The receiver never fetches a
URL it is given.

Events arriving while a commit is in progress are committed together in the next
transaction (group commit: one fsync for many events, a savepoint each); every sender
still gets its answer only after the commit holding its event.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import gc
import hmac
import json
import logging
import os
import time
import zlib
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from analyzers.config import parse_duration
from analyzers.errors import AnalyzerError, EventError, SignatureError, StoreError, StoreUnavailable
from analyzers.events import schema as schema_mod
from analyzers.events import sources
from analyzers.events.schema import body_event_id, loads_strict, openapi_schema, parse_event, parse_timestamp
from analyzers.events.signatures import ENV_SECRET, parse_secrets, verify, verify_github, verify_token
from analyzers.events.store import Store, open_store
from analyzers.events.store.base import deploy_dict

log = logging.getLogger("analyzers.server.receiver")

DEFAULT_MAX_BODY = 256 * 1024
RETRY_AFTER_S = 5
SOURCE_NAMES = ("github", "gitlab", "argocd", "spinnaker", "grafana")


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


def _problem_from(exc: AnalyzerError) -> HTTPProblem:
    if isinstance(exc, SignatureError):
        return HTTPProblem(401, str(exc), field=exc.field, reason="signature")
    if isinstance(exc, EventError):
        reason = "malformed" if exc.status_code == 400 else "invalid_event"
        return HTTPProblem(exc.status_code, str(exc), field=exc.field, reason=reason)
    if isinstance(exc, StoreUnavailable):  # details go to the log, not to the sender
        return HTTPProblem(503, "deploy store unavailable (locked, full or unreachable): nothing was stored, "
                                "retry later", reason="store_unavailable", headers={"Retry-After": str(RETRY_AFTER_S)})
    return HTTPProblem(500, f"internal error ({type(exc).__name__}); the event was not stored", reason="internal")


class _Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("receiver_http_requests", "HTTP requests by route and status",
                                ["method", "path", "status"], registry=self.registry)
        self.latency = Histogram("receiver_http_request_duration_seconds", "Request duration by route",
                                 ["path"], registry=self.registry,
                                 buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10))
        self.events = Counter("receiver_events", "Deploy events by source, result and reason",
                              ["source", "result", "reason"], registry=self.registry)


class _MetricsMiddleware:
    """Pure ASGI middleware: counts every response by route template (bounded cardinality)."""

    def __init__(self, app: Any, metrics: _Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        start = time.perf_counter()

        async def _send(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, _send)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(scope.get("method", ""), path, str(status)).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - start)


class _GroupCommitter:
    """Batches concurrent ``record_event`` calls into one store transaction (one fsync).

    While a commit runs, new events queue; when it ends, the queue is committed together.
    An idle receiver commits each event at once (no added latency); a busy one pays one
    fsync per batch instead of one per event. Every caller still gets its own answer only
    after the commit that holds its event.
    """

    def __init__(self, store: Store, max_batch: int = 64) -> None:
        self.store = store
        self.max_batch = max_batch
        self.pending: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self.task: asyncio.Task[None] | None = None
        # One writer thread per process (only one batch is ever in flight): a plain executor
        # hop costs less than anyio's thread pool, and the thread stays warm.
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="store-writer")

    async def record(self, source: str, event_id: str, payload: Any, deploy: Any) -> tuple[Any, bool]:
        if not hasattr(self.store, "record_events"):
            return await run_in_threadpool(self.store.record_event, source, event_id, payload, deploy)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending.append(((source, event_id, payload, deploy), fut))
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._drain())
        return await asyncio.shield(fut)

    async def _drain(self) -> None:
        while self.pending:
            # One turn of the loop first: requests already read and parsed join this batch
            # (about 10% larger batches under load, i.e. fewer fsyncs; microseconds when idle).
            await asyncio.sleep(0)
            batch, self.pending = self.pending[: self.max_batch], self.pending[self.max_batch:]
            try:
                results = await asyncio.get_running_loop().run_in_executor(
                    self.executor, self.store.record_events, [item for item, _ in batch])  # type: ignore[attr-defined]
            except BaseException as exc:  # the whole batch failed: nothing of it was committed
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc if isinstance(exc, Exception) else StoreUnavailable(str(exc)))
                if not isinstance(exc, Exception):
                    raise
                continue
            for (_, fut), result in zip(batch, results, strict=True):
                if fut.done():
                    continue
                if isinstance(result, BaseException):
                    fut.set_exception(result)
                else:
                    fut.set_result(result)


async def read_body(request: Request, max_body: int) -> bytes:
    """The request body, refusing more than ``max_body`` bytes before reading it all.

    Content-Length is checked first (413 without reading), the streamed count second
    (chunked or lying senders), and gzip output third (bombs) with the same cap.
    """
    cl = request.headers.get("content-length")
    if cl is not None:
        if not cl.strip().isdigit():
            raise HTTPProblem(400, "Content-Length is not a number", field="content-length", reason="malformed")
        if int(cl) > max_body:
            raise HTTPProblem(413, f"body of {int(cl)} bytes exceeds the limit of {max_body} bytes",
                              reason="too_large")
    buf = bytearray()
    async for chunk in request.stream():
        buf += chunk
        if len(buf) > max_body:
            raise HTTPProblem(413, f"body exceeds the limit of {max_body} bytes", reason="too_large")
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return bytes(buf)
    if encoding not in ("gzip", "x-gzip"):
        raise HTTPProblem(415, f"Content-Encoding {encoding!r} is not supported: send identity or gzip",
                          field="content-encoding", reason="encoding")
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(bytes(buf), max_body + 1)
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


class _ReceiverApp(FastAPI):
    """FastAPI with a direct path for ``POST /webhooks/deploys``, the one route under load.

    That post skips the generic middleware and routing layers (exception middleware, exit
    stacks, dependency solving: about a third of the app's CPU per event) and runs the same
    ``ingest`` as the routed endpoint, with the same error bodies and metrics. Every other
    request, and the OpenAPI description of this one, go through FastAPI as usual.
    """

    fast_post: Callable[[Any, Any, Any], Any] | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if (self.fast_post is not None and scope["type"] == "http" and scope["method"] == "POST"
                and scope["path"] == "/webhooks/deploys" and not scope.get("root_path")):
            await self.fast_post(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def _error_response(p: HTTPProblem) -> JSONResponse:
    body: dict[str, Any] = {"error": p.message}
    if p.field:
        body["field"] = p.field
    return JSONResponse(body, status_code=p.status, headers=p.headers)


def _env_source_secrets() -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for name in SOURCE_NAMES:
        value = os.environ.get(f"{ENV_SECRET}_{name.upper()}")
        if value:
            out[name] = parse_secrets(value)
    return out


def _parse_time_param(value: str | None, name: str, now: datetime) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        return parse_timestamp(value, name)  # RFC 3339 or Unix seconds/milliseconds
    except EventError as exc:
        error = exc
    try:
        return now - timedelta(seconds=parse_duration(value, key=name))  # "24h" back from now
    except AnalyzerError:
        raise HTTPProblem(422, f"{name}: use RFC 3339 (2026-11-27T10:00:00Z), Unix seconds, or a duration "
                               f"back from now such as 24h ({error})", field=name) from None


def create_app(
    store: Store,
    *,
    secrets: str | Sequence[str] | None = None,
    allow_unsigned: bool | Collection[str] = False,
    max_body: int = DEFAULT_MAX_BODY,
    metric_keys: Collection[str] | None = None,
    read_token: str | None = None,
    source_secrets: Mapping[str, str | Sequence[str]] | None = None,
    max_inflight: int = 64,
    clock: Callable[[], float] = time.time,
) -> FastAPI:
    """Build the receiver app around an open ``store``.

    ``secrets``: Standard Webhooks secrets (``whsec_...`` or raw); None reads
    ``$DEPLOY_WEBHOOK_SECRET``. Without any secret every post is refused (401) unless
    ``allow_unsigned`` is True (every endpoint) or names the endpoint's source
    (``{"generic", "github", "gitlab", "argocd", "spinnaker", "grafana"}``, e.g.
    ``{"argocd"}`` for a sender that cannot sign); unsigned posts are then stored with
    ``signed=False``.
    With secrets *and* ``allow_unsigned``, a request that carries a signature must still
    carry a valid one. ``metric_keys``: the metric catalog (expectations naming other keys
    get 422). ``max_inflight``: concurrent webhook posts before answering 503.
    ``clock``: Unix seconds, injectable for signature-tolerance tests.
    """
    sec = parse_secrets(os.environ.get(ENV_SECRET) if secrets is None else secrets)
    src_secrets = {k: parse_secrets(v) for k, v in (source_secrets if source_secrets is not None
                                                   else _env_source_secrets()).items()}
    keys = frozenset(metric_keys) if metric_keys is not None else None
    unsigned_sources = frozenset(("generic", *SOURCE_NAMES)) if allow_unsigned is True else frozenset(allow_unsigned or ())
    metrics = _Metrics()
    inflight = 0
    committer = _GroupCommitter(store)

    app = _ReceiverApp(
        title="deploy-verify receiver",
        version="1",
        description="Receives signed deploy events (deploy-event/v1) and serves them back.",
        docs_url=None,
        redoc_url=None,
    )
    app.add_middleware(_MetricsMiddleware, metrics=metrics)
    app.state.store = store
    app.state.metrics = metrics

    @app.exception_handler(HTTPProblem)
    async def _problem_handler(request: Request, exc: HTTPProblem) -> JSONResponse:
        return _error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_handler(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("query", "path", "header", "body")]
        name = ".".join(loc) or None
        return _error_response(HTTPProblem(422, f"{name or 'request'}: {first.get('msg', 'invalid')}", field=name))

    @app.exception_handler(AnalyzerError)
    async def _analyzer_handler(request: Request, exc: AnalyzerError) -> JSONResponse:
        return _error_response(_problem_from(exc))

    # -- ingestion ------------------------------------------------------------------
    async def ingest(request: Request, source: str, authenticate: Callable[[bytes], tuple[bool, str | None]],
                     to_generic: Callable[[Any, Request], Mapping[str, Any] | None] | None) -> JSONResponse:
        """Shared path: cap, authenticate, parse, commit, answer. Counts the outcome."""
        nonlocal inflight
        if inflight >= max_inflight:
            metrics.events.labels(source, "rejected", "overload").inc()
            raise HTTPProblem(503, "receiver overloaded: retry later", reason="overload",
                              headers={"Retry-After": "1"})
        inflight += 1
        try:
            try:
                body = await read_body(request, max_body)
                signed, msg_id = authenticate(body)
                raw = data = loads_strict(body)
                if to_generic is not None:
                    try:
                        data = to_generic(raw, request)
                    except (TypeError, AttributeError, KeyError, ValueError) as exc:  # hostile shapes
                        log.warning("%s payload of unexpected shape (%s)", source, type(exc).__name__)
                        raise EventError(f"{source} payload does not have the shape this endpoint maps; see "
                                         "the per-source set-up in the docs", status_code=422) from None
                    if data is None:
                        metrics.events.labels(source, "ignored", "not_a_deploy").inc()
                        return JSONResponse({"status": "ignored", "reason": "not a deploy event"}, status_code=202)
                event = parse_event(data, source=source, metric_keys=keys)
                event_id = event.event_id or msg_id or body_event_id(body)
                deploy = event.to_deploy(signed)
                stored, new = await committer.record(event.source, event_id, raw, deploy)
            except HTTPProblem as problem:
                metrics.events.labels(source, "rejected", problem.reason).inc()
                log.info("refused %s event: %d %s (field %r)", source, problem.status, problem.reason, problem.field)
                raise
            except (EventError, StoreError) as exc:
                refused = _problem_from(exc)
                metrics.events.labels(source, "rejected", refused.reason).inc()
                if refused.status >= 500:
                    log.warning("event not stored: %s", exc)
                else:
                    log.info("refused %s event: %d %s (field %r)", source, refused.status, refused.reason,
                             refused.field)
                raise refused from None
        finally:
            inflight -= 1
        metrics.events.labels(source, "accepted" if new else "duplicate", "ok" if new else "duplicate").inc()
        return JSONResponse(
            {"status": "created" if new else "duplicate", "deploy_id": stored.deploy_id, "event_id": event_id,
             "signed": stored.signed, "deploy": deploy_dict(stored)},
            status_code=201 if new else 200,
        )

    def standard_auth(body: bytes, request: Request, secrets_: Sequence[str]) -> tuple[bool, str | None]:
        has_sig = "webhook-signature" in request.headers
        unsigned_ok = "generic" in unsigned_sources
        if secrets_ and (has_sig or not unsigned_ok):
            return True, verify(secrets_, request.headers, body, now=clock())
        if not secrets_ and not unsigned_ok:
            raise SignatureError(f"this receiver has no webhook secret: set {ENV_SECRET} (whsec_...) and sign "
                                 "requests, or start it explicitly allowing unsigned events")
        return False, request.headers.get("webhook-id") or None

    webhook_doc = {
        "requestBody": {"required": True, "content": {"application/json": {"schema": openapi_schema(keys)}}},
        "parameters": [
            {"name": n, "in": "header", "required": False, "schema": {"type": "string"}}
            for n in ("webhook-id", "webhook-timestamp", "webhook-signature")
        ],
    }

    source_doc = {"requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}}

    @app.post("/webhooks/deploys", status_code=201, openapi_extra=webhook_doc,
              summary="Receive one deploy-event/v1 (Standard Webhooks signed)")
    async def post_deploy(request: Request) -> JSONResponse:
        return await ingest(request, "generic", lambda b: standard_auth(b, request, sec), None)

    async def fast_post_deploy(scope: Any, receive: Any, send: Any) -> None:
        start = time.perf_counter()
        request = Request(scope, receive)
        try:
            response = await post_deploy(request)
        except HTTPProblem as problem:
            response = _error_response(problem)
        except AnalyzerError as exc:
            response = _error_response(_problem_from(exc))
        except ClientDisconnect:  # the sender hung up before its body arrived: nothing stored, no one to answer
            metrics.requests.labels("POST", "/webhooks/deploys", "499").inc()
            return
        except Exception:
            log.exception("unexpected error on POST /webhooks/deploys")
            response = _error_response(HTTPProblem(500, "internal error; the event was not stored",
                                                   reason="internal"))
        await response(scope, receive, send)
        metrics.requests.labels("POST", "/webhooks/deploys", str(response.status_code)).inc()
        metrics.latency.labels("/webhooks/deploys").observe(time.perf_counter() - start)

    app.fast_post = fast_post_deploy
    on_shutdown(app, lambda: committer.executor.shutdown(wait=False))

    def source_secret(name: str) -> tuple[str, ...]:
        return src_secrets.get(name, ())

    def unsigned_or(name: str) -> tuple[bool, str | None]:
        if name in unsigned_sources:
            return False, None
        raise SignatureError(f"no secret configured for source {name}: set {ENV_SECRET}_{name.upper()} "
                             "or start the receiver allowing unsigned events")

    @app.post("/webhooks/github", status_code=201, openapi_extra=source_doc, summary="GitHub deployment / deployment_status events")
    async def post_github(request: Request) -> JSONResponse:
        def auth(body: bytes) -> tuple[bool, str | None]:
            delivery = request.headers.get("x-github-delivery")
            secrets_ = source_secret("github")
            if secrets_:
                verify_github(secrets_, request.headers.get("x-hub-signature-256"), body)
                return True, delivery
            return unsigned_or("github")[0], delivery

        return await ingest(request, "github", auth,
                            lambda d, r: sources.from_github(d, r.headers.get("x-github-event", ""),
                                                             r.headers.get("x-github-delivery")))

    @app.post("/webhooks/gitlab", status_code=201, openapi_extra=source_doc, summary="GitLab deployment events")
    async def post_gitlab(request: Request) -> JSONResponse:
        def auth(body: bytes) -> tuple[bool, str | None]:
            secrets_ = source_secret("gitlab")
            if "webhook-signature" in request.headers and secrets_:
                return True, verify(secrets_, request.headers, body, now=clock())
            if secrets_:
                verify_token(secrets_, request.headers.get("x-gitlab-token"), header="X-Gitlab-Token")
                return True, request.headers.get("x-gitlab-event-uuid") or request.headers.get("idempotency-key")
            return unsigned_or("gitlab")[0], request.headers.get("x-gitlab-event-uuid")

        return await ingest(request, "gitlab", auth, lambda d, r: sources.from_gitlab(d))

    def bearer_auth(name: str, request: Request) -> tuple[bool, str | None]:
        secrets_ = source_secret(name)
        if secrets_:
            auth_header = request.headers.get("authorization", "")
            token = auth_header[7:].strip() if auth_header.lower().startswith("bearer ") else None
            verify_token(secrets_, token, header="Authorization")
            return True, None
        return unsigned_or(name)

    @app.post("/webhooks/argocd", status_code=201, openapi_extra=source_doc, summary="Argo CD notifications (template JSON)")
    async def post_argocd(request: Request) -> JSONResponse:
        return await ingest(request, "argocd", lambda b: bearer_auth("argocd", request),
                            lambda d, r: sources.from_argocd(d))

    @app.post("/webhooks/spinnaker", status_code=201, openapi_extra=source_doc, summary="Spinnaker pipeline notifications")
    async def post_spinnaker(request: Request) -> JSONResponse:
        return await ingest(request, "spinnaker", lambda b: bearer_auth("spinnaker", request),
                            lambda d, r: sources.from_spinnaker(d))

    @app.post("/api/annotations", status_code=201, openapi_extra=source_doc, summary="Grafana annotation API shape")
    async def post_grafana(request: Request) -> JSONResponse:
        resp = await ingest(request, "grafana", lambda b: bearer_auth("grafana", request),
                            lambda d, r: sources.from_grafana_annotation(d))
        if resp.status_code in (200, 201):  # Grafana answers 200 {"message": "Annotation added", ...}
            return JSONResponse({**json.loads(bytes(resp.body)), "message": "Annotation added"}, status_code=200)
        return resp

    # -- read side ------------------------------------------------------------------
    def check_read(request: Request) -> None:
        if read_token is None:
            return
        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        if not hmac.compare_digest(token.encode(), read_token.encode()):
            raise HTTPProblem(401, "this read API needs Authorization: Bearer <token>", field="authorization",
                              headers={"WWW-Authenticate": "Bearer"})

    @app.get("/healthz", summary="Liveness and store check")
    async def healthz() -> JSONResponse:
        try:
            await run_in_threadpool(store.ping)
        except StoreError as exc:
            return JSONResponse({"status": "unavailable", "error": str(exc)}, status_code=503,
                                headers={"Retry-After": str(RETRY_AFTER_S)})
        return JSONResponse({"status": "ok"})

    @app.get("/metrics", summary="Prometheus metrics of this receiver")
    async def prom_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/deploys", summary="Deploys, newest first, each with its latest verdict")
    async def list_deploys(request: Request, service: str | None = None, environment: str | None = None,
                           since: str | None = None, until: str | None = None, limit: int = 100) -> JSONResponse:
        check_read(request)
        if not 1 <= limit <= 10000:
            raise HTTPProblem(422, "limit must be between 1 and 10000", field="limit")
        for name, value in (("service", service), ("environment", environment)):
            if value is not None:
                schema_mod.check_tree(value, name)
        now = datetime.fromtimestamp(clock(), tz=UTC)
        t0 = _parse_time_param(since, "since", now)
        t1 = _parse_time_param(until, "until", now)

        def fetch() -> list[dict[str, Any]]:
            deploys = store.list_deploys(service=service, environment=environment, since=t0, until=t1, limit=limit)
            verdicts = store.latest_verdicts([d.deploy_id for d in deploys])
            return [{**d.to_dict(), "verdict": (verdicts[d.deploy_id].to_dict() if d.deploy_id in verdicts else None)}
                    for d in deploys]

        items = await run_in_threadpool(fetch)
        return JSONResponse({"deploys": items, "count": len(items)})

    @app.get("/v1/deploys/{deploy_id}", summary="One deploy with its verdict history")
    async def get_deploy(request: Request, deploy_id: str) -> JSONResponse:
        check_read(request)
        schema_mod.check_tree(deploy_id, "deploy_id")

        def fetch() -> dict[str, Any] | None:
            d = store.get_deploy(deploy_id)
            if d is None:
                return None
            history = store.verdict_history(deploy_id)
            return {"deploy": d.to_dict(), "verdict": history[-1].to_dict() if history else None,
                    "verdict_history": [v.to_dict() for v in history]}

        item = await run_in_threadpool(fetch)
        if item is None:
            raise HTTPProblem(404, f"no deploy with id {deploy_id!r}", field="deploy_id")
        return JSONResponse(item)

    return app


# --------------------------------------------------------------------------- running

_ENV_PREFIX = "ANALYZERS_RECEIVER_"


def _unsigned_from_env(value: str | None) -> bool | frozenset[str]:
    """``1`` (every source), ``0``/unset (none) or a comma list of sources."""
    if not value or value == "0":
        return False
    if value == "1":
        return True
    return frozenset(v.strip() for v in value.split(",") if v.strip())


def app_from_env() -> FastAPI:
    """uvicorn factory (``--factory analyzers.server.receiver:app_from_env``); reads what main() set."""
    env = os.environ
    level = (env.get(_ENV_PREFIX + "LOG_LEVEL") or "info").upper()
    pkg_log = logging.getLogger("analyzers")
    if not pkg_log.handlers:  # uvicorn configures only its own loggers
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
        pkg_log.addHandler(handler)
        pkg_log.setLevel(level if level in logging.getLevelNamesMapping() else "INFO")
    keys = env.get(_ENV_PREFIX + "METRIC_KEYS")
    store_url = env.get(_ENV_PREFIX + "STORE_URL") or env.get("DEPLOY_STORE_URL") or "sqlite:///data/deploys.db"
    store = open_store(store_url)
    if hasattr(store, "start_background_checkpoints"):  # SQLite: WAL checkpoints off the request path
        store.start_background_checkpoints()
    app = create_app(
        store,
        secrets=None,
        allow_unsigned=_unsigned_from_env(env.get(_ENV_PREFIX + "ALLOW_UNSIGNED")),
        max_body=int(env.get(_ENV_PREFIX + "MAX_BODY") or DEFAULT_MAX_BODY),
        metric_keys=None if keys is None else [k for k in keys.split(",") if k],
        read_token=env.get(_ENV_PREFIX + "READ_TOKEN") or None,
    )
    on_shutdown(app, store.close)  # this factory opened the store, so it closes it
    from analyzers.server.gate import install_gate_from_env

    install_gate_from_env(app, store)  # /v1/gate/... and the change metrics on /metrics
    if env.get("ANALYZERS_WORKER") == "1":
        attach_worker(app, store_url, poll_s=float(env.get("ANALYZERS_WORKER_POLL") or 5.0))
    # The start-up objects (modules, FastAPI's models: ~10^5) never die: move them out of the
    # collector's reach, so an old-generation collection no longer walks them all in the
    # middle of a request (a pause of several ms at the latency tail).
    gc.collect()
    gc.freeze()
    return app


def on_shutdown(app: FastAPI, callback: Callable[[], object]) -> None:
    """Run ``callback`` when the app's lifespan ends (FastAPI has no shutdown hook of its own here)."""
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(a: Any) -> Any:
        async with inner(a) as state:
            try:
                yield state
            finally:
                callback()

    app.router.lifespan_context = lifespan


def attach_worker(app: FastAPI, store_url: str, *, poll_s: float = 5.0) -> None:
    """Run the verification scheduler inside this receiver process (``ANALYZERS_WORKER=1``).

    Verdicts are counted on this app's ``/metrics``: ``deploy_verdicts_total{service,overall}``
    and ``deploy_verification_seconds`` (time to verify one deploy).
    """
    from prometheus_client import Counter as _Counter
    from prometheus_client import Histogram as _Histogram

    from analyzers.config import load_config
    from analyzers.server.worker import start_background_worker

    registry = app.state.metrics.registry
    verdicts = _Counter("deploy_verdicts", "Deploy verdicts produced, by service and result",
                        ["service", "overall"], registry=registry)
    seconds = _Histogram("deploy_verification_seconds", "Time to verify one deploy", registry=registry,
                         buckets=(.1, .25, .5, 1, 2.5, 5, 10, 30, 60))

    def on_verdict(v: Any, elapsed_s: float) -> None:
        verdicts.labels(v.service, v.overall).inc()
        seconds.observe(elapsed_s)

    _thread, stop = start_background_worker(store_url, load_config(), poll_s=poll_s, on_verdict=on_verdict)
    on_shutdown(app, stop.set)


def main(
    host: str = "127.0.0.1",
    port: int = 8000,
    store_url: str = "sqlite:///data/deploys.db",
    *,
    secrets: str | Sequence[str] | None = None,
    allow_unsigned: bool | Collection[str] = False,
    max_body: int = DEFAULT_MAX_BODY,
    metric_keys: Collection[str] | None = None,
    read_token: str | None = None,
    workers: int = 1,
    log_level: str = "info",
    source_secrets: Mapping[str, str | Sequence[str]] | None = None,
) -> None:
    """Serve the receiver with uvicorn until interrupted (see the module docstring)."""
    import uvicorn

    if read_token is None:
        read_token = os.environ.get("DEPLOY_READ_TOKEN") or None
    # Fail now, in the foreground, on a bad secret or an unreachable store.
    sec = parse_secrets(os.environ.get(ENV_SECRET) if secrets is None else secrets)
    if not sec and not (allow_unsigned is True or (allow_unsigned and "generic" in allow_unsigned)):
        log.warning("no %s set: every webhook post will be refused (401)", ENV_SECRET)
    open_store(store_url).close()
    os.environ[_ENV_PREFIX + "STORE_URL"] = store_url
    if sec:
        os.environ[ENV_SECRET] = ",".join(sec)
    for name, value in (source_secrets or {}).items():
        os.environ[f"{ENV_SECRET}_{name.upper()}"] = value if isinstance(value, str) else ",".join(value)
    if allow_unsigned is True or allow_unsigned is False:
        os.environ[_ENV_PREFIX + "ALLOW_UNSIGNED"] = "1" if allow_unsigned else "0"
    else:
        os.environ[_ENV_PREFIX + "ALLOW_UNSIGNED"] = ",".join(sorted(allow_unsigned))
    os.environ[_ENV_PREFIX + "MAX_BODY"] = str(int(max_body))
    os.environ[_ENV_PREFIX + "LOG_LEVEL"] = log_level
    if metric_keys is not None:
        os.environ[_ENV_PREFIX + "METRIC_KEYS"] = ",".join(metric_keys)
    if read_token:
        os.environ[_ENV_PREFIX + "READ_TOKEN"] = read_token
    uvicorn.run("analyzers.server.receiver:app_from_env", factory=True, host=host, port=port, workers=workers,
                log_level=log_level, access_log=False, timeout_graceful_shutdown=5)


def _cli(argv: Sequence[str] | None = None) -> None:
    from analyzers.config import load_config

    p = argparse.ArgumentParser(prog="python -m analyzers.server.receiver", description="Run the deploy webhook receiver.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--store", default=None, help="store URL (default: config store.url / $DEPLOY_STORE_URL)")
    p.add_argument("--config", default=None, help="TOML config (metric catalog for expectation checks)")
    p.add_argument("--allow-unsigned", action="store_true", help="accept unsigned events (stored as signed=false)")
    p.add_argument("--allow-unsigned-source", action="append", default=[], metavar="SOURCE",
                   help="accept unsigned events from this source only (generic, github, gitlab, argocd, ...)")
    p.add_argument("--max-body", type=int, default=DEFAULT_MAX_BODY)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--log-level", default="info")
    args = p.parse_args(argv)
    cfg = load_config(args.config)
    unsigned: bool | frozenset[str] = True if args.allow_unsigned else frozenset(args.allow_unsigned_source)
    main(args.host, args.port, args.store or cfg.store_url, allow_unsigned=unsigned,
         max_body=args.max_body, metric_keys=sorted(cfg.metrics), workers=args.workers,
         log_level=args.log_level)


if __name__ == "__main__":
    _cli()

__all__ = ["create_app", "main", "app_from_env", "read_body"]
