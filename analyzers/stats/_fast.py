"""Cheaper equivalents of numpy reductions for the 1-D arrays of one verification.

``verify_series`` takes ~60 medians of a few hundred points per call, where numpy's generic
``np.median`` (axis handling, NaN check, ``mean`` of the middle pair) costs several times the
partition itself. These give bit-identical values: the same partition, the middle pair
averaged as ``(a + b) / 2`` (what ``np.mean`` of two values computes), NaN when numpy gives NaN.
``tests/unit/test_stats_reference.py`` pins the results of the whole pipeline.
"""

from __future__ import annotations

import numpy as np

#: Up to this many values a full (SIMD) sort is cheaper than a partition.
SORT_MAX = 256


def median(x: np.ndarray) -> float:
    """``float(np.median(x))`` for a 1-D float array.

    (With both -0.0 and 0.0 at the middle of an odd-length array the sign of the zero may
    differ from numpy's, which is itself arbitrary there; every other value is identical.)
    """
    n = x.size
    if n == 0:
        return float(np.median(x))  # numpy's warning and NaN
    h = n // 2
    if n <= SORT_MAX:
        p = np.sort(x)  # NaN sort last, as partition puts them
    else:
        p = np.partition(x, (h, n - 1) if n % 2 else (h - 1, h, n - 1))
    if p[-1] != p[-1]:
        return float("nan")
    return float(p[h]) if n % 2 else float((p[h - 1] + p[h]) / 2.0)


def nanmedian(x: np.ndarray) -> float:
    """``float(np.nanmedian(x))`` for a 1-D float array (NaN, with numpy's warning, when all are NaN)."""
    ok = x[~np.isnan(x)]
    if ok.size == 0:
        return float(np.nanmedian(x))
    return median(ok)


def median_rows(x: np.ndarray) -> np.ndarray:
    """``np.median(x, axis=1)`` for a 2-D float array."""
    n = x.shape[1]
    if n == 0 or x.shape[0] == 0 or np.isnan(x).any():
        return np.asarray(np.median(x, axis=1))
    h = n // 2
    p = np.sort(x, axis=1) if n <= SORT_MAX else np.partition(x, (h - 1, h) if n > 1 else (h,), axis=1)
    if n % 2:
        return p[:, h].copy()
    return (p[:, h - 1] + p[:, h]) / 2.0
