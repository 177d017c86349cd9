"""Prometheus answers as typed values: series, native histograms, query results, steps.

Parsing is exact: timestamps keep the server's millisecond resolution (never rounded to
seconds), ``NaN``/``+Inf`` samples are kept as floats, and native-histogram samples are read
into :class:`NativeHistogram`. The HTTP side (and prometheus-api-client) is in
:mod:`analyzers.prometheus.client`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import pandas as pd

__all__ = [
    "MAX_POINTS",
    "TARGET_POINTS",
    "TRACE_ID_LABELS",
    "Exemplar",
    "NativeBucket",
    "NativeHistogram",
    "PromSeries",
    "QueryResult",
    "align_range",
    "choose_step",
    "parse_exemplars",
    "parse_result",
]

TARGET_POINTS = 1200
MAX_POINTS = 11000  # Prometheus refuses query_range beyond 11,000 points per series

# Steps we round an automatic step up to: aligned, cache-friendly, readable as a window.
_NICE_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


# --- result values ---------------------------------------------------------------------

@dataclass(frozen=True)
class NativeBucket:
    """One native-histogram bucket. ``boundary_rule``: 0 (lo,hi] 1 [lo,hi) 2 (lo,hi) 3 [lo,hi]."""

    boundary_rule: int
    lower: float
    upper: float
    count: float


@dataclass(frozen=True)
class NativeHistogram:
    """A native histogram sample as Prometheus returns it under ``histogram(s)``."""

    count: float
    sum: float
    buckets: tuple[NativeBucket, ...] = ()


@dataclass(frozen=True, eq=False)
class PromSeries:
    """One series: its labels (``__name__`` included when the server kept it) and float values.

    ``values`` is indexed by a UTC DatetimeIndex at the server's millisecond resolution (never
    rounded to seconds); ``NaN``/``+Inf`` samples are kept as floats. Native histogram samples,
    when the server returns them, are in ``histograms`` as (time, NativeHistogram) pairs.
    """

    labels: dict[str, str]
    values: pd.Series
    histograms: tuple[tuple[pd.Timestamp, NativeHistogram], ...] = ()

    @property
    def name(self) -> str:
        """A readable label set such as ``{endpoint="/pay", le="0.5"}`` (for legends and errors)."""
        inner = ", ".join(f'{k}="{v}"' for k, v in sorted(self.labels.items()))
        return "{" + inner + "}"


@dataclass(frozen=True, eq=False)
class QueryResult:
    """A parsed answer. ``warnings`` holds the server's warnings and infos: show them to the user.

    ``start``/``end`` are the aligned bounds actually queried (equal for instant queries),
    ``step_s`` the step in seconds (None for instant queries), ``result_type`` one of
    ``matrix``, ``vector``, ``scalar``, ``string``.
    """

    query: str
    series: tuple[PromSeries, ...]
    warnings: tuple[str, ...]
    step_s: float | None
    start: datetime
    end: datetime
    result_type: str

    @property
    def empty(self) -> bool:
        return not self.series

    def frame(self, label: str | None = None) -> pd.DataFrame:
        """Series side by side, one column per series, named by ``label``'s value or the label set."""
        cols: dict[str, pd.Series] = {}
        for s in self.series:
            key = s.labels.get(label, "") if label else s.name
            cols[key] = s.values
        return pd.DataFrame(cols)


# --- steps and alignment ---------------------------------------------------------------

def epoch(t: datetime) -> float:
    if t.tzinfo is None:
        raise ValueError(f"{t!r} is a naive datetime: pass an aware UTC datetime (datetime.now(UTC))")
    return t.timestamp()


def from_epoch(s: float) -> datetime:
    return datetime.fromtimestamp(s, tz=UTC)


def choose_step(
    range_s: float,
    step_s: float | None = None,
    *,
    min_step_s: float = 1.0,
    target_points: int = TARGET_POINTS,
    max_points: int = MAX_POINTS,
) -> float:
    """The step for a range: ``step_s`` if given, else range/target rounded up to a nice step.

    Either way the step is raised until the aligned range has at most ``max_points``
    points (alignment can add a step at each end, hence the ``+ 2``).
    """
    if range_s < 0:
        raise ValueError(f"end is before start ({range_s} s)")
    if max_points < 3:
        raise ValueError("max_points must be at least 3")
    if step_s is None:
        raw = max(range_s / max(target_points - 1, 1), min_step_s)
        step = next((float(n) for n in _NICE_STEPS if n >= raw), math.ceil(raw / 86400) * 86400.0)
    else:
        if not step_s > 0:
            raise ValueError(f"step must be positive, got {step_s}")
        step = float(step_s)
    floor = range_s / (max_points - 2)
    if step < floor:
        step = float(math.ceil(floor))
    return step


def align_range(start_s: float, end_s: float, step_s: float) -> tuple[float, float]:
    """Start aligned down and end aligned up to multiples of the step (epoch based)."""
    start = math.floor(start_s / step_s) * step_s
    end = math.ceil(end_s / step_s) * step_s
    return start, end


# --- parsing ---------------------------------------------------------------------------

def _index(timestamps: list[float]) -> pd.DatetimeIndex:
    # Prometheus timestamps are milliseconds written as float seconds: round to ms, exactly.
    ms = np.round(np.asarray(timestamps, dtype="float64") * 1000.0).astype("int64")
    return pd.DatetimeIndex((ms * 1000).view("M8[us]"), name="time").tz_localize("UTC")


