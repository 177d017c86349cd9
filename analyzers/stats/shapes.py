"""Change shapes scanned at a deploy (steps at a few lags, linear ramps) and the
refinement of where a change begins (``change_at``)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["STEP_LAGS_MIN", "RAMP_LEN_MIN", "candidate_shapes", "change_shapes", "refine_start", "shape"]

#: Step lags (minutes after the deploy) and ramp lengths (minutes) scanned as change shapes.
STEP_LAGS_MIN = (0, 1, 2, 3, 4, 5, 6, 7, 10, 15)
RAMP_LEN_MIN = (5, 10, 20, 30)
RAMP_LAGS_MIN = (0,)
#: At most this many change starts are scored in one pass of the change_at refinement.
REFINE_STARTS = 40
#: Squared-z tolerance within which the earliest change start is preferred.
LOCATION_TIE = 2.0


def shape(n: int, start: int, length: int) -> np.ndarray:
    t = np.arange(n, dtype=float)
    if length <= 0:
        return (t >= start).astype(float)
    return np.clip((t - start + 1) / (length + 1), 0.0, 1.0)


def candidate_shapes(
    n: int, dloc: int, step_s: float, ramp_s: float, tpos: np.ndarray
) -> tuple[np.ndarray, list[tuple[str, int]]]:
    last = int(tpos[-1])
    cols: list[np.ndarray] = []
    labels: list[tuple[str, int]] = []
    seen: set[tuple[str, int] | tuple[str, int, int]] = set()
    max_lag = max(0.0, ramp_s)
    for m in STEP_LAGS_MIN:
        if m * 60 > max_lag and m > 0:
            continue
        lag = int(round(m * 60 / step_s))
        start = dloc + lag
        if start > last - 2 or ("step", start) in seen:
            continue
        seen.add(("step", start))
        cols.append(shape(n, start, 0))
        labels.append(("step", 0))
    for m in RAMP_LEN_MIN:
        if m * 60 > max(ramp_s, 0.0):
            continue
        length = int(round(m * 60 / step_s))
        for lag_m in RAMP_LAGS_MIN:
            start = dloc + int(round(lag_m * 60 / step_s))
            if length < 2 or ("ramp", length, start) in seen or start > last - 2:
                continue
            seen.add(("ramp", length, start))
            cols.append(shape(n, start, length))
            labels.append(("ramp", length))
    return np.column_stack(cols), labels


def change_shapes(n: int, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Columns of step (length 0) or ramp shapes, vectorised: rows are window positions."""
    t = np.arange(n, dtype=float)[:, None] - starts[None, :] + 1.0
    return np.clip(t / (lengths[None, :] + 1.0), 0.0, 1.0) * (t > 0)


def refine_start(fit: Any, n: int, dloc: int, step_s: float, ramp_s: float, sign: float) -> tuple[int, int]:
    """Best (start, ramp length) over the starts in the ramp window: steps and ramps.

    Fine series (1 s steps: 1,800 starts) are scanned coarse to fine: every
    ``stride``-th start first, then a finer grid around the best one, down to every start.
    """
    hi = min(int(fit.tpos[-1]) - 1, dloc + int(round(ramp_s / step_s)))
    starts = np.arange(dloc, max(dloc, hi) + 1)
    lengths = [0] + [
        int(round(m * 60 / step_s)) for m in RAMP_LEN_MIN if m * 60 <= ramp_s and int(round(m * 60 / step_s)) >= 2
    ]
    while True:
        stride = max(1, -(-starts.size // REFINE_STARTS))
        best = _best_start(fit, n, starts[::stride], lengths, hi, sign)
        if stride == 1:
            return best
        starts = starts[(starts >= best[0] - stride) & (starts <= best[0] + stride)]


def _best_start(fit: Any, n: int, starts: np.ndarray, lengths: list[int], hi: int, sign: float) -> tuple[int, int]:
    cs, cl = [], []
    for length in lengths:
        ok = starts if length == 0 else starts[starts + length <= hi + length // 2]
        cs.append(ok)
        cl.append(np.full(ok.size, float(length)))
    all_s, all_l = np.concatenate(cs), np.concatenate(cl)
    t = sign * fit.scores(change_shapes(n, all_s, all_l))[0]
    # Near-ties (within LOCATION_TIE in squared z, about one log-likelihood unit): the change
    # begins at the earliest start that explains the data about as well.
    tmax = float(np.max(t))
    ok = np.flatnonzero((t > 0) & (t**2 >= tmax**2 - LOCATION_TIE))
    if ok.size == 0:
        ok = np.array([int(np.argmax(t))])
    first = ok[all_s[ok] == all_s[ok].min()]
    i = int(first[np.argmax(t[first])])
    return int(all_s[i]), int(all_l[i])
