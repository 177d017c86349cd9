"""The frozen result of :func:`analyzers.stats.verify_series` and the stats domain errors."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import numpy as np

from analyzers.errors import AnalyzerError

Status = Literal["shifted", "unchanged", "inconclusive"]
Direction = Literal["increase", "decrease"]
ChangeKind = Literal["level", "variance", "rate"]

__all__ = ["SeriesResult", "NotASeries", "Status", "Direction", "ChangeKind"]


class NotASeries(AnalyzerError, TypeError):
    """The input is not a time series at all (no DatetimeIndex, not numeric, bad deploy time).

    Data that is a series but cannot be judged (all NaN, three points, constant) is
    not an error: it gives an ``inconclusive`` result with a reason.
    """


def _clean(v: Any) -> Any:
    """JSON-ready: numpy scalars to Python, NaN/inf to None, datetimes to RFC 3339."""
    if v is None:
        return None
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_clean(x) for x in v]
    if isinstance(v, np.bool_ | bool):
        return bool(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating | float):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, datetime):
        return _iso(v)
    return v


def _iso(ts: datetime | None) -> str | None:
    if ts is None:
        return None
    s = ts.isoformat()
    return s.replace("+00:00", "Z")


@dataclass(frozen=True)
class SeriesResult:
    """Verdict on one metric series around one deploy.

    * ``status``: ``"shifted"`` (the series changed at the deploy, allowing a rollout
      ramp), ``"unchanged"`` (no change at the deploy, or one smaller than the minimum
      meaningful effect), ``"inconclusive"`` (no data, too few points, too many gaps).
    * ``direction``: ``"increase"``/``"decrease"`` of the level, None when unchanged or
      when only the spread changed (``change_kind == "variance"``).
    * ``effect``: Hodges-Lehmann shift after minus before, in the metric's units and
      against ``baseline``; ``effect_ci`` its (1 - alpha) interval; ``effect_rel`` the
      shift as a fraction of the level before (None when that level is ~0).
    * ``p_value``: two-sided, for "changed at the deploy" under the stated model
      (``method``); compare it with alpha, or adjust across metrics with
      :func:`analyzers.stats.adjust_pvalues`.
    * ``needed_more_s``: when inconclusive for lack of points after the deploy, how many
      seconds more data to wait for; else None.
    """

    status: Status
    reason: str
    direction: Direction | None = None
    change_at: datetime | None = None
    effect: float | None = None
    effect_rel: float | None = None
    effect_ci: tuple[float, float] | None = None
    p_value: float | None = None
    baseline: str | None = None
    method: str = ""
    n_before: int = 0
    n_after: int = 0
    needed_more_s: float | None = None
    before_window: tuple[datetime, datetime] | None = None
    after_window: tuple[datetime, datetime] | None = None
    change_kind: ChangeKind | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def shifted(self) -> bool:
        return self.status == "shifted"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: Python floats, NaN as None, timestamps as RFC 3339 UTC strings."""
        d: dict[str, Any] = {
            "status": self.status,
            "direction": self.direction,
            "change_at": _iso(self.change_at),
            "effect": self.effect,
            "effect_rel": self.effect_rel,
            "effect_ci": list(self.effect_ci) if self.effect_ci is not None else None,
            "p_value": self.p_value,
            "baseline": self.baseline,
            "reason": self.reason,
            "method": self.method,
            "n_before": self.n_before,
            "n_after": self.n_after,
            "needed_more_s": self.needed_more_s,
            "before_window": [_iso(t) for t in self.before_window] if self.before_window else None,
            "after_window": [_iso(t) for t in self.after_window] if self.after_window else None,
            "change_kind": self.change_kind,
            "details": self.details,
        }
        return _clean(d)
