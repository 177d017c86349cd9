"""Formatting shared by every output (reports, chat, CLI, dashboard): numbers with units.

One place decides how a value reads, so a report, a chat message and the dashboard say the
same thing: ratios as percentages, seconds as milliseconds below one second, intervals named
by their level.
"""

from __future__ import annotations

import math
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
