"""Verification at fleet scale: one range query per (service, metric, contiguous time range).

Verifying deploys one by one costs one ``query_range`` per deploy and metric, each covering
the deploy's history window; neighbouring deploys of one service fetch the same hours again
and again. :class:`BatchedFetcher` plans every window first, merges the windows of each
rendered query (one per service and metric, unless a template uses ``$version``) into
contiguous ranges, fetches each range once (split only where a range would exceed the
back end's 11,000-point cap), and serves each deploy a slice of it; so too for the bucket counts
per bound that ``latency_shift`` reads (:meth:`BatchedFetcher.prefetch_buckets`). :func:`verify_fleet` does
that one service at a time, so memory is bounded by the largest service, not the fleet.

Two things keep a fleet replay fast without changing any verdict:

* while one service is verified, a thread already fetches the next service's ranges, so
  the back end's evaluation overlaps the statistics (``prefetch_ahead``);
* ``workers=N`` verifies services in N processes (the statistics hold the GIL, so threads
  cannot share them out); every service is independent, and verdicts come back in the same
  order as with one process.

Slices are taken on the same step-aligned grid the direct path uses, so a deploy gets the
same values either way (asserted by the tests).
"""

from __future__ import annotations

import multiprocessing
import sys
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pandas as pd

from analyzers.config import Config
from analyzers.errors import AnalyzerError
from analyzers.model import Deploy, DeployVerdict
from analyzers.verify.deploy import (
    DirectFetcher,
    align,
    analysis_window,
    fetch_grid,
    grid_series,
    metric_query,
    plan_metrics,
    verify_deploy,
)
from analyzers.verify.fetch import BucketGrid, bucket_grid_span

if TYPE_CHECKING:
    from analyzers.prometheus.client import PrometheusClient

_T = TypeVar("_T")


@dataclass
class _Range:
    start: float
    end: float


