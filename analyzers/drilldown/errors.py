"""Error drill-down: "who is failing" by any label, and per-value series side by side.

The counters come from the catalog's error metric (``error_ratio`` by default): its ``events``
selector counts failed requests and its ``exposure`` selector all requests, e.g.
``http_request_errors_total{service="$service"}`` and ``http_requests_total{service="$service"}``
(``docs/prometheus.md``). Each panel is one query:

- :func:`error_breakdown`: one instant query of both counters' ``increase`` over the window, by
  the chosen label; each value's error ratio (with a Wilson 95% interval), error rate, share of
  the errors and of the traffic, ranked by how much more of the errors it holds than of the
  traffic (``excess``, the same ranking as "who is slow").
- :func:`error_series`: one range query of both counters' ``rate`` by the label: the error ratio
  and the error rate of each value over time (per version during a rollout: the two versions
  side by side).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd

from analyzers.config import Config
from analyzers.drilldown.base import Querier
from analyzers.errors import ConfigError
from analyzers.prometheus.latency import rate_window
from analyzers.prometheus.promql import render, validate_label_name
from analyzers.prometheus.results import QueryResult
from analyzers.text import format_duration

__all__ = ["ErrorBreakdown", "ErrorRow", "ErrorSeries", "counters", "error_breakdown", "error_series", "wilson"]

#: Tag label telling the two counters apart inside one answer (``label_replace``).
PART = "drilldown_part"


def counters(config: Config, service: str, metric: str = "error_ratio") -> tuple[str, str]:
    """The (failed requests, all requests) selectors of ``metric`` rendered for ``service``."""
    spec = config.metric(metric)
    if not spec.events or not spec.exposure:
        raise ConfigError(
            f"metrics.{metric} needs 'events' (a counter of failed requests) and 'exposure' (of all requests) "
            "for the error drill-down, e.g. events = 'http_request_errors_total{service=\"$service\"}'"
        )
    return render(spec.events, service=service), render(spec.exposure, service=service)


def _both(events: str, exposure: str, fn: str, window: str, label: str) -> str:
    by = f" by ({validate_label_name(label)})"
    return (
        f'label_replace(sum{by} ({fn}({events}[{window}])), "{PART}", "errors", "", "")'
        f' or label_replace(sum{by} ({fn}({exposure}[{window}])), "{PART}", "requests", "", "")'
    )


def _split(result: QueryResult, label: str) -> tuple[dict[str, pd.Series], dict[str, pd.Series]]:
    errors: dict[str, pd.Series] = {}
    requests: dict[str, pd.Series] = {}
    for s in result.series:
        target = errors if s.labels.get(PART) == "errors" else requests
        key = s.labels.get(label, "")
        target[key] = target[key].add(s.values, fill_value=0.0) if key in target else s.values
    return errors, requests


def wilson(errors: float, requests: float, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval (95% by default) of ``errors / requests``; (nan, nan) without requests.

    Assumes independent requests; ``increase`` extrapolates, so counts need not be integers (the
    interval is then approximate)."""
    if not requests > 0:
        return math.nan, math.nan
    p = min(max(errors / requests, 0.0), 1.0)
    denom = 1 + z * z / requests
    centre = (p + z * z / (2 * requests)) / denom
    half = z * math.sqrt(p * (1 - p) / requests + z * z / (4 * requests * requests)) / denom
    return max(centre - half, 0.0), min(centre + half, 1.0)


@dataclass(frozen=True)
class ErrorRow:
    """One label value over the window. Ratios and shares are fractions (0..1); rates per second."""

    value: str
    requests: float
    errors: float
    ratio: float
    ratio_ci: tuple[float, float]
    error_rate: float
    error_share: float
    traffic_share: float
    excess: float  # error_share - traffic_share: > 0 when it fails more than its traffic explains


@dataclass(frozen=True)
class ErrorBreakdown:
    """Who is failing: ``rows`` worst first, and the whole service's figures over ``[start, end]``."""

    label: str
    start: int
    end: int
    rows: tuple[ErrorRow, ...]
    requests: float
    errors: float
    query: str
    warnings: tuple[str, ...]

    @property
    def ratio(self) -> float:
        return self.errors / self.requests if self.requests > 0 else math.nan


def error_breakdown(
    client: Querier, events: str, exposure: str, label: str, start: int, end: int
) -> ErrorBreakdown:
    """Failed and all requests by ``label`` over ``[start, end]`` (Unix s) in one instant query.

    Rows are ranked by ``excess`` (share of the errors minus share of the traffic), then by
    errors. A value with requests but no error series has 0 errors; one with errors but no
    requests (a misconfigured pair of counters) keeps its errors and a NaN ratio.
    """
    if end <= start:
        raise ConfigError(f"the window must end after it starts (got {start}..{end})")
    query = _both(events, exposure, "increase", format_duration(end - start), label)
    result = client.query(query, datetime.fromtimestamp(end, UTC))
    errs, reqs = _split(result, label)
    err = {k: max(float(v.iloc[-1]), 0.0) for k, v in errs.items() if len(v) and math.isfinite(v.iloc[-1])}
    req = {k: max(float(v.iloc[-1]), 0.0) for k, v in reqs.items() if len(v) and math.isfinite(v.iloc[-1])}
    total_err, total_req = sum(err.values()), sum(req.values())
    seconds = float(end - start)
    rows = []
    for value in sorted(set(err) | set(req)):
        e, r = err.get(value, 0.0), req.get(value, 0.0)
        error_share = e / total_err if total_err > 0 else 0.0
        traffic_share = r / total_req if total_req > 0 else 0.0
        rows.append(ErrorRow(
            value=value, requests=r, errors=e, ratio=e / r if r > 0 else math.nan, ratio_ci=wilson(e, r),
            error_rate=e / seconds, error_share=error_share, traffic_share=traffic_share,
            excess=error_share - traffic_share,
        ))
    rows.sort(key=lambda row: (-row.excess, -row.errors, row.value))
    return ErrorBreakdown(label, start, end, tuple(rows), total_req, total_err, query, tuple(result.warnings))


@dataclass(frozen=True)
class ErrorSeries:
    """Per value of ``label``: error ratio (fraction) and error rate (errors/s) over time, one
    column per value (UTC index). A step without requests is NaN in ``ratio``, never 0."""

    label: str
    ratio: pd.DataFrame
    error_rate: pd.DataFrame
    request_rate: pd.DataFrame
    window: str
    query: str
    warnings: tuple[str, ...]


def error_series(
    client: Querier, events: str, exposure: str, label: str, start: int, end: int, step: int,
    *, scrape_interval_s: float,
) -> ErrorSeries:
    """Both counters' ``rate`` by ``label`` over ``[start, end]`` in one range query."""
    window = rate_window(step, scrape_interval_s)
    query = _both(events, exposure, "rate", window, label)
    result = client.query_range(query, datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC), float(step))
    errs, reqs = _split(result, label)
    index = pd.DatetimeIndex(sorted({t for s in (*errs.values(), *reqs.values()) for t in s.index}), name="time")
    req = pd.DataFrame({k: v for k, v in sorted(reqs.items())}, index=index)
    err = pd.DataFrame({k: errs.get(k, pd.Series(0.0, index=v.index)) for k, v in sorted(reqs.items())}, index=index)
    # A value whose requests were counted at a step but whose error counter has no sample there
    # (no error yet) failed 0 requests; a step without requests stays NaN.
    err = err.where(err.notna() | req.isna(), 0.0)
    ratio = (err / req.where(req > 0)).astype("float64")
    return ErrorSeries(label, ratio, err, req, window, query, tuple(result.warnings))
