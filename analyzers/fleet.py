"""Verification at fleet scale: one range query per (service, metric, contiguous time range).

Verifying deploys one by one costs one ``query_range`` per deploy and metric, each covering
the deploy's history window; neighbouring deploys of one service fetch the same hours again
and again. :class:`BatchedFetcher` plans every window first, merges the windows of each
rendered query (one per service and metric, unless a template uses ``$version``) into
contiguous ranges, fetches each range once (split only where a range would exceed the
back end's 11,000-point cap), and serves each deploy a slice of it. :func:`verify_fleet` does
that one service at a time, so memory is bounded by the largest service, not the fleet.

Slices are taken on the same step-aligned grid the direct path uses, so a deploy gets the
same values either way (asserted by the tests).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pandas as pd

from .config import Config
from .errors import AnalyzerError
from .model import Deploy, DeployVerdict
from .verification import (
    DirectFetcher,
    align,
    analysis_window,
    fetch_grid,
    grid_series,
    metric_query,
    plan_metrics,
    verify_deploy,
)

if TYPE_CHECKING:
    from .prom import PrometheusClient

@dataclass
class _Range:
    start: float
    end: float


@dataclass
class _Cached:
    series: pd.Series
    warnings: list[tuple[float, float, tuple[str, ...]]] = field(default_factory=list)


def _merge(intervals: Iterable[tuple[float, float]], gap_s: float) -> list[_Range]:
    out: list[_Range] = []
    for s, e in sorted(intervals):
        if out and s <= out[-1].end + gap_s:
            out[-1].end = max(out[-1].end, e)
        else:
            out.append(_Range(s, e))
    return out


class BatchedFetcher:
    """Serves many deploys' windows from few range queries. Call :meth:`prefetch` first."""

    def __init__(self, client: PrometheusClient, step_s: float, *, merge_gap_s: float = 6 * 3600.0) -> None:
        self.client = client
        self.step_s = float(step_s)
        self.merge_gap_s = merge_gap_s
        self.cache: dict[str, _Cached] = {}
        self.errors: dict[str, AnalyzerError] = {}
        self.queries = 0
        self.points = 0
        self.fallback_queries = 0

    def _align(self, t: float, up: bool) -> float:
        return align(t, self.step_s, up=up)

    def prefetch(self, wanted: Iterable[tuple[str, str, datetime, datetime]]) -> None:
        """``wanted``: (query, metric_key, start, end) for every deploy and metric to verify."""
        by_query: dict[str, list[tuple[float, float]]] = defaultdict(list)
        keys: dict[str, str] = {}
        for query, key, start, end in wanted:
            by_query[query].append((self._align(start.timestamp(), False), self._align(end.timestamp(), True)))
            keys[query] = key
        for query, intervals in by_query.items():
            cached = _Cached(series=pd.Series(dtype=float))
            try:
                pieces = []
                for rng in _merge(intervals, self.merge_gap_s):
                    parts, warns, q, n = fetch_grid(self.client, query, keys[query], rng.start, rng.end, self.step_s)
                    self.queries += q
                    self.points += n
                    cached.warnings.extend(warns)
                    pieces.append(grid_series(parts, rng.start, rng.end, self.step_s))
            except AnalyzerError as exc:
                self.errors[query] = exc
                continue
            if pieces:
                cached.series = pd.concat(pieces).sort_index()
            self.cache[query] = cached

    def fetch(self, query: str, metric_key: str, start: datetime, end: datetime, step_s: float) -> tuple[pd.Series, tuple[str, ...]]:
        if query in self.errors:
            raise self.errors[query]
        cached = self.cache.get(query)
        a, b = self._align(start.timestamp(), False), self._align(end.timestamp(), True)
        if cached is None or step_s != self.step_s or cached.series.empty or (
            cached.series.index[0].timestamp() > a or cached.series.index[-1].timestamp() < b
        ):
            self.fallback_queries += 1
            direct = DirectFetcher(self.client)
            out = direct.fetch(query, metric_key, start, end, step_s)
            self.queries += direct.queries
            self.points += direct.points
            return out
        index = pd.date_range(pd.Timestamp(a, unit="s", tz="UTC"), pd.Timestamp(b, unit="s", tz="UTC"), freq=pd.Timedelta(seconds=self.step_s))
        part = cached.series.reindex(index)
        warns: list[str] = []
        for ws, we, w in cached.warnings:
            if ws <= b and we >= a:
                warns.extend(w)
        return part, tuple(warns)

    def clear(self) -> None:
        self.cache.clear()
        self.errors.clear()


@dataclass(frozen=True)
class FleetStats:
    deploys: int
    services: int
    queries: int
    points: int
    fallback_queries: int


def verify_fleet(
    deploys: Sequence[Deploy],
    config: Config,
    client: PrometheusClient,
    *,
    now: datetime | None = None,
    context: Sequence[Deploy] | None = None,
    on_verdict: Callable[[DeployVerdict], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[DeployVerdict], FleetStats]:
    """Verify many deploys with batched queries, one service at a time."""
    now = now or datetime.now(UTC)
    step = config.verification.step_s
    ordered = sorted(context if context is not None else deploys, key=lambda o: o.started_at)
    times = [o.started_at for o in ordered]
    by_service: dict[str, list[Deploy]] = defaultdict(list)
    for d in deploys:
        by_service[d.service].append(d)
    verdicts: list[DeployVerdict] = []
    fetcher = BatchedFetcher(client, step)
    overlap = timedelta(seconds=config.verification.overlap_s)
    for _service, group in sorted(by_service.items()):
        wanted = []
        for d in group:
            start, end = analysis_window(d, config, now)
            try:
                plans = plan_metrics(d, config)
            except AnalyzerError:
                continue
            for p in plans:
                try:
                    wanted.append((metric_query(config, p.spec.key, d, step_s=step), p.spec.key, start, end))
                except AnalyzerError:
                    continue
        fetcher.prefetch(wanted)
        for d in sorted(group, key=lambda x: x.started_at):
            lo = bisect_left(times, d.started_at - overlap)
            hi = bisect_right(times, d.started_at + overlap)
            near = ordered[lo:hi]
            v = verify_deploy(d, config, client, others=near, now=now, fetcher=fetcher)
            verdicts.append(v)
            if on_verdict is not None:
                on_verdict(v)
            if progress is not None:
                progress(1)
        fetcher.clear()
    stats = FleetStats(
        deploys=len(verdicts),
        services=len(by_service),
        queries=fetcher.queries,
        points=fetcher.points,
        fallback_queries=fetcher.fallback_queries,
    )
    return verdicts, stats
