"""Dry-run: a shadow metric is computed, stored and reported, never fails; replay shows enforcing it.

The scenario's ``regression`` deploy fails on ``error_ratio`` (real Prometheus, seeded truth).
With ``error_ratio`` in dry-run for that service, the same data must give a verdict that does
not fail, a metric still judged ``regressed`` and marked dry-run, and ``replay`` must list the
deploy as one enforcing would fail.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from analyzers.config import ServiceSpec
from analyzers.events.store import open_store
from analyzers.prometheus.client import PrometheusClient
from analyzers.verify.deploy import verify_deploy

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _regression(prom: Any) -> Any:
    return next(d for d in prom.scenario.deploys if d.case == "regression")


def test_dry_run_metric_is_judged_but_never_fails(prom: Any, tmp_path: Path) -> None:
    sd = _regression(prom)
    service = sd.event["service"]
    from analyzers.events.schema import parse_event

    deploy = parse_event(sd.event).to_deploy(signed=True)
    client = PrometheusClient(prom.config.prometheus)
    enforced = verify_deploy(deploy, prom.config, client)
    assert enforced.overall == "fail"
    cfg = replace(prom.config, services={service: ServiceSpec(name=service, dry_run=("error_ratio",))})
    shadow = verify_deploy(deploy, cfg, client)
    err = next(m for m in shadow.metrics if m.metric == "error_ratio")
    assert err.dry_run and err.outcome == "regressed" and err.reason.startswith("[dry-run]")
    assert not err.failed
    assert shadow.overall != "fail"
    assert any("Dry-run metrics would fail this deploy" in w and "error_ratio" in w for w in shadow.warnings)
    # stored and read back with the mark
    store = open_store(f"sqlite:///{tmp_path / 'd.db'}")
    try:
        store.record_event("generic", "e1", sd.event, deploy)
        store.save_verdict(shadow)
        back = store.latest_verdict(deploy.deploy_id)
        assert back is not None
        assert next(m for m in back.metrics if m.metric == "error_ratio").dry_run
        assert back.overall == shadow.overall
    finally:
        store.close()


def test_replay_shows_what_enforcing_the_dry_run_would_do(prom: Any, tmp_path: Path) -> None:
    sd = _regression(prom)
    service = sd.event["service"]
    from analyzers.events.schema import parse_event

    deploy = parse_event(sd.event).to_deploy(signed=True)
    store_url = f"sqlite:///{tmp_path / 'r.db'}"
    store = open_store(store_url)
    store.record_event("generic", "e1", sd.event, deploy)
    store.close()
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[services.{service}]\ndry_run = ["error_ratio"]\n')
    r = subprocess.run([sys.executable, "-m", "analyzers", "replay", "--since", "30d", "--workers", "1", "--store",
                        store_url, "--config", str(cfg), "--prometheus-url", prom.url],
                       cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    assert "Dry-run metrics that would fail 1 deploy(s) if enforced:" in r.stdout, r.stdout
    assert f"{service} {deploy.version}: fail on error_ratio" in r.stdout, r.stdout
