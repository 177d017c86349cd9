"""Progressive-delivery gate on the receiver: Argo Rollouts ``web`` metric and Flagger webhooks.

``install_gate(app, store, config=..., client=...)`` adds:

* ``GET /v1/gate/{deploy_id}`` and ``GET /v1/gate?service=&version=[&environment=]`` (latest
  deploy of that service/version): the deploy's current verdict as JSON, answered 200 whatever
  the verdict so an Argo ``web`` metric reads it with ``jsonPath: "{$.verdict}"``,
  ``successCondition: result == "pass"``, ``failureCondition: result == "fail"``; anything
  else (``inconclusive``) meets neither and Argo counts the measurement inconclusive.
  404 for an unknown deploy (Argo: an error measurement), 401 without the token.
* ``POST /v1/gate/flagger?hook=<type>``: Flagger's webhook payload (``name``, ``namespace``,
  ``phase``, ``metadata``), answered by status code: ``pre-rollout`` 200 once the deploy event
  is stored; ``rollout`` 200 unless the verdict is ``fail`` (409); ``confirm-promotion`` 200
  only on ``pass`` (409 otherwise: Flagger keeps the canary and keeps checking);
  ``rollback`` 200 when the verdict is ``fail`` (Flagger then rolls back), 409 otherwise.
  The deploy is ``metadata.deploy_id``, else the latest deploy of service ``metadata.service``
  (default: the canary's ``name``), version ``metadata.version`` when given.

The verdict: the canary vs baseline judgement (computed on each request from Prometheus,
:mod:`analyzers.verify.canary`; always-valid, so polling often costs no error budget)
combined with the deploy's latest before/after verdict (either failing fails). A canary
verdict whose outcome differs from the last stored canary verdict is saved
(``check_kind="canary"``), so history and reports show it. Dry-run metrics appear under
``metrics`` with ``dry_run: true`` and in ``enforced_verdict`` (what enforcing them would
give) but never change ``verdict``.

Auth: ``Authorization: Bearer <token>`` (token from the environment variable named by
``[canary].gate_token_env``, else ``$DEPLOY_GATE_TOKEN``, or ``token=``), compared in constant time; Flagger cannot set
headers, so its payload may carry the token as ``metadata.token``. Without a configured token
the gate is open (read-only, but it runs queries: set one in production).

The change metrics (:mod:`analyzers.verify.dora`) and ``deploy_gate_answers_total{service,
verdict}`` are registered on the app's ``/metrics``.
"""

from __future__ import annotations

import hmac
import json
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from analyzers.config import Config
from analyzers.errors import ConfigError, StoreError
from analyzers.events.combined import combine
from analyzers.model import Deploy, DeployVerdict
from analyzers.verify.canary import safe_judge
from analyzers.verify.dora import ChangeMetricsCollector

FLAGGER_HOOKS = ("confirm-rollout", "pre-rollout", "rollout", "confirm-traffic-increase", "confirm-promotion",
                 "post-rollout", "rollback", "event")
_MAX_BODY = 65536
#: Gate token when ``[canary].gate_token_env`` names no other variable.
ENV_TOKEN = "DEPLOY_GATE_TOKEN"


def _problem(status: int, message: str, **extra: Any) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


def gate_token(config: Config, token: str | None) -> str | None:
    if token is not None:
        return token
    name = config.canary.gate_token_env
    if not name:
        return os.environ.get(ENV_TOKEN) or None
    value = os.environ.get(name)
    if not value:
        raise ConfigError(f"canary.gate_token_env names {name!r}, which is not set: export it or remove the key")
    return value


def _token_ok(expected: str | None, given: str | None) -> bool:
    if expected is None:
        return True
    return hmac.compare_digest((given or "").encode(), expected.encode())


