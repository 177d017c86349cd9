"""The receiver's FastAPI app: routes, authentication per source, the read API.

Endpoints (:func:`create_app`):

- ``POST /webhooks/deploys``  deploy-event/v1 JSON, Standard Webhooks signature. 201 new,
  200 duplicate (same ``(source, event_id)``; ``event_id`` defaults to ``webhook-id``),
  both only after the commit; 400 malformed body, 401 signature, 408 body too slow,
  413 too large, 415 encoding, 422 invalid event (the message names the field), 503 +
  Retry-After when the store is locked/down or too many requests are in flight. Error
  bodies are ``{"error": "...", "field": "..."}``.
- Source endpoints beside it: ``POST /webhooks/github`` (``X-Hub-Signature-256``, dedup on
  ``X-GitHub-Delivery``), ``/webhooks/gitlab`` (``X-Gitlab-Token`` or Standard Webhooks),
  ``/webhooks/argocd`` and ``/webhooks/spinnaker`` (``Authorization: Bearer``), and
  ``POST /api/annotations`` (Grafana's annotation API shape). Payloads that are not about a
  deploy (GitHub ``ping``) get 202 and are not stored; ``/api/annotations`` answers 200
  like Grafana. Set-up per source: :mod:`analyzers.events.sources`.
- ``GET /healthz`` (checks the store), ``GET /metrics`` (Prometheus text, this app's own
  registry), ``GET /v1/deploys`` (filters ``service``, ``environment``, ``since``,
  ``until``, ``limit``; each with its latest verdict), ``GET /v1/deploys/{id}`` (with the
  verdict history), ``GET /openapi.json``. A read token protects ``/v1/*`` with
  ``Authorization: Bearer <token>`` (and ``/metrics`` and ``/openapi.json`` too with
  ``protect_metrics``); compared in constant time.

How a post is read and authenticated, and why that order: :mod:`analyzers.server.ingest`.
The receiver never fetches a URL it is given.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect, empty_receive

from analyzers.config import parse_duration
from analyzers.errors import AnalyzerError, EventError, SignatureError, StoreError
from analyzers.events import schema as schema_mod
from analyzers.events import sources
from analyzers.events.combined import combined_verdict, latest_pair
from analyzers.events.openapi import openapi_schema
from analyzers.events.schema import parse_timestamp
from analyzers.events.signatures import ENV_SECRET, verify_body, verify_github, verify_headers, verify_token
from analyzers.events.store import Store
from analyzers.server.ingest import Auth, HTTPProblem, Ingestor, error_response, log, problem_from
from analyzers.server.settings import RETRY_AFTER_S, Settings


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("receiver_http_requests", "HTTP requests by route and status",
                                ["method", "path", "status"], registry=self.registry)
        self.latency = Histogram("receiver_http_request_duration_seconds", "Request duration by route",
                                 ["path"], registry=self.registry,
                                 buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10))
        self.events = Counter("receiver_events", "Deploy events by source, result and reason",
                              ["source", "result", "reason"], registry=self.registry)


class IndexedHeaders(Headers):
    """Starlette's request headers with one dict lookup per read instead of a scan of the list.

    The webhook path reads about ten headers per event (signature, id, timestamp, length,
    encoding, ...); building the index once costs less than two scans. The first value of
    a repeated header wins, as in :class:`~starlette.datastructures.Headers`.
    """

    def __init__(self, scope: Any) -> None:
        self._list = scope["headers"]  # as Headers(scope=scope) keeps it (a list under uvicorn), without the copy
        if type(self._list) is not list:
            self._list = scope["headers"] = list(self._list)
        self.index = {key.decode("latin-1"): value.decode("latin-1") for key, value in reversed(scope["headers"])}

    def __getitem__(self, key: str) -> str:
        return self.index[key.lower()]

    def __contains__(self, key: Any) -> bool:
        return isinstance(key, str) and key.lower() in self.index

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return self.index.get(key.lower(), default)


class WebhookRequest(Request):
    """A request whose ``headers`` are :class:`IndexedHeaders` (the webhook fast path), built
    with the request and kept as a plain attribute (read about four times per event)."""

    headers: IndexedHeaders = None  # type: ignore[assignment]  # shadows Request.headers (a property)

    def __init__(self, scope: Any, receive: Any = empty_receive) -> None:
        super().__init__(scope, receive)
        self.headers = IndexedHeaders(scope)


class DirectRequest:
    """What the direct path's checks read of a request: its :class:`IndexedHeaders`."""

    __slots__ = ("headers",)

    def __init__(self, scope: Any) -> None:
        self.headers = IndexedHeaders(scope)


