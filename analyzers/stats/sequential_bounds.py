"""Boundaries of the level confidence sequence (:mod:`analyzers.stats.sequential`), in intrinsic
(information) time: the finite-horizon line (the default: looks stop at the end of the
verification window), the all-time line and the one-sided normal mixture."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

_SQRT2 = math.sqrt(2.0)


def one_sided_mixture_radius(v: np.ndarray | float, alpha: float, rho: float) -> np.ndarray:
    """The one-sided normal-mixture boundary (Howard et al. 2021, eq. 14): a martingale with
    intrinsic time ``v`` ever exceeds ``sqrt(2 (v + rho) log(sqrt((v + rho) / rho) / (2 alpha) + 1))``
    with probability at most ``alpha``."""
    v = np.asarray(v, dtype=float)
    return np.sqrt(2.0 * (v + rho) * np.log(np.sqrt((v + rho) / rho) / (2.0 * alpha) + 1.0))


def line_offset(v: np.ndarray, alpha: float, v_target: float) -> np.ndarray:
    """Half-width (in units of the innovation SD) of the linear-boundary sequence for the shift.

    A Brownian motion ``S`` in intrinsic time ``V`` ever crosses ``a + b V`` with probability
    ``exp(-2ab)`` (exact, over all time). With ``ab = log(1/alpha) / 2`` and ``b`` chosen so the
    line is tightest at ``v_target`` (``a = b v_target``), ``|S - delta V| <= a + b V`` at every
    ``V`` with probability ``1 - alpha``: the shift lies in ``S/V -+ (a/V + b)``.
    """
    half_log = math.log(1.0 / alpha) / 2.0
    b = math.sqrt(half_log / max(v_target, 1e-9))
    a = half_log / b
    return a / v + b


def rho_for(v_target: float, alpha: float) -> float:
    """The mixture precision that makes the boundary tightest near intrinsic time ``v_target``."""
    l2 = 2.0 * math.log(1.0 / alpha)
    return max(v_target / (l2 + math.log(1.0 + l2)), 1e-6)


def horizon_crossing(a: float, b: float, v_max: float) -> float:
    """Chance that a standard Brownian motion ``W`` crosses the line ``a + b V`` at some
    ``V <= v_max`` (Bachelier-Levy, exact for continuous monitoring; discrete looks cross less
    often, so the figure is an upper bound for them)."""
    root = math.sqrt(v_max)
    upper = 0.5 * math.erfc((a + b * v_max) / root / _SQRT2)  # P(N > (a + b v) / sqrt v)
    lower = 0.5 * math.erfc(-(b * v_max - a) / root / _SQRT2)  # P(N < (b v - a) / sqrt v)
    return float(upper + math.exp(-2.0 * a * b) * lower)


def horizon_line(alpha: float, v_max: float, tilt: float = 0.0) -> tuple[float, float]:
    """Intercept and slope ``(a, b)`` of a line that a Brownian motion crosses before intrinsic
    time ``v_max`` with probability exactly ``alpha`` (one side).

    Unlike :func:`line_offset`, which holds over all time, this boundary only has to hold until a
    known horizon (the end of the verification window), so it is tighter there: with ``tilt=0``
    (a flat line, the reflection principle) a z statistic at the horizon needs 2.58 for
    ``alpha=0.01`` instead of 3.03 for the all-time line tightest there. ``tilt`` is the share of the boundary
    at the horizon that comes from the slope (``b v_max = tilt (a + b v_max)``): larger tilts
    lower the boundary early (faster detection of big shifts) and raise it at the horizon.
    Beyond ``v_max`` the boundary gives no guarantee, so callers must stop looking there.
    """
    if not 0.0 <= tilt < 1.0:
        raise ValueError(f"tilt must be in [0, 1), got {tilt}")
    a1, b1 = _unit_horizon_line(float(alpha), float(tilt))
    root = math.sqrt(v_max)
    return a1 * root, b1 / root


@lru_cache(maxsize=4096)
def _unit_horizon_line(alpha: float, tilt: float) -> tuple[float, float]:
    """:func:`horizon_line` at ``v_max = 1``; every other horizon is a rescaling (Brownian scaling:
    ``a`` grows with ``sqrt(v_max)``, ``b`` shrinks with it), so one root-finding per level."""
    from scipy.optimize import brentq

    def excess(height: float) -> float:
        return horizon_crossing((1.0 - tilt) * height, tilt * height, 1.0) - alpha

    height = brentq(excess, 1e-6, 40.0, xtol=1e-12)
    return (1.0 - tilt) * height, tilt * height


def horizon_offset(v: np.ndarray | float, alpha: float, v_max: float, tilt: float = 0.0) -> np.ndarray:
    """Half-width (in units of the innovation SD) of the finite-horizon sequence for the shift at
    intrinsic time ``v <= v_max``: the shift lies in ``S/V -+ (a/V + b)`` at every look before the
    horizon with probability ``1 - 2 alpha`` (``alpha`` per side), ``(a, b)`` from
    :func:`horizon_line`."""
    a, b = horizon_line(alpha, v_max, tilt)
    v = np.asarray(v, dtype=float)
    return a / v + b
