"""The final check never runs before the sequential horizon, where every look's decision is
frozen: otherwise a "final" verdict could still change afterwards."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from analyzers.config import default_config
from analyzers.model import Deploy
from analyzers.server.worker import final_due

T0 = datetime(2026, 3, 8, 6, 30, tzinfo=UTC)


def _deploy(finished_after_min: float | None) -> Deploy:
    return Deploy(deploy_id="d1", service="checkout", environment="production", version="v2",
                  started_at=T0, status="started",
                  finished_at=None if finished_after_min is None else T0 + timedelta(minutes=finished_after_min))


def test_default_observation_time_decides_when_it_is_longer_than_the_horizon():
    cfg = default_config()
    assert final_due(_deploy(None), cfg) == T0 + timedelta(seconds=cfg.verification.observation_s)


def test_a_short_observation_time_still_waits_for_the_window_and_the_ramp():
    cfg = default_config()
    cfg = replace(cfg, verification=replace(cfg.verification, observation_s=600.0, window_after_s=1800.0))
    # rollout duration unknown: a 30 min ramp is assumed
    assert final_due(_deploy(None), cfg) == T0 + timedelta(seconds=1800 + 1800 + 60)
    # a rollout that took 10 minutes: horizon = 30 min window + 10 min ramp
    assert final_due(_deploy(10), cfg) == T0 + timedelta(seconds=1800 + 600 + 60)
