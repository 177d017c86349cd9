"""Partial data from the back end (Thanos' partial_response warnings) makes the affected
verdicts inconclusive with the warning quoted: never a pass.

A loopback proxy in front of the real Prometheus adds the warning Thanos sends with HTTP 200
when a store is down (a real Prometheus cannot be made to produce it)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from analyzers.prometheus.client import PrometheusClient
from analyzers.verify.deploy import verify_deploy

pytestmark = pytest.mark.integration
WARNING = "partial response: store 10.0.3.7:10901 (eu-west-1b) is unavailable"


@pytest.fixture()
def thanos_like(prom: Any) -> Iterator[str]:
    upstream = prom.url

    class Proxy(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server API
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            resp = requests.post(upstream + self.path, data=body,
                                 headers={"content-type": self.headers.get("content-type", "")}, timeout=30)
            data = resp.json()
            data["warnings"] = [*data.get("warnings", []), WARNING]
            out = json.dumps(data).encode()
            self.send_response(resp.status_code)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("case", ["noop", "regression", "improvement"])
def test_partial_data_is_never_a_pass(prom: Any, thanos_like: str, case: str) -> None:
    cfg = prom.config.with_prometheus_url(thanos_like)
    deploy = prom.scenario.deploy(case).to_deploy()
    v = verify_deploy(deploy, cfg, PrometheusClient(cfg.prometheus))
    assert v.overall == "inconclusive", v.reason
    assert all(m.outcome == "inconclusive" for m in v.metrics)
    assert any(WARNING in w for w in v.warnings)
    assert all("partial data" in m.reason and WARNING in m.reason for m in v.metrics)