@dataclass
class _Cached:
    """One query's fetched ranges: ``starts[i]``/``ends[i]`` (aligned seconds) and the values on the step grid."""

    starts: list[float] = field(default_factory=list)
    ends: list[float] = field(default_factory=list)
    values: list[np.ndarray] = field(default_factory=list)
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
        self.bucket_ranges: dict[str, list[tuple[float, float, BucketGrid]]] = {}
        self.errors: dict[str, AnalyzerError] = {}
        self.queries = 0
        self.points = 0
        self.fallback_queries = 0

    def _align(self, t: float, up: bool) -> float:
        return align(t, self.step_s, up=up)

    def _index(self, a: float, b: float) -> pd.DatetimeIndex:
        """The step grid from ``a`` to ``b`` (Unix seconds, both on the grid), in UTC."""
        return pd.date_range(pd.Timestamp(a, unit="s", tz="UTC"), pd.Timestamp(b, unit="s", tz="UTC"),
                             freq=pd.Timedelta(seconds=self.step_s))

    def _fallback(self, fetch: Callable[[DirectFetcher], _T]) -> _T:
        """A window the prefetch did not hold: fetched on its own, counted with the rest."""
        self.fallback_queries += 1
        direct = DirectFetcher(self.client, cache=None)  # each deploy is looked at once here
        out = fetch(direct)
        self.queries += direct.queries
        self.points += direct.points
        return out

    def _spans_by_query(self, wanted: Iterable[tuple[str, str, datetime, datetime]]
                        ) -> tuple[dict[str, list[tuple[float, float]]], dict[str, str]]:
        """Step-aligned (start, end) spans per query, and each query's metric key."""
        by_query: dict[str, list[tuple[float, float]]] = defaultdict(list)
        keys: dict[str, str] = {}
        for query, key, start, end in wanted:
            by_query[query].append((self._align(start.timestamp(), False), self._align(end.timestamp(), True)))
            keys[query] = key
        return by_query, keys

    def prefetch(self, wanted: Iterable[tuple[str, str, datetime, datetime]]) -> None:
        """``wanted``: (query, metric_key, start, end) for every deploy and metric to verify."""
        by_query, keys = self._spans_by_query(wanted)
        for query, intervals in by_query.items():
            cached = _Cached()
            try:
                for rng in _merge(intervals, self.merge_gap_s):
                    parts, warns, q, n = fetch_grid(self.client, query, keys[query], rng.start, rng.end, self.step_s)
                    self.queries += q
                    self.points += n
                    cached.warnings.extend(warns)
                    cached.starts.append(rng.start)
                    cached.ends.append(rng.end)
                    cached.values.append(grid_series(parts, rng.start, rng.end, self.step_s).to_numpy(dtype=float))
            except AnalyzerError as exc:
                self.errors[query] = exc
                continue
            self.cache[query] = cached

    def fetch(self, query: str, metric_key: str, start: datetime, end: datetime, step_s: float) -> tuple[pd.Series, tuple[str, ...]]:
        if query in self.errors:
            raise self.errors[query]
        cached = self.cache.get(query)
        a, b = self._align(start.timestamp(), False), self._align(end.timestamp(), True)
        i = bisect_right(cached.starts, a) - 1 if cached is not None else -1
        if cached is None or step_s != self.step_s or i < 0 or cached.ends[i] < b:
            return self._fallback(lambda d: d.fetch(query, metric_key, start, end, step_s))
        # The range is on the same grid as the deploy's window: slice by position.
        lo = round((a - cached.starts[i]) / self.step_s)
        hi = round((b - cached.starts[i]) / self.step_s) + 1
        index = self._index(a, b)
        part = pd.Series(cached.values[i][lo:hi].copy(), index=index, dtype=float)
        warns: list[str] = []
        for ws, we, w in cached.warnings:
            if ws <= b and we >= a:
                warns.extend(w)
        return part, tuple(warns)

    def prefetch_buckets(self, wanted: Iterable[tuple[str, str, datetime, datetime]]) -> None:
        """As :meth:`prefetch` for bucket-count queries (``latency_shift``: one series per bound).
        A range whose answer came with warnings is not kept: its deploys fetch their own window."""
        by_query, keys = self._spans_by_query(wanted)
        for query, intervals in by_query.items():
            for rng in _merge(intervals, self.merge_gap_s):
                try:
                    grid, warns, q, n = bucket_grid_span(self.client, query, keys[query], rng.start, rng.end, self.step_s)
                except AnalyzerError:
                    break  # each deploy's own fetch reports it
                self.queries += q
                self.points += n
                if not warns:
                    self.bucket_ranges.setdefault(query, []).append((rng.start, rng.end, grid))

    def fetch_buckets(self, query: str, metric_key: str, start: datetime, end: datetime,
                      step_s: float) -> tuple[BucketGrid, tuple[str, ...]]:
        """Bucket counts per bound (``latency_shift``): a slice of a prefetched range (the bounds
        with no count in the deploy's window left out, as the back end leaves them out), else one
        range query for the deploy's window."""
        a, b = self._align(start.timestamp(), False), self._align(end.timestamp(), True)
        for ra, rb, grid in self.bucket_ranges.get(query, ()):
            if step_s == self.step_s and ra <= a and b <= rb:
                lo = round((a - ra) / self.step_s)
                hi = round((b - ra) / self.step_s) + 1
                counts = grid.counts[lo:hi]
                keep = np.isfinite(counts).any(axis=0)
                les = tuple(le for le, k in zip(grid.les, keep, strict=True) if k)
                index = self._index(a, b)
                return BucketGrid(les, counts[:, keep].copy(), index), ()
        return self._fallback(lambda d: d.fetch_buckets(query, metric_key, start, end, step_s))

    def clear(self) -> None:
        self.cache.clear()
        self.bucket_ranges.clear()
        self.errors.clear()


@dataclass(frozen=True)
class FleetStats:
    deploys: int
    services: int
    queries: int
    points: int
    fallback_queries: int


