"""Running the receiver: uvicorn, worker processes, the verification scheduler, shutdown.

::

    DEPLOY_WEBHOOK_SECRET=whsec_... python -m analyzers serve      # the CLI builds Settings, calls serve()
    python -m analyzers.server.receiver --port 8000 --store sqlite:///data/deploys.db

:func:`serve` checks the store in the foreground (a bad URL fails at once), then runs uvicorn
until SIGINT/SIGTERM (graceful: in-flight commits finish, at most 5 s). With ``workers > 1``
each worker is its own process on the same store; they receive the settings as one JSON
document in ``$ANALYZERS_RECEIVER_SETTINGS``.

Connection timeouts (what uvicorn does and does not cover):

- ``timeout_keep_alive`` (``keep_alive_s``): an idle connection *after an answer* closes.
- Not covered by uvicorn: a connection that never finishes its headers (slowloris) stays
  open forever, and a body may trickle in forever. :class:`~analyzers.server.protocol.ReceiverProtocol` closes a
  connection whose request headers are not complete within ``header_timeout_s`` of it
  opening (or of its previous answer); the body deadline is enforced in
  :mod:`analyzers.server.ingest` (408).
- uvicorn's ``limit_concurrency`` answers 503 to *everyone* past a count of connections,
  signed senders included, so it is left off: the receiver's own budgets (pre-auth body
  reads, authenticated in-flight events) decide who waits.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI

from analyzers.events.signatures import ENV_SECRET
from analyzers.events.store import open_store
from analyzers.server.app import create_app
from analyzers.server.protocol import ReceiverProtocol, process_settings
from analyzers.server.settings import DEFAULT_MAX_BODY, ENV_SETTINGS, Settings

log = logging.getLogger("analyzers.server.receiver")


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


def attach_worker(app: FastAPI, store_url: str, *, poll_s: float = 5.0, config_path: str | None = None) -> None:
    """Run the verification scheduler inside this receiver process (``serve --worker``).

    Verdicts are counted on this app's ``/metrics``: ``deploy_verdicts_total{service,overall}``
    and ``deploy_verification_seconds`` (time to verify one deploy).
    """
    from prometheus_client import Counter, Histogram

    from analyzers.config import load_config
    from analyzers.server.worker import start_background_worker

    registry = app.state.metrics.registry
    verdicts = Counter("deploy_verdicts", "Deploy verdicts produced, by service and result",
                       ["service", "overall"], registry=registry)
    seconds = Histogram("deploy_verification_seconds", "Time to verify one deploy", registry=registry,
                        buckets=(.1, .25, .5, 1, 2.5, 5, 10, 30, 60))

    def on_verdict(v: Any, elapsed_s: float) -> None:
        verdicts.labels(v.service, v.overall).inc()
        seconds.observe(elapsed_s)

    _thread, stop = start_background_worker(store_url, load_config(config_path), poll_s=poll_s, on_verdict=on_verdict)
    on_shutdown(app, stop.set)


def _setup_logging(level: str) -> None:
    pkg_log = logging.getLogger("analyzers")
    if not pkg_log.handlers:  # uvicorn configures only its own loggers
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
        pkg_log.addHandler(handler)
        pkg_log.setLevel(level.upper())


def app_from_settings(settings: Settings) -> FastAPI:
    """The app a uvicorn worker serves: opens the store, attaches the scheduler if asked."""
    _setup_logging(settings.log_level)
    store = open_store(settings.store_url)
    app = create_app(store, settings)
    if hasattr(store, "start_background_checkpoints"):  # SQLite: WAL checkpoints off the request path
        committer = app.state.ingestor.committer
        store.start_background_checkpoints(on_checkpoint=committer.log_checkpoint if committer.commit_log else None)
    on_shutdown(app, store.close)  # this factory opened the store, so it closes it
    on_shutdown(app, app.state.ingestor.committer.close)
    from analyzers.config import load_config
    from analyzers.prometheus.client import PrometheusClient
    from analyzers.server.gate import install_gate

    config = load_config(settings.config_path)
    install_gate(app, store, config=config, client=PrometheusClient(config.prometheus))  # /v1/gate/..., change metrics
    if settings.worker:
        attach_worker(app, settings.store_url, poll_s=settings.worker_poll_s, config_path=settings.config_path)
    # The start-up objects (modules, FastAPI's models: ~10^5) never die: move them out of the
    # collector's reach, so an old-generation collection no longer walks them all in the
    # middle of a request (a pause of several ms at the latency tail).
    gc.collect()
    gc.freeze()
    return app


def app_from_env() -> FastAPI:
    """uvicorn factory (``--factory analyzers.server.run:app_from_env``): the settings serve() handed down."""
    return app_from_settings(process_settings())


def serve(settings: Settings) -> None:
    """Serve the receiver with uvicorn until interrupted."""
    import uvicorn

    if not settings.secrets and "generic" not in settings.allow_unsigned:
        log.warning("no %s set: every webhook post will be refused (401)", ENV_SECRET)
    open_store(settings.store_url).close()  # fail now, in the foreground, on an unreachable store
    os.environ[ENV_SETTINGS] = settings.to_json()
    uvicorn.run("analyzers.server.run:app_from_env", factory=True, host=settings.host, port=settings.port,
                workers=settings.workers, log_level=settings.log_level, access_log=settings.access_log,
                proxy_headers=False,  # the receiver reads neither client address nor scheme: no per-request rewrite
                server_header=False,  # no "server: uvicorn" on every answer (one header less to write; no fingerprint)
                timeout_graceful_shutdown=5, timeout_keep_alive=int(max(1, settings.keep_alive_s)),
                http=ReceiverProtocol)


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``serve`` (shared by ``python -m analyzers serve`` and this module's CLI)."""
    p.add_argument("--host", default=os.environ.get("RECEIVER_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("RECEIVER_PORT", "8000")))
    p.add_argument("--store", help="sqlite:///path or postgresql://... (default: config store.url / $DEPLOY_STORE_URL)")
    p.add_argument("--config", help="TOML config (default: $ANALYZERS_CONFIG or built-in)")
    p.add_argument("--allow-unsigned", action="store_true", help="accept unsigned events from every source (marked unsigned)")
    p.add_argument("--allow-unsigned-source", action="append", metavar="SOURCE", default=[],
                   help="accept unsigned events from this source only, e.g. argocd (repeatable)")
    p.add_argument("--max-body", type=int, default=DEFAULT_MAX_BODY,
                   help="largest accepted body in bytes, after gzip (default 256 KiB)")
    p.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.add_argument("--worker", action="store_true", help="also run the verification scheduler in this process")
    p.add_argument("--access-log", action="store_true", default=None,
                   help="log one line per request (off by default: it costs CPU on every event)")
    p.add_argument("--read-token", default=None,
                   help="bearer token for /v1/* (default: $DEPLOY_READ_TOKEN, or config receiver.read_token_env); "
                        "prefer the environment: a flag is visible in the process list")
    p.add_argument("--protect-metrics", action="store_true", default=None,
                   help="the read token also guards /metrics and /openapi.json")
    p.add_argument("--header-timeout", type=float, default=None, metavar="S",
                   help="close a connection whose request headers take longer (default 10)")
    p.add_argument("--body-timeout", type=float, default=None, metavar="S",
                   help="answer 408 when a body takes longer to arrive (default 10)")
    p.add_argument("--max-inflight", type=int, default=None,
                   help="authenticated events parsed or committed at once before 503 (default 64)")
    p.add_argument("--max-body-reads", type=int, default=None,
                   help="bodies read at once before authentication; when full the slowest is cut off (default 256)")


def settings_from_args(args: argparse.Namespace) -> Settings:
    from analyzers.config import load_config

    cfg = load_config(args.config)
    if getattr(args, "prometheus_url", None):
        cfg = cfg.with_prometheus_url(args.prometheus_url)
    unsigned: bool | frozenset[str] = True if args.allow_unsigned else frozenset(args.allow_unsigned_source or ())
    return Settings.build(
        config=cfg, allow_unsigned=unsigned, metric_keys=sorted(cfg.metrics), read_token=args.read_token,
        host=args.host, port=args.port, store_url=args.store, max_body=args.max_body, workers=args.workers,
        log_level=args.log_level, worker=bool(args.worker) or None, protect_metrics=args.protect_metrics,
        header_timeout_s=args.header_timeout, body_timeout_s=args.body_timeout, max_inflight=args.max_inflight,
        max_body_reads=args.max_body_reads, access_log=getattr(args, "access_log", None),
    )


def cli(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m analyzers.server.receiver", description="Run the deploy webhook receiver.")
    add_serve_arguments(p)
    serve(settings_from_args(p.parse_args(argv)))
