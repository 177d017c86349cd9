"""Small shared pieces of ``verify_series``: the time grid context, number formatting for
reasons, and the minimum-meaningful-effect decision."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pandas as pd

from analyzers.stats.result import Status
from analyzers.text import format_number, human_duration

__all__ = ["Ctx", "decide", "fmt", "iso_str", "meaningful", "minutes", "rel"]


def fmt(x: float | None, unit: str = "") -> str:
    """A number in a reason (the series' own units, which the stats core does not know)."""
    s = format_number(x)
    return s if s == "n/a" else s + unit


def minutes(seconds: float) -> str:
    """``45 s``, ``6 min``: a duration in a reason."""
    return human_duration(seconds)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Ctx:
    """Shared state of one verification (kept small; not part of the API)."""

    def __init__(self, t0: pd.Timestamp, step_s: float) -> None:
        self.t0 = t0
        self.step_s = step_s
        self._t0_ns = int(t0.value)  # nanoseconds since the epoch (UTC)

    def at(self, pos: int) -> datetime:
        ns = self._t0_ns + int(round(pos * self.step_s * 1e9))
        if ns % 1000 == 0:  # whole microseconds: the same datetime without pandas' overhead
            return _EPOCH + timedelta(microseconds=ns // 1000)
        return pd.Timestamp(ns, tz="UTC").to_pydatetime()


def iso_str(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def decide(
    *,
    significant: bool,
    effect: float,
    level: float,
    direction: str | None,
    min_effect: float | None,
    min_effect_rel: float | None,
) -> tuple[Status, str | None]:
    """Apply the minimum meaningful effect. Returns (status, why-not note or None)."""
    if not significant:
        return "unchanged", None
    if min_effect is not None and math.isfinite(effect) and abs(effect) < float(min_effect):
        return "unchanged", f"below the minimum meaningful effect of {fmt(float(min_effect))}"
    if min_effect_rel is not None and math.isfinite(effect) and level != 0 and math.isfinite(level):
        if abs(effect) / abs(level) < float(min_effect_rel):
            return "unchanged", f"below the minimum meaningful effect of {float(min_effect_rel):.0%}"
    return "shifted", None


def meaningful(min_effect: float | None, min_effect_rel: float | None, level: float) -> float | None:
    """The smallest change that matters, in metric units (the larger of the two floors)."""
    floors = []
    if min_effect is not None:
        floors.append(abs(float(min_effect)))
    if min_effect_rel is not None and math.isfinite(level) and level != 0:
        floors.append(abs(float(min_effect_rel) * level))
    return max(floors) if floors else None


def rel(effect: float, level: float) -> float | None:
    if not (math.isfinite(effect) and math.isfinite(level)) or abs(level) < 1e-12:
        return None
    return effect / abs(level)
