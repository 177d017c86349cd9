"""Change metrics (deploy frequency, change failure rate, time to restore) from stored deploys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from analyzers.model import Deploy, DeployVerdict
from analyzers.verify.dora import change_metrics, weekly_trend

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def _d(i: int, hours: float, *, service: str = "checkout", status: str = "succeeded", kind: str = "deploy",
       finished: float | None = None) -> Deploy:
    return Deploy(deploy_id=f"{service}-{i}", service=service, environment="production", version=f"v{i}",
                  started_at=T0 + timedelta(hours=hours), status=status, kind=kind,  # type: ignore[arg-type]
                  finished_at=None if finished is None else T0 + timedelta(hours=finished))


def _v(d: Deploy, overall: str) -> DeployVerdict:
    return DeployVerdict(deploy_id=d.deploy_id, overall=overall, reason="", metrics=(),  # type: ignore[arg-type]
                         checked_at=d.started_at)


def test_frequency_failure_rate_and_restore_times() -> None:
    ds = [
        _d(1, 0), _d(2, 24),                       # pass, fail -> restored by d3's pass 24 h later
        _d(3, 48), _d(4, 72, status="rolled_back", finished=72.5),  # rollback restores in 30 min
        _d(5, 96), _d(6, 120, kind="release"),      # d5 fails, not restored; a flag release is not a deploy
        _d(7, 130, service="search"),
    ]
    verdicts = {ds[0].deploy_id: _v(ds[0], "pass"), ds[1].deploy_id: _v(ds[1], "fail"),
                ds[2].deploy_id: _v(ds[2], "pass"), ds[4].deploy_id: _v(ds[4], "fail"),
                ds[6].deploy_id: _v(ds[6], "inconclusive")}
    per = change_metrics(ds, verdicts, start=T0, end=T0 + timedelta(days=10))
    c = per["checkout"]
    assert c.deploys == 5
    assert c.deploys_per_day == pytest.approx(0.5)
    assert c.failures == 3 and c.rollbacks == 1
    assert c.change_failure_rate == pytest.approx(0.6)
    assert sorted(c.restore_s) == [1800.0, 86400.0]
    assert c.open_failures == 1
    assert c.median_restore_s == pytest.approx((1800 + 86400) / 2)
    s = per["search"]
    assert s.deploys == 1 and s.failures == 0 and s.change_failure_rate == 0.0 and s.median_restore_s is None


def test_restore_only_within_the_same_environment() -> None:
    bad = _d(1, 0)
    staging_pass = Deploy(deploy_id="x", service="checkout", environment="staging", version="v2",
                          started_at=T0 + timedelta(hours=1))
    per = change_metrics([bad, staging_pass], {bad.deploy_id: _v(bad, "fail"), "x": _v(staging_pass, "pass")},
                         start=T0, end=T0 + timedelta(days=1))
    assert per["checkout"].open_failures == 1


def test_weekly_trend_oldest_first_with_empty_weeks() -> None:
    ds = [_d(i, 24 * 7 * i) for i in range(3)]
    trend = weekly_trend(ds, {d.deploy_id: _v(d, "pass") for d in ds}, end=T0 + timedelta(weeks=4), weeks=4)
    assert [m.deploys for m in trend] == [1, 1, 1, 0]
    assert trend[0].start < trend[-1].start
    assert all(m.service == "*" for m in trend)