def _bearer(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else None


def gate_payload(deploy: Deploy, canary: DeployVerdict | None, before_after: DeployVerdict | None,
                 now: datetime) -> dict[str, Any]:
    """The JSON the gate answers (shape documented in docs/progressive-delivery.md)."""
    verdict, reason = combine(canary, before_after)
    shadow = [m for m in (canary.metrics if canary else ()) if m.dry_run]
    enforced = verdict
    if any(m.outcome == "regressed" for m in shadow):
        enforced = "fail"
    elif verdict == "pass" and any(m.outcome != "ok" for m in shadow):
        enforced = "inconclusive"
    metrics = [
        {"metric": m.metric, "outcome": m.outcome, "dry_run": m.dry_run, "reason": m.reason,
         "ratio": (m.result or {}).get("ratio"), "ratio_ci": (m.result or {}).get("ratio_ci")}
        for m in (canary.metrics if canary else ())
    ]
    return {
        "deploy_id": deploy.deploy_id, "service": deploy.service, "environment": deploy.environment,
        "version": deploy.version, "verdict": verdict, "ok": verdict == "pass", "failed": verdict == "fail",
        "enforced_verdict": enforced, "reason": reason, "checked_at": now.isoformat().replace("+00:00", "Z"),
        "canary": None if canary is None else {"verdict": canary.overall, "reason": canary.reason},
        "before_after": None if before_after is None else {
            "verdict": before_after.overall, "reason": before_after.reason, "check_kind": before_after.check_kind},
        "metrics": metrics,
    }


def gate_answer(store: Any, deploy: Deploy, config: Config, client: Any, *, now: datetime, save: bool = True) -> dict[str, Any]:
    """Judge the canary now, combine with the latest before/after verdict, store it if its outcome changed."""
    history = store.verdict_history(deploy.deploy_id)
    before_after = next((v for v in reversed(history) if v.check_kind != "canary"), None)
    last_canary = next((v for v in reversed(history) if v.check_kind == "canary"), None)
    canary = safe_judge(deploy, config, client, now=now)
    if save and canary is not None and (last_canary is None or last_canary.overall != canary.overall):
        store.save_verdict(canary)
    return gate_payload(deploy, canary if canary is not None else last_canary, before_after, now)


def install_gate(
    app: FastAPI,
    store: Any,
    *,
    config: Config,
    client: Any = None,
    token: str | None = None,
    clock: Callable[[], float] = time.time,
    registry: Any = None,
) -> None:
    """Add the gate routes to ``app`` and the change metrics to its ``/metrics`` registry."""
    expected = gate_token(config, token)
    router = APIRouter()
    reg = registry if registry is not None else getattr(getattr(app.state, "metrics", None), "registry", None)
    answers = None
    if reg is not None:
        from prometheus_client import Counter

        reg.register(ChangeMetricsCollector(store, clock=clock))
        answers = Counter("deploy_gate_answers", "Gate answers by service and verdict (Argo, Flagger, CLI polls)",
                          ["service", "verdict"], registry=reg)

    def evaluate(deploy: Deploy) -> dict[str, Any]:
        body = gate_answer(store, deploy, config, client, now=datetime.fromtimestamp(clock(), tz=UTC))
        if answers is not None:
            answers.labels(deploy.service, body["verdict"]).inc()
        return body

    def find(service: str, version: str | None, environment: str | None) -> Deploy | None:
        for d in store.list_deploys(service=service, environment=environment, limit=200):
            if version is None or d.version == version:
                return d
        return None

    async def answer(deploy_lookup: Callable[[], Deploy | None], missing: str) -> tuple[int, dict[str, Any]]:
        def run() -> tuple[int, dict[str, Any]]:
            d = deploy_lookup()
            if d is None:
                return 404, {"error": missing}
            return 200, evaluate(d)

        try:
            return await run_in_threadpool(run)
        except StoreError as exc:
            return 503, {"error": f"deploy store unavailable: {exc}; the gate cannot decide, retry later"}

    @router.get("/v1/gate/{deploy_id}", summary="A deploy's current verdict (Argo Rollouts web metric)")
    async def gate_by_id(request: Request, deploy_id: str) -> JSONResponse:
        if not _token_ok(expected, _bearer(request)):
            return _problem(401, "the gate needs Authorization: Bearer <token> (see [canary].gate_token_env)")
        status, body = await answer(lambda: store.get_deploy(deploy_id),
                                    f"no deploy with id {deploy_id!r}: post the deploy event first")
        return JSONResponse(body, status_code=status)

    @router.get("/v1/gate", summary="The latest deploy of a service/version and its verdict")
    async def gate_by_service(request: Request, service: str, version: str | None = None,
                              environment: str | None = None) -> JSONResponse:
        if not _token_ok(expected, _bearer(request)):
            return _problem(401, "the gate needs Authorization: Bearer <token> (see [canary].gate_token_env)")
        status, body = await answer(lambda: find(service, version, environment),
                                    f"no deploy of service {service!r}" + (f" version {version!r}" if version else "")
                                    + ": post the deploy event first")
        return JSONResponse(body, status_code=status)

    @router.post("/v1/gate/flagger", summary="Flagger webhook: pre-rollout, rollout, confirm-promotion, rollback")
    async def gate_flagger(request: Request, hook: str = "rollout") -> JSONResponse:
        raw = await request.body()
        if len(raw) > _MAX_BODY:
            return _problem(413, f"payload over {_MAX_BODY} bytes")
        try:
            body = json.loads(raw)
        except ValueError:
            return _problem(400, "the body is not JSON: expected Flagger's webhook payload {name, namespace, phase, metadata}")
        if not isinstance(body, dict) or not isinstance(body.get("name"), str):
            return _problem(400, "expected Flagger's webhook payload with a string 'name' (the canary's name)")
        raw_meta = body.get("metadata")
        meta = {str(k): str(v) for k, v in raw_meta.items()} if isinstance(raw_meta, dict) else {}
        if not _token_ok(expected, _bearer(request) or meta.get("token")):
            return _problem(401, "the gate needs a token: Authorization: Bearer <token> or metadata.token")
        if hook not in FLAGGER_HOOKS:
            return _problem(422, f"unknown hook {hook!r}: use one of {', '.join(FLAGGER_HOOKS)}")
        service = meta.get("service") or body["name"]
        if meta.get("deploy_id"):
            lookup: Callable[[], Deploy | None] = lambda: store.get_deploy(meta["deploy_id"])  # noqa: E731
        else:
            lookup = lambda: find(service, meta.get("version"), meta.get("environment"))  # noqa: E731
        status, result = await answer(lookup, f"no deploy of service {service!r} recorded: post the deploy event first")
        if status != 200:
            return JSONResponse({**result, "hook": hook, "phase": body.get("phase")}, status_code=status)
        verdict = result["verdict"]
        go = {
            "confirm-promotion": verdict == "pass",
            "rollback": verdict == "fail",
            "rollout": verdict != "fail",
            "confirm-traffic-increase": verdict != "fail",
        }.get(hook, verdict != "fail")
        out = {"hook": hook, "phase": body.get("phase"), "go": go, **result}
        return JSONResponse(out, status_code=200 if go else 409)

    app.include_router(router)


def install_gate_from_env(app: FastAPI, store: Any) -> None:
    """The receiver's wiring: config from ``$ANALYZERS_CONFIG`` (or the default), its Prometheus."""
    from analyzers.config import load_config
    from analyzers.prometheus.client import PrometheusClient

    config = load_config()
    install_gate(app, store, config=config, client=PrometheusClient(config.prometheus))
