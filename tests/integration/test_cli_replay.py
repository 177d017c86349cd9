"""``replay`` against the real Prometheus of the ``prom`` fixture: it re-runs the before/after check,
so it is compared with the stored before/after verdict, never with a canary's (a canary that failed
must not read as "fail -> pass" under an unchanged config)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from analyzers.cli import main
from analyzers.events.schema import parse_event
from analyzers.events.store import open_store
from analyzers.stats.canary import compare_rates, judge
from analyzers.verify.canary import CanaryReport, canary_verdict

pytestmark = pytest.mark.integration


def test_replay_compares_before_after_with_before_after_not_with_a_failed_canary(
    prom: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANALYZERS_CONFIG", raising=False)
    sd = prom.scenario.deploys[0]
    deploy = parse_event(sd.event).to_deploy(signed=True)
    url = f"sqlite:///{tmp_path / 'deploys.db'}"
    store = open_store(url)
    try:
        store.record_event("generic", "replay-1", sd.event, deploy)
    finally:
        store.close()
    args = ["replay", "--store", url, "--prometheus-url", prom.url, "--service", deploy.service,
            "--since", (deploy.started_at - timedelta(minutes=1)).isoformat(), "--workers", "1"]
    assert main([*args, "--save"]) == 0  # the before/after verdicts of today's config, stored
    capsys.readouterr()

    c = compare_rates("error_ratio", np.full(10, 30.0), np.full(10, 10.0), np.full(10, 100.0), np.full(10, 1000.0),
                      alpha=0.005)  # then the gate stored a failed canary: the deploy's verdict is now a fail
    rep = CanaryReport(judgement=judge([c]), start=deploy.started_at, end=deploy.started_at + timedelta(minutes=10),
                       queries={"error_ratio": ["q"]})
    store = open_store(url)
    try:
        store.save_verdict(canary_verdict(deploy, rep, now=deploy.started_at + timedelta(minutes=11)))
        assert store.latest_verdicts([deploy.deploy_id])[deploy.deploy_id].overall == "fail"
    finally:
        store.close()

    assert main(args) == 0
    out = capsys.readouterr().out
    assert "0 of them differ from the stored before/after verdicts" in out, out  # same config, same verdicts
    assert "fail ->" not in out
