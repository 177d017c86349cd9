"""No secret in anything the worker stores: check errors, verdict reasons, delivery errors.

The real worker runs against a real SQLite store; Prometheus is configured with credentials and a
tenant key in its path and is unreachable (port 9 on loopback), and the chat route is a
Slack-style URL that cannot be reached either. The deploy page shows what the store holds, so the
store must hold no password, tenant key or webhook token.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from analyzers.config import NotifyRoute, default_config
from analyzers.events.store import open_store
from analyzers.model import Deploy
from analyzers.prometheus.client import PrometheusClient
from analyzers.server.worker import Worker

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
PASSWORD = "pa55w0rdSECRET"
TENANT = "t3nantKEY0123456789"
WEBHOOK_TOKEN = "kT9xQ2vWmZ8rYbN3cL5pJ7dF"


def test_the_worker_stores_no_secret_when_prometheus_and_chat_fail(tmp_path: Path) -> None:
    cfg = default_config().with_prometheus_url(f"http://scraper:{PASSWORD}@127.0.0.1:9/select/{TENANT}/prometheus")
    cfg = replace(cfg, routes=(NotifyRoute("oncall", f"http://127.0.0.1:9/services/T0123ABCD/B0456EFGH/{WEBHOOK_TOKEN}",
                                           "slack"),))
    store = open_store(f"sqlite:///{tmp_path}/deploys.db")
    try:
        deploy = Deploy(deploy_id="d1", service="checkout", environment="production", version="v1", started_at=T0,
                        status="succeeded", finished_at=T0 + timedelta(minutes=1))
        store.record_event("generic", "e1", {"n": 1}, deploy)
        worker = Worker(store, cfg, client=PrometheusClient(cfg.prometheus), clock=lambda: T0 + timedelta(hours=3),
                        deliver_fn=_deliver_without_waiting)
        worker.run_once()
        checks = store.list_checks("d1")
        stored = json.dumps({
            "checks": [c.error for c in checks],
            "verdicts": [v.to_dict() for v in store.verdict_history("d1")],
            "deliveries": store.deliveries("d1"),
        })
    finally:
        store.close()
    assert checks and all(c.state in ("done", "pending") for c in checks)
    assert "127.0.0.1" in stored  # the reader learns which server failed ...
    for secret in (PASSWORD, TENANT, WEBHOOK_TOKEN, "B0456EFGH"):
        assert secret not in stored, secret  # ... and nothing that opens it


def _deliver_without_waiting(*args: object, **kwargs: object) -> list:  # type: ignore[type-arg]
    """The real deliver, with its retry pauses skipped (the retries themselves still happen)."""
    from analyzers.delivery.notify import deliver

    return deliver(*args, **kwargs, sleep=lambda _s: None)  # type: ignore[arg-type]
