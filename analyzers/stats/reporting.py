"""Small shared pieces of ``verify_series``: the time grid context, number formatting for
reasons, and the minimum-meaningful-effect decision."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pandas as pd

from analyzers.stats.result import Status
from analyzers.text import format_change, format_interval, format_number, format_value, human_duration

__all__ = ["Ctx", "decide", "fmt", "fmt_change", "fmt_interval", "iso_str", "meaningful", "minutes", "rel"]


def fmt(x: float | None, unit: str = "") -> str:
    """A level in a reason: with its unit when the caller named one (``verify_series(unit=...)``,
    e.g. ``212.0 ms``, ``4.35%``), else three significant digits."""
    return format_value(x, unit) if unit else format_number(x)


def fmt_change(x: float | None, unit: str = "", *, signed: bool = True) -> str:
    """A change in a reason: ``+3.93 pp`` / ``-97.5 ms`` with a unit (``signed=False``: its size),
    else three significant digits as the number reads."""
    if not unit:
        v = format_number(x)
        return v.lstrip("-") if not signed and v != "n/a" else v
    return format_change(x, unit, signed=signed)


def fmt_interval(lo: float | None, hi: float | None, unit: str = "") -> str:
    """``CI -225.0 ms to +29.6 ms`` (one scale) with a unit, else ``CI -0.225 to 0.0296``."""
    if unit:
        return "CI " + format_interval(lo, hi, unit)
    return f"CI {format_number(lo)} to {format_number(hi)}"


def minutes(seconds: float) -> str:
    """``45 s``, ``6 min``: a duration in a reason."""
    return human_duration(seconds)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Ctx:
    """Shared state of one verification (kept small; not part of the API)."""

    def __init__(self, t0: pd.Timestamp, step_s: float, unit: str = "") -> None:
        self.t0 = t0
        self.step_s = step_s
        self.unit = unit  # the metric's unit for reason text ("" when the caller named none)
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
    unit: str = "",
) -> tuple[Status, str | None]:
    """Apply the minimum meaningful effect. Returns (status, why-not note or None)."""
    if not significant:
        return "unchanged", None
    if min_effect is not None and math.isfinite(effect) and abs(effect) < float(min_effect):
        return "unchanged", f"below the minimum meaningful effect of {fmt_change(float(min_effect), unit, signed=False)}"
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
