"""Finite-horizon sequential test on the split of events between canary and baseline.

A canary step has a known end (Argo's analysis ``count * interval``, Flagger's
``interval * iterations``, our ``[canary].window``). A boundary that only has to hold until then
is tighter than one that holds for ever: :func:`analyzers.stats.sequential_bounds.horizon_line`
needs z 2.81 at the horizon for one-sided alpha 0.005 where the all-time mixture needs about 3.3.

Model (as in :func:`analyzers.stats.canary.compare_rates`): given interval ``i``'s total events
``t_i``, the canary's ``x_i`` is binomial with success probability
``p_i = s_i r0 / (s_i r0 + 1 - s_i)`` under the null ratio ``r0`` (the tolerance).

* **Information time = calendar intervals.** Each interval's score ``x_i - t_i p_i`` is divided
  by its own binomial SD (known given the totals, which carry no information about the split),
  so every interval adds one unit of information and the horizon in information time is exactly
  the window's number of intervals: nothing is predicted. Intervals where a version is missing
  or no event came count as a unit without movement (conservative). Cost: when the information
  per interval varies a lot inside the window (share 10% -> 50%, traffic falling), equal weights
  lose some power against the best weighting (``(sum sqrt v_i)^2 / (n sum v_i)``), never validity.
* **Looks once per interval.** The line is lowered by Siegmund's correction for a random walk
  watched at each step (``0.5826`` step SDs), so the chance of crossing at one of the window's
  looks is alpha (simulated in ``tests/unit/test_canary_horizon.py``), not less.
* **Exact at small counts.** A look fails only if the score crosses the line *and* the exact upper
  tail of the canary's events so far is at most the normal tail the line asks for there. The
  tail is Hoeffding's (1956) bound: a sum of independent binomials with mixed ``p_i`` is less
  spread in its upper tail than one binomial with the same trials and mean, so ``binom.sf`` on
  the totals is exact-or-conservative at any count (3 errors in 10 minutes are judged by it).
* **Bursts of one version's own.** Each look's score is divided by ``sqrt(phi_k)``, the split's
  dispersion over the intervals so far (:func:`dispersion`, at least 1): a quasi-binomial scale.
* **Frozen after the horizon.** Later looks reuse the horizon's data and decision, so one budget
  covers every look however often anyone polls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.stats import binom, norm

from analyzers.stats.sequential_bounds import horizon_line

#: Siegmund's (1985) correction for a Gaussian random walk watched once per step: crossing a
#: line at discrete looks is as likely as crossing it lowered by this many step SDs continuously.
SIEGMUND_RHO = 0.5826
#: Pseudo-intervals of dispersion ``prior`` that the split's dispersion estimate is shrunk with.
PRIOR_INTERVALS = 2
#: Share of the boundary at the horizon that comes from the line's slope (0: flat, most power
#: at the horizon; larger: earlier detection of large shifts).
TILT = 0.0


@dataclass(frozen=True)
class HorizonTest:
    """Where the finite-horizon test stands after the given intervals.

    Indices are positions in the arrays given to :func:`horizon_test`. ``detected``: the first
    interval whose look failed; ``last``: the interval the figures are at (``detected``, else
    the latest one inside the window); ``frozen``: the window's end was reached, so later looks
    change nothing; ``information``/``horizon``: intervals elapsed and in the window; ``z``: the
    (dispersion-scaled) score in SDs, ``z_needed`` what the line asked for there.
    """

    detected: int | None
    last: int | None
    frozen: bool
    horizon: float
    information: float
    z: float | None
    z_needed: float | None

    def to_dict(self) -> dict[str, object]:
        def num(v: float | None) -> float | None:
            return None if v is None or not math.isfinite(v) else round(float(v), 6)

        return {"detected_interval": self.detected, "last_interval": self.last, "frozen": self.frozen,
                "information": num(self.information), "information_horizon": num(self.horizon),
                "z": num(self.z), "z_needed": num(self.z_needed)}


def horizon_test(x: np.ndarray, y: np.ndarray, s: np.ndarray, pos: np.ndarray, *, horizon: int, alpha: float,
                 theta0: float, dispersion_prior: float = 1.0, tilt: float = TILT,
                 discrete: bool = True) -> HorizonTest:
    """One-sided test of "canary rate <= exp(theta0) x baseline rate" up to ``horizon`` intervals.

    ``x``/``y``: canary/baseline events per interval where both served; ``s``: the canary's share
    of the requests there; ``pos``: each interval's calendar position (0 = the canary's first
    interval), so intervals where a version was missing still count towards the horizon;
    ``dispersion_prior``: the split's dispersion assumed before the data shows it (:func:`dispersion`).
    ``discrete``: looks happen once per interval, so the line is lowered by Siegmund's
    correction for a random walk (``0.5826`` steps' SD); ``False``: the continuous-time line.
    """
    if horizon < 1:
        raise ValueError(f"horizon must be at least one interval, got {horizon}")
    keep = pos < horizon
    x, y, s, pos = x[keep], y[keep], s[keep], pos[keep]
    if x.size == 0:
        return HorizonTest(None, None, False, float(horizon), 0.0, None, None)
    t = x + y
    r0 = math.exp(theta0)
    p = s * r0 / (s * r0 + 1.0 - s)
    v = t * p * (1.0 - p)
    u = np.divide(x - t * p, np.sqrt(v), out=np.zeros(x.size), where=v > 0)
    phi = dispersion(x, y, s, dispersion_prior)
    score = np.cumsum(u) / np.sqrt(phi)
    clock = pos + 1.0  # calendar intervals elapsed: one unit of information each
    a, b = _line(alpha, horizon, tilt)
    if discrete:
        a = max(a - SIEGMUND_RHO, 1e-9)
    line = a + b * clock
    z_needed = line / np.sqrt(clock)
    cross = score >= line
    detected = None
    for k in np.nonzero(cross)[0]:
        if _exact_tail(x[: k + 1], t[: k + 1], p[: k + 1]) <= norm.sf(z_needed[k]):
            detected = int(k)
            break
    at = x.size - 1 if detected is None else detected
    return HorizonTest(detected, at, bool(pos[-1] == horizon - 1 or keep.size > x.size), float(horizon),
                       float(clock[at]), float(score[at] / math.sqrt(clock[at])), float(z_needed[at]))


@lru_cache(maxsize=256)
def _line(alpha: float, horizon: int, tilt: float) -> tuple[float, float]:
    return horizon_line(alpha, float(horizon), tilt)


def dispersion(x: np.ndarray, y: np.ndarray, s: np.ndarray, prior: float = 1.0) -> np.ndarray:
    """The split's extra-binomial dispersion seen up to each interval (inclusive), at least 1.

    Pearson statistic of intervals ``1..k`` around the rate ratio fitted on them, shrunk towards
    ``prior`` by ``PRIOR_INTERVALS`` pseudo-intervals. Dividing a look's score by the square
    root of a number >= 1 only shrinks it, so the test stays valid under the binomial null
    whatever the estimate; when one version has bursts of its own (a pod's bad minute) it
    standardizes the score as a quasi-likelihood would, the burst's own interval included.
    """
    n = x.size
    t = x + y
    cx, cy, cs = np.cumsum(x), np.cumsum(y), np.cumsum(s)
    # fitted odds multiplier per look k: canary events / baseline events, per unit of share odds
    odds = (cx + 0.5) / (cy + 0.5) * (np.arange(1, n + 1) - cs + 1e-9) / (cs + 1e-9)
    lo = np.log(s)[None, :] - np.log1p(-s)[None, :] + np.log(odds)[:, None]
    ph = 1.0 / (1.0 + np.exp(-lo))  # [look k, interval i]
    var = t[None, :] * ph * (1 - ph)
    resid = np.divide((x[None, :] - t[None, :] * ph) ** 2, var, out=np.zeros_like(var), where=var > 0)
    tri = np.tril(np.ones((n, n), dtype=bool))
    pearson = np.where(tri, resid, 0.0).sum(axis=1)
    used = np.cumsum(t > 0)
    return np.maximum(1.0, (PRIOR_INTERVALS * prior + pearson) / (PRIOR_INTERVALS + np.maximum(used - 1, 0)))


def _exact_tail(x: np.ndarray, t: np.ndarray, p: np.ndarray) -> float:
    """Upper tail of the canary's events so far under the null (Hoeffding's binomial bound).

    ``P(sum x_i >= X)`` for independent ``x_i ~ Bin(t_i, p_i)`` is at most ``P(Bin(T, pbar) >= X)``
    with ``T = sum t_i`` and ``pbar`` the mean probability, whenever ``X >= T pbar + 1``
    (Hoeffding 1956, Theorem 4); below that the test never fails (returns 1)."""
    total = float(np.rint(t.sum()))
    events = float(np.rint(x.sum()))
    if total <= 0:
        return 1.0
    pbar = float((t * p).sum()) / total
    if events < total * pbar + 1:
        return 1.0
    return float(binom.sf(events - 1, total, pbar))
