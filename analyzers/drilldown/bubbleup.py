"""BubbleUp: which label value best explains the errors, or the slow tail?

For every candidate label, the distribution of its values inside the bad requests (failed, or
slower than a threshold) is contrasted with the rest of the requests over the same window, and
the labels are ranked by how far the two differ (:mod:`analyzers.stats.divergence`: total
variation distance less what sampling alone gives, with the per-value figures). One instant
query covers every label: each label's ``sum by (label)`` is tagged with ``label_replace`` and
the parts are joined with ``or``.

- :func:`error_bubbleup`: bad = the ``events`` counter (failed requests), good = ``exposure``
  minus ``events``.
- :func:`latency_bubbleup`: bad = requests above a bucket bound, good = at or below it. The
  default bound is the lower bound of the bucket holding the service-wide percentile (p99), as
  "who is slow" uses; the SLO threshold is the other natural choice. Classic ``le`` buckets
  only: Prometheus 2.42's ``label_replace`` cannot tag native-histogram samples.

:func:`candidate_labels` lists the labels worth comparing: every label of the series (through
the Prometheus labels API) except ``__name__``, ``le``, ``quantile`` and the selector's own
equality matchers (one value each).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, Protocol

from analyzers.drilldown.base import Querier
from analyzers.errors import ConfigError
from analyzers.prometheus.latency import buckets_frame, heatmap_query, le_matcher, parse_le
from analyzers.prometheus.promql import (
    escape_regex_value,
    histogram_base,
    matchers,
    validate_label_name,
    with_matchers,
)
from analyzers.prometheus.results import QueryResult
from analyzers.stats.buckets import quantile_from_buckets
from analyzers.stats.divergence import LabelContrast, contrast, rank_contrasts
from analyzers.text import format_duration

__all__ = ["MAX_LABELS", "MAX_VALUES", "BubbleUp", "candidate_labels", "error_bubbleup", "latency_bubbleup"]

#: Labels compared at most (the query grows by two parts per label).
MAX_LABELS = 16
#: A label with more values than this (request ids, trace ids ...) is skipped and said so.
MAX_VALUES = 500
TAG = "drilldown_part"
_NEVER = frozenset({"__name__", "le", "quantile", TAG})


class _LabelSource(Protocol):  # noqa: D101
    def label_names(self, match: str, start: datetime, end: datetime) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class BubbleUp:
    """Labels ranked by how well they tell the bad requests from the rest (best first).

    ``kind`` is ``"errors"`` or ``"slow"`` (requests above ``threshold_s`` seconds).
    ``skipped`` names labels left out and why.
    """

    kind: Literal["errors", "slow"]
    start: int
    end: int
    labels: tuple[LabelContrast, ...]
    n_bad: float
    n_good: float
    queries: tuple[str, ...]
    warnings: tuple[str, ...]
    skipped: tuple[str, ...] = ()
    threshold_s: float | None = None
    quantile: float | None = None

    @property
    def explanation(self) -> LabelContrast | None:
        """The best label when it stands out (:attr:`LabelContrast.stands_out`), else None."""
        best = self.labels[0] if self.labels else None
        return best if best is not None and best.stands_out else None


def candidate_labels(client: _LabelSource, match: str, start: int, end: int) -> tuple[str, ...]:
    """Labels of the series ``match`` selects in ``[start, end]`` worth comparing (sorted)."""
    fixed = set(re.findall(r'([A-Za-z_][A-Za-z0-9_]*)\s*="', match))
    names = client.label_names(match, datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC))
    return tuple(n for n in names if n not in _NEVER and n not in fixed)[:MAX_LABELS]


def _labels(labels: Sequence[str]) -> list[str]:
    out = list(dict.fromkeys(validate_label_name(label) for label in labels if label not in _NEVER))
    if not out:
        raise ConfigError("pick at least one label to compare (e.g. endpoint, version, pod)")
    return out[:MAX_LABELS]


def _tagged(parts: list[tuple[str, str]]) -> str:
    return " or ".join(f'label_replace({q}, "{TAG}", "{tag}", "", "")' for tag, q in parts)


def _last(s_values: object) -> float:
    import pandas as pd

    v = s_values if isinstance(s_values, pd.Series) else pd.Series(dtype="float64")
    x = float(v.iloc[-1]) if len(v) else math.nan
    return max(x, 0.0) if math.isfinite(x) else 0.0


def _counts(result: QueryResult, tag: str, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for s in result.series:
        if s.labels.get(TAG) == tag:
            key = s.labels.get(label, "")
            out[key] = out.get(key, 0.0) + _last(s.values)
    return out


def _rank(kind: Literal["errors", "slow"], start: int, end: int, per_label: dict[str, tuple[dict[str, float], dict[str, float]]],
          queries: tuple[str, ...], warnings: tuple[str, ...], **extra: float | None) -> BubbleUp:
    contrasts, skipped = [], []
    n_bad = n_good = 0.0
    for label, (bad, good) in per_label.items():
        values = set(bad) | set(good)
        if len(values) > MAX_VALUES:
            skipped.append(f"{label}: {len(values)} values, more than {MAX_VALUES} to compare")
            continue
        if len(values) < 2:
            skipped.append(f"{label}: one value only" if values else f"{label}: no series carry it")
            continue
        c = contrast(label, bad, good)
        n_bad, n_good = max(n_bad, c.n_bad), max(n_good, c.n_good)
        contrasts.append(c)
    return BubbleUp(kind, start, end, rank_contrasts(contrasts), n_bad, n_good, queries, warnings, tuple(skipped),
                    extra.get("threshold_s"), extra.get("quantile"))


def error_bubbleup(client: Querier, events: str, exposure: str, labels: Sequence[str], start: int, end: int) -> BubbleUp:
    """Which label value explains the failed requests in ``[start, end]`` (Unix s)? One instant query."""
    names = _labels(labels)
    w = format_duration(end - start)
    parts = []
    for label in names:
        parts.append((f"errors|{label}", f"sum by ({label}) (increase({events}[{w}]))"))
        parts.append((f"requests|{label}", f"sum by ({label}) (increase({exposure}[{w}]))"))
    query = _tagged(parts)
    result = client.query(query, datetime.fromtimestamp(end, UTC))
    per_label = {}
    for label in names:
        bad = _counts(result, f"errors|{label}", label)
        total = _counts(result, f"requests|{label}", label)
        good = {v: max(total.get(v, 0.0) - bad.get(v, 0.0), 0.0) for v in set(total) | set(bad)}
        per_label[label] = (bad, good)
    return _rank("errors", start, end, per_label, (query,), tuple(result.warnings))


def latency_bubbleup(
    client: Querier, histogram: str, service: str, labels: Sequence[str], start: int, end: int,
    *, quantile: float = 0.99, threshold_s: float | None = None,
) -> BubbleUp:
    """Which label value explains the requests slower than ``threshold_s`` in ``[start, end]``?

    Without ``threshold_s``: one instant query of the service's buckets finds the bucket holding
    its ``quantile``, and its lower bound is the threshold (the slow set is that bucket and above).
    ``threshold_s`` must otherwise be one of the histogram's bucket bounds. Then one instant query
    of the threshold and ``+Inf`` buckets by every label.
    """
    names = _labels(labels)
    sel = matchers(service=service)
    w = format_duration(end - start)
    at = datetime.fromtimestamp(end, UTC)
    queries: list[str] = []
    warnings: list[str] = []
    if threshold_s is None:
        overall_q = heatmap_query(histogram, sel, w)
        overall = client.query(overall_q, at)
        queries.append(overall_q)
        warnings += overall.warnings
        frame = buckets_frame(overall)
        if frame.empty:
            return BubbleUp("slow", start, end, (), 0.0, 0.0, tuple(queries), tuple(warnings), (), None, quantile)
        les = [float(c) for c in frame.columns]
        est = quantile_from_buckets(les, frame.iloc[-1].to_numpy(dtype=float), quantile)
        if est.value != est.value:  # NaN: no requests
            return BubbleUp("slow", start, end, (), 0.0, 0.0, tuple(queries), tuple(warnings), (), None, quantile)
        threshold_s = est.lower if est.lower > 0 else les[0]
    matcher = le_matcher(threshold_s)[:-1] + "|" + escape_regex_value("+Inf") + '"'
    base = histogram_base(histogram)
    parts = [(label, f"sum by ({label}, le) (increase({base}_bucket{with_matchers(sel, matcher)}[{w}]))") for label in names]
    query = _tagged(parts)
    result = client.query(query, at)
    queries.append(query)
    warnings += result.warnings
    per_label: dict[str, tuple[dict[str, float], dict[str, float]]] = {}
    seen_threshold = False
    for label in names:
        total: dict[str, float] = {}
        fast: dict[str, float] = {}
        for s in result.series:
            if s.labels.get(TAG) != label:
                continue
            le = parse_le(s.labels.get("le", "nan"))
            key = s.labels.get(label, "")
            if math.isinf(le):
                total[key] = total.get(key, 0.0) + _last(s.values)
            elif math.isclose(le, threshold_s, rel_tol=1e-9):
                fast[key] = fast.get(key, 0.0) + _last(s.values)
                seen_threshold = True
        slow = {v: max(total[v] - fast.get(v, 0.0), 0.0) for v in total}
        per_label[label] = (slow, {v: min(fast.get(v, 0.0), total[v]) for v in total})
    if result.series and not seen_threshold:
        raise ConfigError(f"no bucket le={threshold_s:g} in {base}_bucket: pick one of the histogram's bucket bounds")
    return _rank("slow", start, end, per_label, tuple(queries), tuple(warnings), threshold_s=threshold_s, quantile=quantile)
