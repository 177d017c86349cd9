"""Seeded deploy scenarios with ground truth, shared by unit tests and benchmarks.

Every generator returns a :class:`Scenario`: a metric series on a UTC 1-minute grid
(27 h before the deploy, i.e. a day of history before the 3 h analysis window, as the
verifier fetches, and 30 min after; 2 or 8 days of history for the seasonal families), the deploy time, and the truth (did the deploy change it, which way, where
the change begins). Noise has unit marginal standard deviation, so "2 SD" shifts are
``shift=2``.

Null families (the deploy changes nothing): ``iid``, ``ar05``, ``ar08``, ``ar095``,
``seasonal`` (daily cycle, deploy on the traffic ramp, 2 days of history),
``weekly`` (daily + weekday cycle, 8 days), ``heavy`` (Student-t 2.5 noise and GC-pause
bursts), ``gaps`` (scrape gaps, one right at the deploy), ``lowcount`` (Poisson,
~0.5 events a minute), ``drift`` (slow linear drift), ``earlier`` (a step 1-3 h before
the deploy), ``randomwalk``, ``ar2`` and ``wander`` (white noise on a slow AR(0.95)
wander, an ARMA(1,1)): noise that breaks the AR(1) assumption. Transient null families
(``TRANSIENT_FAMILIES``): ``blip`` (pods restart: 3-6 SD off the level for 1-4 min at the
deploy, then back) and ``coldcache`` (a 3-5 SD jump decaying back with a 0.7-1.5 min time constant).

Effect families (the deploy changes the metric): ``step_up``/``step_down`` (2 SD,
0-5 min lag), ``step_ar08`` (2 SD on AR(1) 0.8), ``step_heavy``, ``step_seasonal``,
``ramp20``/``ramp30`` (20/30-min linear rollout), ``variance`` (spread x3), ``lowcount_up`` (rate x3),
``small1`` (1 SD), ``big4`` (4 SD).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
from scipy.signal import lfilter

STEP_S = 60.0
#: The analysis window before the deploy (what ``verify_series`` compares against).
BEFORE_S = 3 * 3600.0
#: History given before the deploy: a day before the analysis window, as the verifier
#: fetches (it passes 1-8 days; ``verify_series`` estimates the noise memory on it).
HISTORY_S = 86400.0 + BEFORE_S
AFTER_S = 60 * 60.0
EPOCH = pd.Timestamp("2026-03-02T00:00:00Z")  # a Monday


@dataclass(frozen=True)
class Scenario:
    """A series around one deploy with its ground truth."""

    family: str
    series: pd.Series
    deploy_at: pd.Timestamp
    shifted: bool
    direction: str | None = None
    change_at: pd.Timestamp | None = None
    kind: str = "gauge"
    counts: pd.Series | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def options(self) -> dict[str, Any]:
        """Keyword options for ``verify_series`` that describe this metric."""
        opts: dict[str, Any] = {"kind": self.kind}
        if self.counts is not None:
            opts["counts"] = self.counts
        return opts


def ar1(n: int, phi: float, rng: np.random.Generator, innov: np.ndarray | None = None) -> np.ndarray:
    """AR(1) noise with unit marginal variance (burn-in included)."""
    burn = int(min(2000, 10 / max(1e-3, 1 - phi)))
    w = rng.standard_normal(n + burn) if innov is None else np.concatenate([rng.standard_normal(burn), innov])
    x = lfilter([np.sqrt(1 - phi * phi)], [1.0, -phi], w)
    return x[burn:]


def _frame(rng: np.random.Generator, history_s: float = HISTORY_S, after_s: float = AFTER_S,
           jitter_s: float = 0.0) -> tuple[pd.DatetimeIndex, pd.Timestamp, int]:
    n_before = int(history_s / STEP_S)
    n_after = int(after_s / STEP_S)
    start = EPOCH + pd.Timedelta(minutes=int(rng.integers(0, 7 * 1440)))
    idx = pd.date_range(start, periods=n_before + n_after, freq=pd.Timedelta(seconds=STEP_S))
    deploy = idx[n_before] - pd.Timedelta(seconds=float(rng.uniform(0, jitter_s)))
    return idx, deploy, n_before


def _step(n: int, at: int, size: float, ramp: int = 0) -> np.ndarray:
    t = np.arange(n, dtype=float)
    if ramp <= 0:
        return size * (t >= at)
    return size * np.clip((t - at + 1) / (ramp + 1), 0, 1)


def _mk(family: str, idx: pd.DatetimeIndex, values: np.ndarray, deploy: pd.Timestamp, shifted: bool,
        direction: str | None = None, change_pos: int | None = None, **kw: Any) -> Scenario:
    change_at = idx[change_pos] if change_pos is not None else None
    return Scenario(family, pd.Series(values, index=idx, name=family), deploy, shifted, direction, change_at,
                    **kw)


def _noise(family: str, n: int, rng: np.random.Generator) -> np.ndarray:
    if family == "heavy":
        x = rng.standard_t(2.5, n) / np.sqrt(2.5 / 0.5)
        for _ in range(rng.poisson(n / 180)):  # GC pauses: short bursts
            at = int(rng.integers(0, n))
            x[at : at + int(rng.integers(1, 4))] += rng.uniform(4, 10)
        return x
    return ar1(n, 0.5, rng)


def null_scenario(family: str, seed: int) -> Scenario:
    """A series where the deploy changes nothing (see the module doc for families)."""
    rng = np.random.default_rng([seed, zlib.crc32(family.encode())])
    if family in ("seasonal", "weekly"):
        return _seasonal(family, rng, shift=0.0)
    idx, deploy, d = _frame(rng)
    n = idx.size
    if family == "iid":
        x = rng.standard_normal(n)
    elif family in ("ar05", "ar08", "ar095"):
        x = ar1(n, float("0." + family[3:]), rng)
    elif family == "ar2":  # oscillating memory: breaks the AR(1) assumption
        w = rng.standard_normal(n + 500)
        x = lfilter([1.0], [1.0, -1.2, 0.5], w)[500:]
        x /= np.std(x)
    elif family == "wander":  # white noise on a slow AR(0.95) wander: breaks the AR(1) assumption
        x = (rng.standard_normal(n) + 0.7 * ar1(n, 0.95, rng)) / math.sqrt(1.49)
    elif family == "randomwalk":
        x = np.cumsum(rng.standard_normal(n)) * 0.15
    elif family == "heavy":
        x = _noise("heavy", n, rng)
    elif family == "gaps":
        x = ar1(n, 0.5, rng)
        x[rng.random(n) < 0.1] = np.nan
        g = int(rng.integers(0, 6))
        x[d - g : d - g + int(rng.integers(3, 10))] = np.nan
    elif family == "lowcount":
        lam = rng.uniform(0.2, 2.0)
        return _mk(family, idx, rng.poisson(lam, n).astype(float), deploy, False, kind="count",
                   params={"lambda": lam})
    elif family == "drift":
        slope = rng.choice([-1, 1]) * rng.uniform(2.0, 4.0) / (4 * 60)  # 2-4 SD over 4 hours
        x = ar1(n, 0.5, rng) + slope * (np.arange(n) - d)
    elif family == "earlier":
        at = d - int(rng.integers(60, 180))
        x = ar1(n, 0.5, rng) + _step(n, at, float(rng.choice([-2.0, 2.0])))
    elif family == "blip":  # pods restart: a few minutes far off the level, then back
        at = d + int(rng.integers(0, 2))
        length = int(rng.integers(1, 5))
        x = ar1(n, 0.5, rng)
        x[at : at + length] += float(rng.choice([-1.0, 1.0])) * rng.uniform(3.0, 6.0)
        return _mk(family, idx, 10.0 + x, deploy, False, params={"blip_min": length})
    elif family == "coldcache":  # cold caches / JIT warm-up: a jump that decays back
        at = d + int(rng.integers(0, 2))
        tau = rng.uniform(0.7, 1.5)
        t = np.arange(n, dtype=float) - at
        x = ar1(n, 0.5, rng) + np.where(t >= 0, rng.uniform(3.0, 5.0) * np.exp(-np.maximum(t, 0) / tau), 0.0)
        return _mk(family, idx, 10.0 + x, deploy, False, params={"tau_min": tau})
    else:
        raise ValueError(f"unknown null family {family!r}; known: {', '.join(NULL_FAMILIES)}")
    return _mk(family, idx, 10.0 + x, deploy, False)


def _seasonal(family: str, rng: np.random.Generator, shift: float, lag: int = 0) -> Scenario:
    days = 8 if family.startswith("weekly") else 2
    idx, deploy, d = _frame(rng, history_s=days * 86400 + BEFORE_S)
    n = idx.size
    minute = np.arange(n, dtype=float)
    # Put the deploy on the steepest part of the daily ramp (+-1 h).
    phase = (d + rng.uniform(-60, 60)) / 1440.0
    amp: float | np.ndarray = 4.0
    if days == 8:  # each weekday has its own amplitude, weekends sit lower
        dow = np.asarray(idx.day_of_week, dtype=float)
        amp = 4.0 * (1.0 + 0.5 * np.sin(2 * np.pi * dow / 7.0))
    x = 20 + amp * np.sin(2 * np.pi * (minute / 1440.0 - phase)) + ar1(n, 0.5, rng)
    if days == 8:
        x = x - 2.0 * np.asarray(idx.day_of_week >= 5, dtype=float)
    direction = None
    change = None
    if shift:
        x = x + _step(n, d + lag, shift)
        direction = "increase" if shift > 0 else "decrease"
        change = d + lag
    return _mk(family, idx, x, deploy, bool(shift), direction, change)


def effect_scenario(family: str, seed: int) -> Scenario:
    """A series where the deploy changes the metric, with where the change begins."""
    rng = np.random.default_rng([seed, zlib.crc32(family.encode()), 1])
    lag = int(rng.integers(0, 6))
    if family == "step_seasonal":
        sc = _seasonal("seasonal", rng, shift=float(rng.choice([-2.0, 2.0])), lag=lag)
        return replace(sc, family=family, series=sc.series.rename(family))
    idx, deploy, d = _frame(rng)
    n = idx.size
    at = d + lag
    sign = float(rng.choice([-1.0, 1.0]))
    if family in ("step_up", "step_down", "small1", "big4"):
        size = {"step_up": 2.0, "step_down": -2.0, "small1": sign, "big4": 4 * sign}[family]
        x = ar1(n, 0.5, rng) + _step(n, at, size)
    elif family == "step_ar08":
        size = 2.0 * sign
        x = ar1(n, 0.8, rng) + _step(n, at, size)
    elif family == "step_heavy":
        size = 2.0 * sign
        x = _noise("heavy", n, rng) + _step(n, at, size)
    elif family in ("ramp20", "ramp30"):
        size = 2.0 * sign
        x = ar1(n, 0.5, rng) + _step(n, at, size, ramp=int(family[4:]))
    elif family == "variance":
        x = ar1(n, 0.5, rng)
        x[at:] *= 3.0
        return _mk(family, idx, 10 + x, deploy, True, None, at)
    elif family == "lowcount_up":
        lam = rng.uniform(0.3, 1.0)
        rate = np.where(np.arange(n) >= at, 3 * lam, lam)
        return _mk(family, idx, rng.poisson(rate).astype(float), deploy, True, "increase", at, kind="count")
    else:
        raise ValueError(f"unknown effect family {family!r}; known: {', '.join(EFFECT_FAMILIES)}")
    return _mk(family, idx, 10.0 + x, deploy, True, "increase" if size > 0 else "decrease", at)


NULL_FAMILIES: tuple[str, ...] = ("iid", "ar05", "ar08", "ar095", "seasonal", "weekly", "heavy", "gaps",
                                  "lowcount", "drift", "earlier", "randomwalk", "ar2", "wander")
#: Null families with a transient at the deploy (restart blip; cold cache decaying back): not in
#: NULL_FAMILIES, whose single-look figures and reference corpus predate them; the sequential
#: benchmark runs them.
TRANSIENT_FAMILIES: tuple[str, ...] = ("blip", "coldcache")
EFFECT_FAMILIES: tuple[str, ...] = ("step_up", "step_down", "step_ar08", "step_heavy", "step_seasonal",
                                    "ramp20", "ramp30", "variance", "lowcount_up", "small1", "big4")

GENERATORS: dict[str, Callable[[int], Scenario]] = {
    **{f: partial(null_scenario, f) for f in NULL_FAMILIES + TRANSIENT_FAMILIES},
    **{f: partial(effect_scenario, f) for f in EFFECT_FAMILIES},
}


def scenario(family: str, seed: int = 0) -> Scenario:
    """Any family by name (null or effect)."""
    try:
        return GENERATORS[family](seed)
    except KeyError:
        raise ValueError(f"unknown family {family!r}; known: {', '.join(GENERATORS)}") from None
