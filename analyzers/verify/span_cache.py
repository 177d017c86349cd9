"""Range-query answers kept per process, so a later look at a deploy asks only for the new steps.

``verify --wait`` looks at one deploy every 30 s, the scheduler at its due times, the dashboard on
demand, and each look covers the deploy's whole analysis window (``verification.history`` and the
windows: about 11,700 steps a query, twelve series of them for ``latency_shift``'s bucket counts),
of which only the last few steps are new. :class:`SpanCache` keeps each answer on its step grid,
keyed by the server (URL, tenant, headers), the query, the step and the window's first step, and
serves a later look from what it holds up to the *settled* step, asking the back end only for the
steps after it.

A step is settled when it is at least :data:`SETTLE_S` older than the wall clock when it was
fetched and no later than the last step that had any data. Samples scraped or sent late (remote
write) land in the steps after it, and those are fetched again at every look. An answer that came
with warnings (partial data) is never kept; when the new steps name other columns (a bucket bound
appeared or went) the whole span is fetched again. Each step of a range query is evaluated on its
own, so the rows held plus the rows fetched are the grid a full fetch gives, and a verdict is the
same with or without the cache. Every look asks the server for one step at least (the last, when
all are held), so an unreachable Prometheus is "could not check" at every look, cached or not (``tests/unit/test_span_cache.py``). Memory is bounded
(:data:`MAX_CELLS` values, least recently used dropped first); :meth:`SpanCache.clear` empties it.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

import numpy as np

#: Steps younger than this (wall clock at the fetch) are fetched again at the next look.
SETTLE_S = 300.0
#: Values held at most (8 bytes each: 64 MB); the least recently used answers go first.
MAX_CELLS = 8_000_000

#: ``fetch(a, b)`` -> (columns, values: one row per step of [a, b], warnings, queries, points).
SpanFetch = Callable[[float, float], tuple[tuple[Hashable, ...], np.ndarray, tuple[str, ...], int, int]]


@dataclass
class _Entry:
    a: float  # first step (aligned Unix seconds)
    step_s: float
    cols: tuple[Hashable, ...]
    values: np.ndarray  # rows a .. a + (len - 1) * step, all settled


class SpanCache:
    """Answers on the step grid per (server, query, step, first step); see the module doc."""

    def __init__(self, *, settle_s: float = SETTLE_S, max_cells: int = MAX_CELLS,
                 clock: Callable[[], float] = time.time) -> None:
        self.settle_s = settle_s
        self.max_cells = max_cells
        self.clock = clock
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self.cells = 0

    def get_span(self, key: Hashable, a: float, b: float, step_s: float,
                 fetch: SpanFetch) -> tuple[tuple[Hashable, ...], np.ndarray, tuple[str, ...], int, int]:
        """The answer on the grid [a, b] (aligned): held rows, then ``fetch`` for the rest.
        Returns (columns, values, warnings, queries issued, points fetched)."""
        n = int(round((b - a) / step_s)) + 1
        with self._lock:
            e = self._entries.get(key)
            if e is not None:
                self._entries.move_to_end(key)
        if e is not None and e.a == a and e.step_s == step_s and len(e.values):
            held = len(e.values)
            if n <= held:  # all held: the server is still asked for the last step, so an outage or a
                # warning shows at this look as it would without the cache
                _, _, warns, q, p = fetch(b, b)
                return e.cols, e.values[:n].copy(), warns, q, p
            cols, new, warns, q, p = fetch(a + held * step_s, b)
            if cols == e.cols or not cols:  # no data in the new steps: NaN rows under the held columns
                if not cols:
                    new = np.full((n - held, len(e.cols)), np.nan)
                values = np.vstack([e.values, new])
                self._keep(key, a, b, step_s, e.cols, values, warns)
                return e.cols, values, warns, q, p
            # a column appeared or went: the whole span again (what a full fetch would answer)
            cols, values, warns, q2, p2 = fetch(a, b)
            self._keep(key, a, b, step_s, cols, values, warns)
            return cols, values, warns, q + q2, p + p2
        cols, values, warns, q, p = fetch(a, b)
        self._keep(key, a, b, step_s, cols, values, warns)
        return cols, values, warns, q, p

    def _keep(self, key: Hashable, a: float, b: float, step_s: float, cols: tuple[Hashable, ...],
              values: np.ndarray, warns: tuple[str, ...]) -> None:
        if warns or not cols or values.ndim != 2 or values.shape[1] != len(cols):
            return  # partial data is never kept; nothing came: nothing to keep
        has_data = np.flatnonzero(np.isfinite(values).any(axis=1))
        if not has_data.size:
            return
        young = (self.clock() - self.settle_s - a) // step_s  # the last step old enough, as a row
        rows = int(min(len(values) - 1, has_data[-1], young)) + 1
        if rows <= 0:
            return
        entry = _Entry(a, step_s, cols, values[:rows].copy())
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.cells -= old.values.size
            self._entries[key] = entry
            self.cells += entry.values.size
            while self.cells > self.max_cells and len(self._entries) > 1:
                _, dropped = self._entries.popitem(last=False)
                self.cells -= dropped.values.size

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.cells = 0

    def __len__(self) -> int:
        return len(self._entries)


#: The process's cache: :class:`analyzers.verify.fetch.DirectFetcher` uses it unless handed another
#: (or None: always fetch the whole span).
SHARED = SpanCache()


def server_key(client: object) -> tuple[Hashable, ...] | None:
    """What names the server and the view of it a client queries (None: a client that does not
    say, whose answers are not kept)."""
    base = getattr(client, "base_url", None)
    if not isinstance(base, str):
        return None
    s = getattr(client, "settings", None)
    headers = tuple(sorted((str(k), str(v)) for k, v in (getattr(s, "headers", None) or {}).items()))
    auth = (getattr(s, "bearer_token", None), getattr(s, "basic_auth", None))  # who asks may see other data
    return (base, getattr(s, "tenant", None), headers, auth, getattr(s, "partial_response", None), getattr(s, "dedup", None))
