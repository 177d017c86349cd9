"""Boundaries of the level confidence sequence (:mod:`analyzers.stats.sequential`): the linear
boundary (the default) and the one-sided normal mixture, both in intrinsic (information) time."""

from __future__ import annotations

import math

import numpy as np


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
