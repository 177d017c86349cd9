"""SLO PromQL builders: good-request ratio and error-budget burn rate, classic or native.

The alerting policy (which window pairs, which factors) is not here: it lives with the
panel that uses it, :mod:`analyzers.drilldown.slo`.
"""

from __future__ import annotations

import math

from analyzers.errors import ConfigError
from analyzers.prometheus.latency import le_matcher
from analyzers.prometheus.promql import (
    histogram_base,
    window_text,
    with_matchers,
)

__all__ = ["burn_rate_query", "native_burn_rate_query", "native_good_ratio_query", "slo_good_ratio_query"]


def _threshold(threshold_s: float | str) -> str:
    value = float(threshold_s)
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"latency threshold must be a positive number of seconds such as 0.3, got {threshold_s!r}")
    return repr(value)


def slo_good_ratio_query(histogram: str, selector: str, threshold_le: float | str, window: str | float) -> str:
    """Share of requests at most ``threshold_le`` seconds: good bucket rate over all requests.

    ``threshold_le`` must be one of the histogram's bucket bounds (the SLO threshold).
    """
    w, base = window_text(window), histogram_base(histogram)
    return (
        f"sum(rate({base}_bucket{with_matchers(selector, le_matcher(threshold_le))}[{w}]))"
        f" / sum(rate({base}_count{with_matchers(selector)}[{w}]))"
    )
def burn_rate_query(
    histogram: str, selector: str, threshold_le: float | str, objective: float, window: str | float,
    *, native: bool = False,
) -> str:
    """Error-budget burn rate: ``(1 - good ratio) / (1 - objective)``; 1 spends it exactly on time.

    ``native=True``: the good ratio of a native histogram (:func:`native_good_ratio_query`),
    where the threshold may fall inside a bucket.
    """
    if not 0.0 < objective < 1.0:
        raise ConfigError(f"SLO objective must be a fraction such as 0.999, got {objective}")
    good = (native_good_ratio_query if native else slo_good_ratio_query)(histogram, selector, threshold_le, window)
    return f"(1 - ({good})) / {format(1.0 - objective, '.12g')}"



def native_good_ratio_query(histogram: str, selector: str, threshold_s: float | str, window: str | float) -> str:
    """``histogram_fraction(-Inf, t, sum(rate(h{sel}[window])))``: share of requests at most ``t`` s.

    ``t`` need not be a bucket bound: Prometheus 2.x interpolates linearly inside the bucket
    holding it (:func:`analyzers.stats.buckets.native_fraction_at_or_below` does the same locally).
    """
    return (
        f"histogram_fraction(-Inf, {_threshold(threshold_s)}, "
        f"sum(rate({histogram_base(histogram)}{with_matchers(selector)}[{window_text(window)}])))"
    )


def native_burn_rate_query(
    histogram: str, selector: str, threshold_s: float | str, objective: float, window: str | float
) -> str:
    """:func:`burn_rate_query` for a native histogram: ``(1 - (histogram_fraction(...))) / (1 - objective)``."""
    return burn_rate_query(histogram, selector, threshold_s, objective, window, native=True)