def _wanted(group: Sequence[Deploy], config: Config, now: datetime, *,
            buckets: bool = False) -> list[tuple[str, str, datetime, datetime]]:
    """(query, metric, start, end) of every deploy and metric: the one-series queries, or with
    ``buckets`` the bucket-count queries of ``read_quantile`` metrics (one series per bound)."""
    step = config.verification.step_s
    wanted = []
    for d in group:
        start, end = analysis_window(d, config, now)
        try:
            plans = plan_metrics(d, config)
        except AnalyzerError:
            continue
        for p in plans:
            if (p.spec.read_quantile is not None) != buckets:
                continue
            try:
                wanted.append((metric_query(config, p.spec.key, d, step_s=step), p.spec.key, start, end))
            except AnalyzerError:
                continue
    return wanted


@dataclass
class _Run:
    """What one process needs to verify services: the config, a client and the deploys around."""

    config: Config
    client: PrometheusClient
    now: datetime
    ordered: list[Deploy]
    times: list[datetime]
    prefetch_ahead: bool


def _prefetched(run: _Run, group: Sequence[Deploy]) -> BatchedFetcher:
    fetcher = BatchedFetcher(run.client, run.config.verification.step_s)
    fetcher.prefetch(_wanted(group, run.config, run.now))
    fetcher.prefetch_buckets(_wanted(group, run.config, run.now, buckets=True))
    return fetcher


def _verify_groups(run: _Run, groups: Sequence[Sequence[Deploy]]) -> Iterator[tuple[list[DeployVerdict], BatchedFetcher]]:
    """Verdicts of each group (one service), in order; the next group's ranges are fetched meanwhile."""
    overlap = timedelta(seconds=run.config.verification.overlap_s)
    ahead = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fleet-prefetch") if run.prefetch_ahead else None
    try:
        pending: Future[BatchedFetcher] | None = None
        for k, group in enumerate(groups):
            fetcher = pending.result() if pending is not None else _prefetched(run, group)
            pending = ahead.submit(_prefetched, run, groups[k + 1]) if ahead is not None and k + 1 < len(groups) else None
            verdicts = []
            for d in sorted(group, key=lambda x: x.started_at):
                near = run.ordered[bisect_left(run.times, d.started_at - overlap): bisect_right(run.times, d.started_at + overlap)]
                verdicts.append(verify_deploy(d, run.config, run.client, others=near, now=run.now, fetcher=fetcher))
            fetcher.clear()
            yield verdicts, fetcher
    finally:
        if ahead is not None:
            ahead.shutdown(wait=True, cancel_futures=True)


# -- worker processes: the run is set once per process (inherited on fork, pickled otherwise)

_WORKER_RUN: _Run | None = None


def _init_worker(run: _Run, inherited_client: bool) -> None:
    global _WORKER_RUN
    if inherited_client:
        run.client.reset_connections()  # never share the parent's keep-alive sockets
    else:
        from analyzers.prometheus.client import PrometheusClient

        run.client = PrometheusClient(run.config.prometheus)
    _WORKER_RUN = run


def _worker_task(groups: list[list[Deploy]]) -> list[tuple[list[DeployVerdict], int, int, int]]:
    assert _WORKER_RUN is not None, "worker not initialised"
    return [(v, f.queries, f.points, f.fallback_queries) for v, f in _verify_groups(_WORKER_RUN, groups)]


