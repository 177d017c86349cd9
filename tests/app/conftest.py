"""Fixtures for the dashboard's AppTest tests: a real SQLite store filled through its API.

The deploys are placed relative to "now" (rounded to the minute) so the default 24 h
range of the Deploys page holds them. Pages that need Prometheus use the session fixture
``prom`` (tests/fixtures/prom.py); the others point ``PROMETHEUS_URL`` at a closed port so
an accidental query fails loudly instead of reaching some real server.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import streamlit as st

from analyzers.demo.promserver import free_port
from analyzers.events.store import open_store
from analyzers.model import Deploy, DeployVerdict, Expectation, MetricVerdict

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")

#: A description that would restyle the page or plant a link if rendered as Markdown/HTML.
HOSTILE_DESCRIPTION = '<script>alert(1)</script> **bold** [click](javascript:alert(1)) # heading'


@dataclass(frozen=True)
class StoreData:
    url: str
    now: datetime
    regression: Deploy
    improvement: Deploy
    release: Deploy
    unverified: Deploy


def _mv(metric: str, role: str, expect: str, outcome: str, reason: str, unit: str, effect: float,
        ci: tuple[float, float], p: float, at: datetime) -> MetricVerdict:
    return MetricVerdict(
        metric=metric,
        role=role,  # type: ignore[arg-type]
        expect=expect,
        outcome=outcome,  # type: ignore[arg-type]
        reason=reason,
        unit=unit,
        query=f'{metric}{{service="checkout"}}',
        result={
            "status": "shifted" if outcome in ("confirmed", "regressed", "opposite") else "unchanged",
            "direction": "increase" if effect > 0 else "decrease",
            "change_at": (at + timedelta(minutes=2)).isoformat(),
            "effect": effect,
            "effect_rel": 0.5,
            "effect_ci": list(ci),
            "p_value": p,
            "baseline": "previous_day",
            "reason": reason,
            "n_before": 180,
            "n_after": 30,
            "before_window": [(at - timedelta(hours=3)).isoformat(), at.isoformat()],
            "after_window": [at.isoformat(), (at + timedelta(minutes=30)).isoformat()],
            "method": "test-fixture",
        },
        p_adjusted=min(1.0, p * 2),
    )


def fill_store(url: str, now: datetime) -> StoreData:
    """Four deploys and their verdicts, written through the store API like the receiver does."""
    t_reg = now - timedelta(hours=3)
    t_imp = now - timedelta(hours=6)
    regression = Deploy(
        deploy_id="dep-regression", service="checkout", environment="production", version="v2.4.0",
        started_at=t_reg, finished_at=t_reg + timedelta(minutes=4), author="alice", commit_sha="abc1234",
        description=HOSTILE_DESCRIPTION,
    )
    improvement = Deploy(
        deploy_id="dep-improvement", service="search", environment="production", version="v7.1.0",
        started_at=t_imp, finished_at=t_imp + timedelta(minutes=3), author="bob",
        expectations=(Expectation("latency_p99", "decrease"),),
    )
    release = Deploy(
        deploy_id="rel-flag", service="payments", environment="staging", version="v3.0.0", kind="release",
        started_at=now - timedelta(hours=2), flag="new-router", flag_from="0%", flag_to="50%", signed=False,
    )
    unverified = Deploy(
        deploy_id="dep-unverified", service="checkout", environment="production", version="v2.4.1",
        started_at=now - timedelta(minutes=20), author="carol",
    )
    store = open_store(url)
    try:
        for i, d in enumerate((regression, improvement, release, unverified)):
            store.record_event("generic", f"evt-{i}", d.to_dict(), d)
        store.save_verdict(
            DeployVerdict(
                deploy_id=regression.deploy_id, overall="inconclusive", reason="Too few points after the deploy.",
                metrics=(), checked_at=t_reg + timedelta(minutes=10), service="checkout", version="v2.4.0",
            )
        )
        store.save_verdict(
            DeployVerdict(
                deploy_id=regression.deploy_id, overall="fail",
                reason="Guard error_ratio regressed: +4.10% errors after the deploy.",
                # The passing guard stored first: the page must still show the failing one first.
                metrics=(
                    _mv("latency_p99", "guard", "increase", "ok", "p99 latency unchanged.", "s", 0.002,
                        (-0.01, 0.012), 0.61, t_reg),
                    _mv("error_ratio", "guard", "increase", "regressed", "Error ratio rose from 0.5% to 4.6%.",
                        "ratio", 0.041, (0.035, 0.047), 1e-6, t_reg),
                ),
                checked_at=t_reg + timedelta(minutes=40), service="checkout", version="v2.4.0",
                warnings=("Overlapping deploys within 30m: search v7.0.9",),
            )
        )
        store.save_verdict(
            DeployVerdict(
                deploy_id=improvement.deploy_id, overall="pass", reason="latency_p99 fell as declared.",
                metrics=(
                    _mv("latency_p99", "expectation", "decrease", "confirmed", "p99 fell by 120 ms.", "s", -0.12,
                        (-0.14, -0.10), 1e-5, t_imp),
                ),
                checked_at=t_imp + timedelta(minutes=40), service="search", version="v7.1.0",
            )
        )
    finally:
        store.close()
    return StoreData(url, now, regression, improvement, release, unverified)


def save_rate_canary(data: StoreData, deploy: Deploy, metric: str, canary_events: float,
                     *before: DeployVerdict) -> None:
    """Store ``before`` verdicts, then a rate canary verdict on ``metric`` as the gate stores it:
    ``canary_events`` of 100 canary requests a minute against 10 of 1,000 baseline ones, 10 minutes."""
    import numpy as np

    from analyzers.stats.canary import compare_rates, judge
    from analyzers.verify.canary import CanaryReport, canary_verdict

    c = compare_rates(metric, np.full(10, canary_events), np.full(10, 10.0), np.full(10, 100.0),
                      np.full(10, 1000.0), alpha=0.005)
    rep = CanaryReport(judgement=judge([c]), start=deploy.started_at, end=data.now, queries={metric: ["q"]})
    store = open_store(data.url)
    try:
        for verdict in before:
            store.save_verdict(verdict)
        store.save_verdict(canary_verdict(deploy, rep, now=data.now))
    finally:
        store.close()


@pytest.fixture(autouse=True)
def _clear_streamlit_caches() -> Iterator[None]:
    """The data cache is shared across AppTest instances of one process: start each test clean."""
    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture
def closed_prometheus_url() -> str:
    """A loopback URL where nothing listens (connection refused)."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def store_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, closed_prometheus_url: str) -> StoreData:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    url = f"sqlite:///{tmp_path / 'deploys.db'}"
    data = fill_store(url, now)
    monkeypatch.delenv("ANALYZERS_CONFIG", raising=False)
    monkeypatch.setenv("DEPLOY_STORE_URL", url)
    monkeypatch.setenv("PROMETHEUS_URL", closed_prometheus_url)
    return data