def _float(v: Any) -> float:
    # float() reads "NaN", "+Inf", "-Inf" as Prometheus writes them.
    return float(v)


def _native(h: Mapping[str, Any]) -> NativeHistogram:
    buckets = tuple(
        NativeBucket(int(b[0]), _float(b[1]), _float(b[2]), _float(b[3])) for b in h.get("buckets") or ()
    )
    return NativeHistogram(count=_float(h.get("count", "NaN")), sum=_float(h.get("sum", "NaN")), buckets=buckets)


#: Characters of a plain decimal number (and the commas joining them): see ``_values``.
_NUMBER_CHARS = str.maketrans("", "", "0123456789.eE+-,")


def _values(raw: list[Any]) -> np.ndarray:
    """Prometheus' sample values (decimal strings, "NaN", "+Inf", "-Inf") as float64.

    The common case, only plain decimals, is parsed as one JSON array by orjson (5x cheaper
    than ``float()`` per string; correctly rounded, so the same floats); anything else goes
    through ``float()``, which reads "NaN" and "+Inf" as Prometheus writes them and raises
    ``ValueError`` for what is not a number.
    """
    try:
        joined = ",".join(raw)
    except TypeError:  # not strings: not what Prometheus sends, let float() judge them
        joined = "?"
    # "-0" parses as the integer 0 in JSON, losing the sign float("-0") keeps: leave it to float().
    if raw and not joined.translate(_NUMBER_CHARS) and ",-0," not in f",{joined},":
        try:
            parsed = orjson.loads("[" + joined + "]")
        except orjson.JSONDecodeError:  # e.g. "+1", "01", "1,": float() decides below
            parsed = None
        if parsed is not None and len(parsed) == len(raw):  # "1,2" would add an element
            return np.asarray(parsed, dtype="float64")
    return np.array([float(v) for v in raw], dtype="float64")


def _series_from(item: Mapping[str, Any], result_type: str) -> PromSeries:
    labels = {str(k): str(v) for k, v in (item.get("metric") or {}).items()}
    if result_type == "matrix":
        pairs = item.get("values") or []
        hist_pairs = item.get("histograms") or []
    else:
        pairs = [item["value"]] if "value" in item else []
        hist_pairs = [item["histogram"]] if "histogram" in item else []
    values = pd.Series(_values([v for _, v in pairs]), index=_index([t for t, _ in pairs]), dtype="float64")
    histograms: tuple[tuple[pd.Timestamp, NativeHistogram], ...] = ()
    if hist_pairs:
        hist_index = _index([t for t, _ in hist_pairs])
        histograms = tuple((ts, _native(h)) for ts, (_, h) in zip(hist_index, hist_pairs, strict=True))
    return PromSeries(labels=labels, values=values, histograms=histograms)


def parse_result(data: Mapping[str, Any]) -> tuple[str, tuple[PromSeries, ...]]:
    result_type = str(data.get("resultType", ""))
    result = data.get("result")
    if result_type in ("matrix", "vector"):
        return result_type, tuple(_series_from(item, result_type) for item in result or [])
    if result_type in ("scalar", "string"):
        if not result:
            return result_type, ()
        t, v = result
        try:
            value = _float(v)
        except ValueError:  # a string result: keep the text as a label, the value NaN
            return result_type, (PromSeries({"value": str(v)}, pd.Series([math.nan], index=_index([t]))),)
        return result_type, (PromSeries({}, pd.Series([value], index=_index([t]), dtype="float64")),)
    raise ValueError(f"unknown resultType {result_type!r}")




# --- exemplars -------------------------------------------------------------------------

#: Exemplar label names that carry a trace id, in the order they are tried (OpenTelemetry
#: and client_python write ``trace_id``; Jaeger and Tempo tooling also use ``traceID``).
TRACE_ID_LABELS = ("trace_id", "traceID", "traceId", "trace-id")


@dataclass(frozen=True, eq=False)
class Exemplar:
    """One exemplar: a single request's observed ``value`` at ``time`` (UTC, ms resolution),
    the labels of the series it belongs to (``le`` for a histogram bucket) and its own labels
    (``trace_id`` ...), as ``/api/v1/query_exemplars`` returns them."""

    series_labels: dict[str, str]
    labels: dict[str, str]
    value: float
    time: pd.Timestamp

    @property
    def trace_id(self) -> str | None:
        """The trace id among the exemplar's labels, or None."""
        return next((self.labels[k] for k in TRACE_ID_LABELS if self.labels.get(k)), None)


def parse_exemplars(data: Any) -> tuple[Exemplar, ...]:
    """The ``data`` of a ``query_exemplars`` answer as exemplars, oldest first."""
    if not isinstance(data, list):
        raise ValueError("query_exemplars data is not a list")
    out: list[Exemplar] = []
    for item in data:
        series = {str(k): str(v) for k, v in (item.get("seriesLabels") or {}).items()}
        raw = item.get("exemplars") or []
        if not raw:
            continue
        index = _index([e["timestamp"] for e in raw])
        for ts, e in zip(index, raw, strict=True):
            labels = {str(k): str(v) for k, v in (e.get("labels") or {}).items()}
            out.append(Exemplar(series, labels, _float(e["value"]), ts))
    out.sort(key=lambda e: e.time)
    return tuple(out)
