"""Multiple-testing adjustment for the many metrics checked on one deploy.

One deploy is checked on several metrics (its declared expectations plus every
guard metric), so a per-metric alpha of 0.05 would fail one deploy in four with
six healthy metrics. ``adjust_pvalues`` returns adjusted p-values to compare with
the same alpha:

* ``"holm"`` (Holm-Bonferroni) controls the family-wise error rate (the chance of
  *any* false alarm on the deploy) under any dependence between metrics. Use it
  to gate pipelines.
* ``"bh"`` (Benjamini-Hochberg) controls the false discovery rate (the expected
  share of false alarms among flagged metrics); valid for independent or
  positively dependent tests, more power with many metrics.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

__all__ = ["adjust_pvalues"]


def adjust_pvalues(pvalues: Iterable[float | None], method: str = "holm") -> list[float]:
    """Adjusted p-values in the input order, each in [0, 1].

    Missing values (None or NaN: a metric with no test) are left out of the family
    and returned as NaN, so they neither count towards nor receive an adjustment.
    Raises ValueError for an unknown ``method`` or p-values outside [0, 1].
    """
    raw = [float("nan") if p is None else float(p) for p in pvalues]
    idx = [i for i, p in enumerate(raw) if not math.isnan(p)]
    out = [float("nan")] * len(raw)
    if not idx:
        return out
    p = np.array([raw[i] for i in idx], dtype=float)
    if np.any((p < 0) | (p > 1)):
        raise ValueError(f"p-values must lie in [0, 1], got {p[(p < 0) | (p > 1)].tolist()}")
    m = p.size
    order = np.argsort(p, kind="mergesort")
    ps = p[order]
    method_l = method.lower()
    if method_l == "holm":
        adj = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * ps))
    elif method_l in ("bh", "fdr_bh", "benjamini-hochberg"):
        adj = np.minimum.accumulate(m / np.arange(m, 0, -1) * ps[::-1])[::-1]
        adj = np.minimum(1.0, adj)
    else:
        raise ValueError(f"unknown method {method!r}: use 'holm' (family-wise) or 'bh' (false discovery rate)")
    res = np.empty(m)
    res[order] = adj
    for j, i in enumerate(idx):
        out[i] = float(res[j])
    return out