class _MetricsMiddleware:
    """Pure ASGI middleware: counts every response by route template (bounded cardinality)."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
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


class _ReceiverApp(FastAPI):
    """FastAPI with a direct path for ``POST /webhooks/deploys``, the one route under load.

    That post skips the generic middleware and routing layers (exception middleware, exit
    stacks, dependency solving: about a third of the app's CPU per event) and runs the same
    ``ingest`` as the routed endpoint, with the same error bodies and metrics. Every other
    request, and the OpenAPI description of this one, go through FastAPI as usual.
    ``/metrics`` and ``/openapi.json`` are checked against the read token here when
    ``protect_metrics`` is set (FastAPI serves the OpenAPI document itself).
    """

    fast_post: Callable[[Any, Any, Any], Any] | None = None
    direct_post: Callable[[Any, bytes, Any], None] | None = None  # analyzers.server.protocol's direct path
    guard: Callable[[Request], None] | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            if (self.fast_post is not None and scope["method"] == "POST"
                    and scope["path"] == "/webhooks/deploys" and not scope.get("root_path")):
                await self.fast_post(scope, receive, send)
                return
            if self.guard is not None and scope["path"] in ("/metrics", "/openapi.json"):
                try:
                    self.guard(Request(scope, receive))
                except HTTPProblem as problem:
                    await error_response(problem)(scope, receive, send)
                    return
        await super().__call__(scope, receive, send)


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


def bearer(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else None


def create_app(
    store: Store,
    settings: Settings | None = None,
    *,
    secrets: str | Sequence[str] | None = None,
    allow_unsigned: bool | Collection[str] = False,
    metric_keys: Collection[str] | None = None,
    read_token: str | None = None,
    source_secrets: Mapping[str, str | Sequence[str]] | None = None,
    clock: Callable[[], float] = time.time,
    **options: Any,
) -> FastAPI:
    """Build the receiver app around an open ``store``.

    Pass ``settings`` (:class:`~analyzers.server.settings.Settings`), or the keywords that
    :meth:`Settings.build` takes (``secrets=None`` reads ``$DEPLOY_WEBHOOK_SECRET``;
    ``max_inflight=``, ``max_body=``, ``body_timeout_s=``, ... as in Settings). Without any
    secret every post is refused (401) unless ``allow_unsigned`` is True (every endpoint) or
    names the endpoint's source (``{"generic", "github", "gitlab", "argocd", "spinnaker",
    "grafana"}``); unsigned posts are then stored with ``signed=False``. With secrets *and*
    ``allow_unsigned``, a request that carries a signature must still carry a valid one.
    ``metric_keys``: the metric catalog (expectations naming other keys get 422).
    ``clock``: Unix seconds, injectable for signature-tolerance tests.
    """
    if settings is None:
        settings = Settings.build(secrets=secrets, allow_unsigned=allow_unsigned, metric_keys=metric_keys,
                                  read_token=read_token, source_secrets=source_secrets, **options)
    sec = settings.secrets
    src_secrets = settings.source_secrets
    keys = settings.metric_keys
    unsigned_sources = settings.allow_unsigned
    token = settings.read_token
    metrics = Metrics()
    ingestor = Ingestor(store, settings, metrics)

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
    app.state.settings = settings
    app.state.ingestor = ingestor

    @app.exception_handler(HTTPProblem)
    async def _problem_handler(request: Request, exc: HTTPProblem) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_handler(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("query", "path", "header", "body")]
        name = ".".join(loc) or None
        return error_response(HTTPProblem(422, f"{name or 'request'}: {first.get('msg', 'invalid')}", field=name))

    @app.exception_handler(AnalyzerError)
    async def _analyzer_handler(request: Request, exc: AnalyzerError) -> JSONResponse:
        return error_response(problem_from(exc))

    # -- authentication, headers first ------------------------------------------------
    def no_secret(name: str) -> Auth:
        if name in unsigned_sources:
            return False, None
        raise SignatureError(f"no secret configured for source {name}: set {ENV_SECRET}_{name.upper()} "
                             "or start the receiver allowing unsigned events")

    def hmac_check(secrets_: Sequence[str], request: Request) -> Callable[[bytes], Auth]:
        checked = verify_headers(request.headers, now=clock())  # refuses before the body
        return lambda body: (True, verify_body(secrets_, checked, body))

    def generic_pre(request: Request) -> Auth | Callable[[bytes], Auth]:
        has_sig = "webhook-signature" in request.headers
        unsigned_ok = "generic" in unsigned_sources
        if sec and (has_sig or not unsigned_ok):
            return hmac_check(sec, request)
        if not sec and not unsigned_ok:
            raise SignatureError(f"this receiver has no webhook secret: set {ENV_SECRET} (whsec_...) and sign "
                                 "requests, or start it explicitly allowing unsigned events")
        return False, request.headers.get("webhook-id") or None

    def github_pre(request: Request) -> Auth | Callable[[bytes], Auth]:
        delivery = request.headers.get("x-github-delivery")
        secrets_ = src_secrets.get("github")
        if secrets_:
            header = request.headers.get("x-hub-signature-256")
            if not (header or "").startswith("sha256="):
                verify_github(secrets_, None, b"")  # raises: names the missing header

            def check(body: bytes) -> Auth:
                verify_github(secrets_, header, body)
                return True, delivery
            return check
        return no_secret("github")[0], delivery

    def gitlab_pre(request: Request) -> Auth | Callable[[bytes], Auth]:
        secrets_ = src_secrets.get("gitlab")
        if "webhook-signature" in request.headers and secrets_:
            return hmac_check(secrets_, request)
        if secrets_:
            verify_token(secrets_, request.headers.get("x-gitlab-token"), header="X-Gitlab-Token")
            return True, request.headers.get("x-gitlab-event-uuid") or request.headers.get("idempotency-key")
        return no_secret("gitlab")[0], request.headers.get("x-gitlab-event-uuid")

    def bearer_pre(name: str) -> Callable[[Request], Auth]:
        def pre(request: Request) -> Auth:
            secrets_ = src_secrets.get(name)
            if secrets_:
                verify_token(secrets_, bearer(request), header="Authorization")
                return True, None
            return no_secret(name)
        return pre

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
        return await ingestor.ingest(request, "generic", generic_pre, None)

    fast_counters: dict[int, Any] = {}
    fast_latency = metrics.latency.labels("/webhooks/deploys")

    def failed(exc: BaseException) -> Response | None:
        """The answer to a post that raised ``exc`` (None: the sender is gone, nobody to answer)."""
        if isinstance(exc, HTTPProblem):
            return error_response(exc)
        if isinstance(exc, AnalyzerError):
            return error_response(problem_from(exc))
        if isinstance(exc, ClientDisconnect):  # the sender hung up before its body arrived: nothing stored
            metrics.requests.labels("POST", "/webhooks/deploys", "499").inc()
            return None
        log.error("unexpected error on POST /webhooks/deploys", exc_info=exc)
        return error_response(HTTPProblem(500, "internal error; the event was not stored", reason="internal"))

    def count(status: int, start: float) -> None:
        counter = fast_counters.get(status)
        if counter is None:  # labels() takes a lock and builds a key: once per status
            counter = fast_counters[status] = metrics.requests.labels("POST", "/webhooks/deploys", str(status))
        counter.inc()
        fast_latency.observe(time.perf_counter() - start)

    async def fast_post_deploy(scope: Any, receive: Any, send: Any) -> None:
        start = time.perf_counter()
        request = WebhookRequest(scope, receive)
        response: Response | None
        try:
            response = await post_deploy(request)
        except Exception as exc:
            response = failed(exc)
        if response is None:
            return
        await response(scope, receive, send)
        count(response.status_code, start)

    def direct_post_deploy(scope: Any, body: bytes, reply: Callable[[Any], None]) -> None:
        """``fast_post_deploy`` for a body that arrived whole (:mod:`analyzers.server.protocol`'s
        direct path): the same checks, answers and counts, without a task."""
        start = time.perf_counter()

        def done(outcome: Any) -> None:
            response = failed(outcome) if isinstance(outcome, BaseException) else outcome
            reply(response)
            if response is not None:
                count(response.status_code, start)

        ingestor.ingest_whole(DirectRequest(scope), body, "generic", generic_pre, done)

    app.fast_post = fast_post_deploy
    app.direct_post = direct_post_deploy if ingestor.committer.batched else None

    @app.post("/webhooks/github", status_code=201, openapi_extra=source_doc, summary="GitHub deployment / deployment_status events")
    async def post_github(request: Request) -> JSONResponse:
        return await ingestor.ingest(request, "github", github_pre,
                                     lambda d, r: sources.from_github(d, r.headers.get("x-github-event", ""),
                                                                      r.headers.get("x-github-delivery")))

    @app.post("/webhooks/gitlab", status_code=201, openapi_extra=source_doc, summary="GitLab deployment events")
    async def post_gitlab(request: Request) -> JSONResponse:
        return await ingestor.ingest(request, "gitlab", gitlab_pre, lambda d, r: sources.from_gitlab(d))

    @app.post("/webhooks/argocd", status_code=201, openapi_extra=source_doc, summary="Argo CD notifications (template JSON)")
    async def post_argocd(request: Request) -> JSONResponse:
        return await ingestor.ingest(request, "argocd", bearer_pre("argocd"), lambda d, r: sources.from_argocd(d))

    @app.post("/webhooks/spinnaker", status_code=201, openapi_extra=source_doc, summary="Spinnaker pipeline notifications")
    async def post_spinnaker(request: Request) -> JSONResponse:
        return await ingestor.ingest(request, "spinnaker", bearer_pre("spinnaker"),
                                     lambda d, r: sources.from_spinnaker(d))

    @app.post("/api/annotations", status_code=201, openapi_extra=source_doc, summary="Grafana annotation API shape")
    async def post_grafana(request: Request) -> JSONResponse:
        resp = await ingestor.ingest(request, "grafana", bearer_pre("grafana"),
                                     lambda d, r: sources.from_grafana_annotation(d))
        if resp.status_code in (200, 201):  # Grafana answers 200 {"message": "Annotation added", ...}
            return JSONResponse({**json.loads(bytes(resp.body)), "message": "Annotation added"}, status_code=200)
        return resp

    # -- read side ------------------------------------------------------------------
    def check_read(request: Request) -> None:
        if token is None:
            return
        given = bearer(request) or ""
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise HTTPProblem(401, "this endpoint needs Authorization: Bearer <read token> (serve --read-token / "
                                   "DEPLOY_READ_TOKEN)", field="authorization", headers={"WWW-Authenticate": "Bearer"})

    if settings.protect_metrics and token is not None:
        app.guard = check_read

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
            both = combined_verdict(*latest_pair(history))  # the combined answer, as /v1/deploys gives it
            return {"deploy": d.to_dict(), "verdict": both.to_dict() if both else None,
                    "verdict_history": [v.to_dict() for v in history]}

        item = await run_in_threadpool(fetch)
        if item is None:
            raise HTTPProblem(404, f"no deploy with id {deploy_id!r}", field="deploy_id")
        return JSONResponse(item)

    return app
