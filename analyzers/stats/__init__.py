"""Statistics core: pure numpy/scipy/pandas, no IO.

Public API::

    from analyzers.stats import verify_series, changepoints, adjust_pvalues, SeriesResult
    res = verify_series(series, deploy_at, expect="decrease", min_effect_rel=0.1)
    res.to_dict()                       # JSON-ready verdict with effect, CI, p-value, reason
    changepoints(values)                # [positions where new segments start]
    adjust_pvalues([0.01, 0.2], "holm") # across the metrics of one deploy

Modules: :mod:`.verify` (orchestration and the level path), :mod:`.counts` (Poisson and
constant-history paths), :mod:`.tests_` (AR(1)-aware, spread and Poisson tests),
:mod:`.shapes` (change shapes, ``change_at``), :mod:`.baselines` (pre-window vs same time
earlier), :mod:`.effects` (Hodges-Lehmann with intervals), :mod:`.reporting`,
:mod:`.changepoints`, :mod:`.multiple`, :mod:`.buckets` (histogram quantiles and the
G-test on bucket counts), :mod:`.generators` (scenarios with ground truth
for tests and benchmarks). Method and benchmark figures: ``benchmarks/README_stats.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from analyzers.stats.changepoints import changepoints
from analyzers.stats.multiple import adjust_pvalues
from analyzers.stats.result import NotASeries, SeriesResult

if TYPE_CHECKING:
    from analyzers.stats.verify import verify_series

__all__ = ["verify_series", "changepoints", "adjust_pvalues", "SeriesResult", "NotASeries"]


def __getattr__(name: str) -> Any:
    # Lazy: ``analyzers.stats.buckets`` (the dashboard's latency maths) must not pay for
    # importing scipy.stats, which verify_series needs (about 1.5 s on a cold start).
    if name == "verify_series":
        from analyzers.stats.verify import verify_series

        return verify_series
    raise AttributeError(f"module 'analyzers.stats' has no attribute {name!r}")
