"""A later look at a deploy (``verify --wait`` polls, the scheduler, a dashboard re-verify) asks the
back end only for the steps after what it holds, and gives the verdict a full fetch gives.

The client here answers range queries from a formula of the step's time (a log-normal latency per
minute with a daily cycle, twelve bucket bounds, and a value for every other catalog query) and
records every request: what a verification asks for is counted where it is sent. Late data is
simulated by leaving the newest steps empty until the (simulated) wall clock has passed them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy.special import ndtr

from analyzers.config import PrometheusSettings, default_config
from analyzers.errors import PrometheusUnreachable
from analyzers.model import Deploy
from analyzers.prometheus.results import PromSeries, QueryResult
from analyzers.verify import span_cache
from analyzers.verify.deploy import DirectFetcher, verify_deploy
from analyzers.verify.span_cache import SpanCache

LES = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
DEPLOY_AT = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def _noise(t: np.ndarray, salt: float) -> np.ndarray:
    """A deterministic value in [-1, 1) per time: the same step answers the same, however fetched."""
    x = np.sin(t * 12.9898 + salt) * 43758.5453
    return 2.0 * (x - np.floor(x)) - 1.0


class RecordingClient:
    """Answers ``query_range`` from formulas of time and records (query, start, end, points)."""

    def __init__(self, url: str = "http://127.0.0.1:9") -> None:
        self.settings = PrometheusSettings(url=url)
        self.base_url = self.settings.base_url
        self.calls: list[tuple[str, float, float, int]] = []
        self.wall: float | None = None  # steps later than wall - 120 s have no data yet (late samples)
        self.slower_after: datetime | None = None  # every request x1.4 from here on

    def points(self) -> int:
        return sum(c[3] for c in self.calls)

    def query_range(self, query: str, start: datetime, end: datetime, step_s: float | None = None,
                    **_: Any) -> QueryResult:
        step = float(step_s or 60.0)
        t = np.arange(start.timestamp(), end.timestamp() + 1e-6, step)
        if self.wall is not None:
            t = t[t <= self.wall - 120.0]
        index = pd.DatetimeIndex(pd.to_datetime(t, unit="s", utc=True))
        if "sum by (le)" in query and "histogram_quantile" not in query:
            day = 2 * np.pi * t / 86400.0
            log_median = np.log(0.1) + 0.15 * np.sin(day) + 0.04 * _noise(t, 1.0)
            if self.slower_after is not None:
                log_median = log_median + np.log(1.4) * (t >= self.slower_after.timestamp())
            requests = 600.0 + 50.0 * _noise(t, 2.0)
            series = [PromSeries({"le": f"{le:g}"}, pd.Series(np.round(requests * ndtr((np.log(le) - log_median) / 0.5)),
                                                               index=index))
                      for le in LES]
            series.append(PromSeries({"le": "+Inf"}, pd.Series(np.round(requests), index=index)))
        else:
            salt = float(sum(map(ord, query)) % 97)
            series = [PromSeries({}, pd.Series(1.0 + 0.01 * _noise(t, salt), index=index))]
        self.calls.append((query, start.timestamp(), end.timestamp(), sum(len(s.values) for s in series)))
        return QueryResult(query, tuple(series), (), step, start, end, "matrix")


def _deploy() -> Deploy:
    return Deploy(deploy_id="d-cache", service="checkout", environment="production", version="v2",
                  started_at=DEPLOY_AT)


def _metrics(v: Any) -> list[dict[str, Any]]:
    return [m.to_dict() for m in v.metrics]


def test_a_second_look_asks_only_for_the_new_steps() -> None:
    """The default path (``verify --wait``, the scheduler): the first look fetches the analysis
    window (8 days of history at the 1-minute step, twelve bucket series for ``latency_shift``),
    a look 30 s later fetches the new steps only, and gives what a full fetch gives."""
    config = default_config()
    span_cache.SHARED.clear()
    client = RecordingClient()
    d = _deploy()
    first = verify_deploy(d, config, client, now=DEPLOY_AT + timedelta(minutes=20))  # type: ignore[arg-type]
    calls_first, points_first = len(client.calls), client.points()
    bucket_points = sum(c[3] for c in client.calls if "sum by (le) (increase" in c[0])
    assert bucket_points >= 12 * 8 * 1440  # the guard's query: twelve bounds over 8 days and the windows
    now2 = DEPLOY_AT + timedelta(minutes=20, seconds=30)
    second = verify_deploy(d, config, client, now=now2)  # type: ignore[arg-type]
    calls_second = client.calls[calls_first:]
    points_second = client.points() - points_first
    assert first.overall == second.overall
    # every range query of the second look starts where the first one's answer ended
    assert calls_second and all(c[1] >= (DEPLOY_AT + timedelta(minutes=20)).timestamp() for c in calls_second)
    assert points_second <= 13 * 2 * len(calls_second), (points_second, points_first)
    assert points_second < points_first / 1000
    full = verify_deploy(d, config, client, now=now2, fetcher=DirectFetcher(client, cache=None))  # type: ignore[arg-type]
    assert _metrics(full) == _metrics(second)
    assert full.overall == second.overall and full.reason == second.reason


def test_steps_not_yet_settled_are_fetched_again_and_late_data_counts() -> None:
    """Looks every 30 s through a regression, data arriving 2 minutes late: each look's verdict is
    the one a full fetch gives at that moment (the newest 5 minutes are asked for again every time)."""
    config = default_config()
    client = RecordingClient()
    client.slower_after = DEPLOY_AT + timedelta(minutes=3)
    d = _deploy()
    wall = {"t": 0.0}
    fetcher = DirectFetcher(client, cache=SpanCache(clock=lambda: wall["t"]))  # type: ignore[arg-type]
    outcomes = []
    for k in range(0, 5):
        now = DEPLOY_AT + timedelta(minutes=14, seconds=30 * k)
        wall["t"] = client.wall = now.timestamp()
        cached = verify_deploy(d, config, client, now=now, fetcher=fetcher)  # type: ignore[arg-type]
        full = verify_deploy(d, config, client, now=now, fetcher=DirectFetcher(client, cache=None))  # type: ignore[arg-type]
        assert _metrics(cached) == _metrics(full), k
        outcomes.append(next(m.outcome for m in cached.metrics if m.metric == "latency_shift"))
    assert outcomes[-1] == "regressed", outcomes  # the data say x1.4: the cache does not hide it
    later = [c for c in client.calls if c[1] > (DEPLOY_AT - timedelta(hours=1)).timestamp()]
    assert later, "the later looks ask only for the recent steps"


def test_answers_with_warnings_are_not_kept_and_new_columns_refetch_the_span() -> None:
    cache = SpanCache(clock=lambda: 1e12)
    asked: list[tuple[float, float]] = []

    def fetch_with(cols: tuple[str, ...], warns: tuple[str, ...]) -> Any:
        def fetch(a: float, b: float) -> Any:
            asked.append((a, b))
            n = int((b - a) // 60) + 1
            return cols, np.ones((n, len(cols))), warns, 1, n * len(cols)
        return fetch

    key = ("server", "q")
    cache.get_span(key, 0.0, 600.0, 60.0, fetch_with(("a",), ("partial data",)))
    assert len(cache) == 0  # partial data: never kept
    cache.get_span(key, 0.0, 600.0, 60.0, fetch_with(("a",), ()))
    assert len(cache) == 1 and asked[-1] == (0.0, 600.0)
    cols, values, _, q, _ = cache.get_span(key, 0.0, 300.0, 60.0, fetch_with(("a",), ()))
    assert q == 1 and values.shape == (6, 1) and asked[-1] == (300.0, 300.0)  # held: only the last step asked
    cols, values, _, q, _ = cache.get_span(key, 0.0, 900.0, 60.0, fetch_with(("a", "b"), ()))
    assert cols == ("a", "b") and values.shape == (16, 2)
    assert asked[-2:] == [(660.0, 900.0), (0.0, 900.0)]  # a column appeared: the whole span again


def test_a_look_served_from_the_cache_still_sees_prometheus_down() -> None:
    """Everything held (a re-verify after the window's end): the server is still asked, and an
    unreachable one is "could not check" (raised), never a verdict from what was held."""
    config = default_config()
    client = RecordingClient()
    fetcher = DirectFetcher(client, cache=SpanCache(clock=lambda: 1e12))  # type: ignore[arg-type]
    d = _deploy()
    done = DEPLOY_AT + timedelta(hours=2)  # past the horizon: every look fetches the same span
    verify_deploy(d, config, client, now=done, fetcher=fetcher)  # type: ignore[arg-type]

    def down(*_: Any, **__: Any) -> QueryResult:
        raise PrometheusUnreachable("connection refused", url=client.base_url)

    client.query_range = down  # type: ignore[method-assign]
    with pytest.raises(PrometheusUnreachable):
        verify_deploy(d, config, client, now=done, fetcher=fetcher)  # type: ignore[arg-type]


def test_the_cache_is_bounded_and_keyed_by_server() -> None:
    cache = SpanCache(clock=lambda: 1e12, max_cells=2_000)

    def fetch(a: float, b: float) -> Any:
        n = int((b - a) // 60) + 1
        return ("v",), np.full((n, 1), a), (), 1, n

    for i in range(5):
        cache.get_span(("s", i), 0.0, 60.0 * 599, 60.0, fetch)  # 600 cells each
    assert cache.cells <= 2_000 and len(cache) == 3
    a = RecordingClient("http://127.0.0.1:9090")
    b = RecordingClient("http://127.0.0.1:9091")
    assert span_cache.server_key(a) != span_cache.server_key(b)
    assert span_cache.server_key(object()) is None  # a client that does not name its server: never kept
