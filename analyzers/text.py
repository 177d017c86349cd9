"""Formatting shared by every output (reports, chat, CLI, dashboard): numbers with units.

One place decides how a value reads, so a report, a chat message and the dashboard say the
same thing: ratios as percentages, seconds as milliseconds below one second, intervals named
by their level.
"""

from __future__ import annotations

import math
import re
from typing import Any


def format_value(x: Any, unit: str = "") -> str:
    """A number with its unit: ratios as %, seconds as ms below 1 s."""
    if x is None:
        return "n/a"
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    if not math.isfinite(v):
        return "n/a"
    if unit == "ratio":
        return f"{v * 100:.2f}%"
    if unit == "s":
        return f"{v * 1000:.1f} ms" if abs(v) < 1 else f"{v:.3f} s"
    return f"{v:.4g} {unit}".rstrip()


def ci_label(result: dict[str, Any] | None) -> str:
    """"99% CI": the level of a result's effect interval (1 - alpha of its test).

    Verdicts stored before the level was recorded were computed at alpha 0.05: 95 %.
    """
    level = (result or {}).get("ci_level", 0.95)
    return f"{float(level) * 100:g}% CI"


def format_delta(x: Any, unit: str = "") -> str:
    """A signed change with its unit. A change of a ratio is in percentage points (``+3.93 pp``),
    never ``%``, so it cannot be mistaken for a relative change (:func:`format_relative`)."""
    if x is None:
        return "n/a"
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    if not math.isfinite(v):
        return "n/a"
    if unit == "ratio":
        return f"{v * 100:+.2f} pp"
    return ("+" if v >= 0 else "-") + format_value(abs(v), unit)


def format_relative(x: Any) -> str:
    """A relative change as a signed percentage of the before level (``+747%``)."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "n/a"
    return f"{v * 100:+.1f}%" if math.isfinite(v) else "n/a"


#: Below this a p-value is shown as a bound: doubles cannot tell smaller values apart honestly.
P_FLOOR = 1e-16


def format_p(p: Any) -> str:
    """A p-value for reading: 3 significant digits, ``< 1e-16`` instead of ``0``."""
    try:
        v = float(p)
    except (TypeError, ValueError):
        return "n/a"
    if not math.isfinite(v):
        return "n/a"
    return f"< {P_FLOOR:.0e}" if v < P_FLOOR else f"{v:.3g}"


def format_time(ts: Any, tz: Any, *, seconds: bool = False, zone_name: str | None = None) -> str:
    """``2026-11-27 14:05 CET``: an aware datetime as wall-clock time in ``tz`` (a tzinfo, e.g.
    ``zoneinfo.ZoneInfo``, so each instant gets the offset in force then, DST included), with the
    zone's abbreviation; ``—`` for None."""
    if ts is None:
        return "—"
    local = ts.astimezone(tz)
    fmt = "%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M"
    return f"{local.strftime(fmt)} {local.tzname() or zone_name or ''}".rstrip()


_RFC3339 = re.compile(
    r"\b(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)(Z|[+-]\d{2}:?\d{2})(?![\d:])"
)


def localize_timestamps(text: str, tz: Any, *, zone_name: str | None = None) -> str:
    """``text`` with every RFC 3339 timestamp that carries an offset (``2026-12-06T14:02:00Z``)
    rewritten by :func:`format_time` in ``tz``; timestamps without an offset are left alone."""
    from datetime import datetime

    def repl(m: re.Match[str]) -> str:
        off = m.group(3)
        raw = f"{m.group(1)}T{m.group(2)}{'+00:00' if off == 'Z' else off}"
        try:
            ts = datetime.fromisoformat(raw)
        except ValueError:
            return m.group(0)
        return format_time(ts, tz, seconds=ts.second != 0, zone_name=zone_name)

    return _RFC3339.sub(repl, text)