def verify_fleet(
    deploys: Sequence[Deploy],
    config: Config,
    client: PrometheusClient,
    *,
    now: datetime | None = None,
    context: Sequence[Deploy] | None = None,
    on_verdict: Callable[[DeployVerdict], None] | None = None,
    progress: Callable[[int], None] | None = None,
    workers: int = 1,
    prefetch_ahead: bool = True,
) -> tuple[list[DeployVerdict], FleetStats]:
    """Verify many deploys with batched queries, one service at a time.

    ``workers``: processes verifying services in parallel (1: this process only). With more
    than one, each worker uses its own connections to the back end (a copy of ``client`` on
    Linux, where workers are forked; a new client from ``config.prometheus`` elsewhere), and
    ``on_verdict``/``progress`` are still called in this process, in the same order.
    ``prefetch_ahead``: fetch the next service's ranges in a thread while one is verified.
    Raises :class:`~analyzers.errors.PrometheusUnreachable` as :func:`verify_deploy` does
    (verdicts already handed to ``on_verdict`` are real; the rest are not checked).
    """
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"workers must be a whole number of processes, 1 or more, got {workers!r}")
    now = now or datetime.now(UTC)
    ordered = sorted(context if context is not None else deploys, key=lambda o: o.started_at)
    by_service: dict[str, list[Deploy]] = defaultdict(list)
    for d in deploys:
        by_service[d.service].append(d)
    groups = [group for _service, group in sorted(by_service.items())]
    run = _Run(config, client, now, ordered, [o.started_at for o in ordered], prefetch_ahead)
    verdicts: list[DeployVerdict] = []
    queries = points = fallback = 0

    def collect(batch: list[DeployVerdict]) -> None:
        for v in batch:
            verdicts.append(v)
            if on_verdict is not None:
                on_verdict(v)
            if progress is not None:
                progress(1)

    if workers == 1 or len(groups) < 2:
        for batch, fetcher in _verify_groups(run, groups):
            collect(batch)
            queries, points, fallback = queries + fetcher.queries, points + fetcher.points, fallback + fetcher.fallback_queries
    else:
        fork = "fork" in multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("fork" if fork else "spawn")
        worker_run: Any = run if fork else _Run(config, None, now, ordered, run.times, prefetch_ahead)  # type: ignore[arg-type]
        with ProcessPoolExecutor(max_workers=min(workers, len(groups)), mp_context=ctx,
                                 initializer=_init_worker, initargs=(worker_run, fork)) as pool:
            # a few services per task: the worker prefetches ahead within its task, and
            # several tasks per worker even out services of different sizes
            size = max(1, -(-len(groups) // (4 * workers)))
            tasks = [groups[i: i + size] for i in range(0, len(groups), size)]
            for results in pool.map(_worker_task, tasks):
                for batch, q, n, f in results:
                    collect(batch)
                    queries, points, fallback = queries + q, points + n, fallback + f
    stats = FleetStats(
        deploys=len(verdicts),
        services=len(by_service),
        queries=queries,
        points=points,
        fallback_queries=fallback,
    )
    return verdicts, stats


def verify_many(
    deploys: Sequence[Deploy],
    cfg: Config,
    client,  # type: ignore[no-untyped-def]
    *,
    store=None,  # type: ignore[no-untyped-def]
    now: datetime | None = None,
    show_progress: bool = True,
    context: Sequence[Deploy] | None = None,
    workers: int = 1,
) -> list[DeployVerdict]:
    """Verify deploys with a progress bar on stderr; store each verdict if a store is given.

    Many deploys go through :func:`analyzers.verify.fleet.verify_fleet` (one range query per service,
    metric and contiguous range; ``workers`` processes over services); verdicts come back in the
    order of ``deploys``.
    """
    from tqdm import tqdm

    now = now or datetime.now(UTC)
    bar = tqdm(total=len(deploys), desc="verifying", unit="deploy", file=sys.stderr,
               disable=not show_progress or len(deploys) < 2)

    def on_verdict(v: DeployVerdict) -> None:
        bar.set_postfix_str(f"{v.service} {v.version}")
        if store is not None:
            store.save_verdict(v)

    try:
        verdicts, _stats = verify_fleet(deploys, cfg, client, now=now, context=context,
                                        on_verdict=on_verdict, progress=bar.update, workers=workers)
    finally:
        bar.close()
    by_id = {v.deploy_id: v for v in verdicts}
    return [by_id[d.deploy_id] for d in deploys]
