"""The SLO panel: multi-window error-budget burn rates, and the alerting policy behind them.

Policy (Google SRE workbook): page when 2% of a 30-day budget burns in 1 h (14.4x over 1 h
and 5 min), and when 5% burns in 6 h (6x over 6 h and 30 min). Both windows of a pair must
burn faster than the factor: the long one says it matters, the short one that it is still
happening. The PromQL is built by :mod:`analyzers.prometheus.slo`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from analyzers.drilldown.base import Querier
from analyzers.prometheus.promql import matchers
from analyzers.prometheus.slo import burn_rate_query

__all__ = ["BURN_RATE_WINDOWS", "BurnRateWindow", "BurnRates", "burn_rate_queries", "burn_rates"]


@dataclass(frozen=True)
class BurnRateWindow:
    """A multi-window burn-rate alert: fire when both windows burn faster than ``factor``."""

    long: str
    short: str
    factor: float


# Google SRE workbook: 2% of a 30-day budget in 1 h (page), 5% in 6 h (page/ticket).
BURN_RATE_WINDOWS = (BurnRateWindow("1h", "5m", 14.4), BurnRateWindow("6h", "30m", 6.0))


def burn_rate_queries(
    histogram: str, selector: str, threshold_le: float | str, objective: float, *, native: bool = False
) -> tuple[tuple[BurnRateWindow, str, str], ...]:
    """For each standard window pair: (pair, long-window query, short-window query).

    ``native=True`` builds them for a native histogram, where the threshold may fall inside a
    bucket (``histogram_fraction``).
    """
    return tuple(
        (
            w,
            burn_rate_query(histogram, selector, threshold_le, objective, w.long, native=native),
            burn_rate_query(histogram, selector, threshold_le, objective, w.short, native=native),
        )
        for w in BURN_RATE_WINDOWS
    )


@dataclass(frozen=True)
class BurnRates:
    """Error-budget burn rates now, per standard window pair (long, short, alert factor, rates)."""

    threshold_le: float
    objective: float
    rates: tuple[tuple[str, str, float, float, float], ...]  # (long, short, factor, long rate, short rate)
    queries: tuple[str, ...]
    warnings: tuple[str, ...]


def burn_rates(
    client: Querier, histogram: str, service: str, threshold_le: float, objective: float, at: int,
    *, native: bool = False,
) -> BurnRates:
    """The multi-window burn rates at ``at`` (Unix s) in one instant query.

    Each window's query (:func:`burn_rate_queries`) is tagged with a ``burn_window`` label via
    ``label_replace`` and the tagged vectors are joined with ``or``, so the panel costs one round
    trip. A window without requests gives NaN (shown as "no data", never as 0).
    """
    sel = matchers(service=service)
    pairs = burn_rate_queries(histogram, sel, threshold_le, objective, native=native)
    parts = []
    for pair, long_q, short_q in pairs:
        for window, q in ((pair.long, long_q), (pair.short, short_q)):
            parts.append(f'label_replace({q}, "burn_window", "{window}", "", "")')
    query = " or ".join(parts)
    result = client.query(query, datetime.fromtimestamp(at, UTC))
    by_window: dict[str, float] = {}
    for s in result.series:
        if len(s.values):
            by_window[s.labels.get("burn_window", "")] = float(s.values.iloc[-1])
    nan = float("nan")
    rates = tuple(
        (pair.long, pair.short, float(pair.factor), by_window.get(pair.long, nan), by_window.get(pair.short, nan))
        for pair, _, _ in pairs
    )
    return BurnRates(threshold_le, objective, rates, (query,), tuple(result.warnings))
