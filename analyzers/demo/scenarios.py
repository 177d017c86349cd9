"""Seeded demo/test data with ground truth: services, pods, traffic and deploys.

One generator serves the demo, the tests and the benchmarks (the ``ruptures.datasets``
idea: a signal together with its true change points). A :class:`Scenario` holds per-pod
arrays of *per-step increments* (requests, errors, histogram buckets, latency sums) on a
regular grid, plus the deploys that happened in it, each with the deploy-event/v1 body to
POST, the true effect per catalog metric and the verdict a correct verifier reaches.

The model, per service (all random draws come from one ``numpy.random.Generator(seed)``):

* traffic: peak rate per endpoint x a daily cycle in the users' local time (night 0.3,
  morning ramp 06:00-09:00, evening decline) x slow AR(1) noise, Poisson per pod and step,
  split evenly over the pods alive at that step (rollouts add and remove pods one by one,
  like a Kubernetes rolling update with surge 1; pod names change with the version);
* latency: a log-normal per endpoint whose median and width follow load, AR(1) noise on
  log-latency (10 min time constant), a fixed offset per node (pod i of every version runs
  where pod i ran, so a no-op deploy moves nothing) and short GC-pause bursts in which a
  share of one pod's requests takes ~0.7 s; histogram buckets are a multinomial draw of the step's
  requests, ``_sum`` uses the exact conditional means within each bucket;
* errors: Binomial(requests, ratio) per pod and step (low counts, so Poisson-like).

Deploy effects multiply the service's state: ``deploy`` effects ride on the new version's
pods (so a gradual rollout ramps them in), ``release`` (feature flag) effects switch on for
the whole service at ``started_at``. Truth is what the generator did, not what a test sees:
a no-op deploy during the morning ramp has ``request_rate: unchanged`` although traffic
rises through it. Timestamps are whole seconds, aware UTC.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
from scipy.signal import lfilter
from scipy.special import ndtr

from analyzers.demo import openmetrics as om
from analyzers.model import Deploy, iso, to_utc

#: Finite upper bounds of the classic histogram (``+Inf`` is implicit).
BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: ``le`` label values in exposition form, ``+Inf`` last.
LE_LABELS: tuple[str, ...] = tuple(f"{b:g}" for b in BUCKETS) + ("+Inf",)
#: Catalog metric keys the truth is stated for (see ``analyzers.config.DEFAULT_METRICS``).
TRUTH_METRICS: tuple[str, ...] = ("error_ratio", "latency_p99", "latency_shift", "latency_p50", "request_rate")
#: Catalog metrics that guard every deploy by default, and the direction that is bad.
GUARDS_BAD: dict[str, str] = {"error_ratio": "increase", "latency_p99": "increase", "latency_shift": "increase"}

_Z99 = 2.3263478740408408  # standard normal 0.99 quantile
GC_MEDIAN_S = 0.7
GC_SIGMA = 0.35
LOAD_LATENCY = math.log(1.35)  # median latency at peak load is 35 % above the night value
LOAD_SIGMA = 0.15  # log-sd widens by 15 % at peak load
_K8S_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


# --------------------------------------------------------------------------- profiles


class ScheduleError(ValueError):
    """The requested cases do not fit into the scenario's time span."""


@dataclass(frozen=True)
class EndpointProfile:
    """One endpoint: ``peak_rps`` for the whole service at peak load, median latency at night."""

    path: str
    peak_rps: float
    median_s: float


@dataclass(frozen=True)
class ServiceProfile:
    """A service's steady state before any scenario deploy. ``sigma`` is the log-sd of latency."""

    name: str
    endpoints: tuple[EndpointProfile, ...]
    sigma: float
    error_ratio: float
    first_version: str
    pods: int = 2


SERVICES: tuple[ServiceProfile, ...] = (
    ServiceProfile(
        "checkout",
        (
            EndpointProfile("/cart", 12.0, 0.060),
            EndpointProfile("/checkout", 6.0, 0.160),
            EndpointProfile("/orders", 3.0, 0.090),
        ),
        sigma=0.55,
        error_ratio=0.005,
        first_version="v1.14.0",
    ),
    ServiceProfile(
        "search",
        (EndpointProfile("/search", 25.0, 0.045), EndpointProfile("/suggest", 15.0, 0.015)),
        sigma=0.60,
        error_ratio=0.004,
        first_version="v3.2.0",
    ),
    ServiceProfile(
        "payments",
        (
            EndpointProfile("/authorize", 5.0, 0.200),
            EndpointProfile("/capture", 3.0, 0.140),
            EndpointProfile("/refund", 0.5, 0.300),
        ),
        sigma=0.50,
        error_ratio=0.005,
        first_version="v2.7.3",
    ),
)


@dataclass(frozen=True)
class Effect:
    """Multipliers a deploy applies to its service (1.0 = no change)."""

    latency_median: float = 1.0
    latency_sigma: float = 1.0
    error_ratio: float = 1.0
    request_rate: float = 1.0

    def then(self, other: Effect) -> Effect:
        """The state after ``self`` and then ``other``."""
        return Effect(
            self.latency_median * other.latency_median,
            self.latency_sigma * other.latency_sigma,
            self.error_ratio * other.error_ratio,
            self.request_rate * other.request_rate,
        )


NO_EFFECT = Effect()


@dataclass(frozen=True)
class CaseSpec:
    """A deploy to place in a scenario. ``local_hour`` pins it to a time of the users' day."""

    case: str
    service: str
    description: str
    effect: Effect = NO_EFFECT
    expectations: tuple[tuple[str, str], ...] = ()
    kind: Literal["deploy", "release"] = "deploy"
    rollout_s: int = 120
    flag: str | None = None
    local_hour: float | None = None
    after_previous_s: int | None = None  # placed this long after the previous case (a pair)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ScenarioDeploy:
    """One deploy with its ground truth.

    ``event`` is a deploy-event/v1 body ready to POST; ``truth`` maps catalog metric keys to
    ``increase`` / ``decrease`` / ``unchanged`` (the effect the generator applied at this
    deploy); ``expected_overall`` is the verdict a correct verifier gives with the default
    guards (error_ratio, latency_p99): ``fail`` when a guard got worse or a declared
    expectation went the other way.
    """

    case: str
    event: dict[str, Any]
    truth: dict[str, str]
    expected_overall: Literal["pass", "fail"]
    effect: Effect
    rollout_s: int

    @property
    def service(self) -> str:
        return str(self.event["service"])

    @property
    def started_at(self) -> datetime:
        return to_utc(str(self.event["started_at"]))

    @property
    def finished_at(self) -> datetime:
        return to_utc(str(self.event["finished_at"]))

    def to_deploy(self) -> Deploy:
        """The stored form of :attr:`event` (what the receiver records), signed."""
        from analyzers.events.schema import parse_event

        return parse_event(self.event).to_deploy(signed=True)


@dataclass(frozen=True, eq=False)
class PodSeries:
    """Per-step increments of one (service, endpoint, version, pod) over the pod's life.

    Arrays cover grid indices ``start_idx .. start_idx + len - 1``. ``buckets`` has one
    column per bucket in :data:`LE_LABELS` holding *non-cumulative* counts (column ``i``
    counts requests in ``(BUCKETS[i-1], BUCKETS[i]]``); cumulate over columns for ``le``
    and over time for the exposed counters. ``latency_sum`` is in seconds.
    """

    service: str
    endpoint: str
    version: str
    pod: str
    start_idx: int
    requests: np.ndarray
    errors: np.ndarray
    buckets: np.ndarray
    latency_sum: np.ndarray

    @property
    def labels(self) -> dict[str, str]:
        return {"service": self.service, "endpoint": self.endpoint, "version": self.version, "pod": self.pod}


@dataclass(frozen=True, eq=False)
class Scenario:
    """Generated data on the grid ``start + k * step_s`` (k = 0 .. n_steps-1), all UTC."""

    name: str
    seed: int
    start: datetime
    step_s: int
    n_steps: int
    utc_offset_h: float
    services: tuple[str, ...]
    series: tuple[PodSeries, ...]
    deploys: tuple[ScenarioDeploy, ...]

    @property
    def end(self) -> datetime:
        """Time of the last sample."""
        return self.start + timedelta(seconds=self.step_s * (self.n_steps - 1))

    @property
    def timestamps(self) -> np.ndarray:
        """Unix seconds (int64) of every grid point."""
        t0 = int(self.start.timestamp())
        return t0 + self.step_s * np.arange(self.n_steps, dtype=np.int64)

    def index_of(self, ts: datetime) -> int:
        """Grid index at or before ``ts`` (clipped to the data)."""
        k = int((ts - self.start).total_seconds() // self.step_s)
        return min(max(k, 0), self.n_steps - 1)

    def deploy(self, case: str) -> ScenarioDeploy:
        """The deploy of a named case (``regression``, ``improvement``, ``noop`` ...)."""
        for d in self.deploys:
            if d.case == case:
                return d
        raise KeyError(f"scenario {self.name!r} has no case {case!r}; cases: {[d.case for d in self.deploys]}")

    def service_increments(self, service: str) -> dict[str, np.ndarray]:
        """Per-step totals over all pods and endpoints of ``service``.

        Keys: ``requests``, ``errors``, ``latency_sum`` (shape ``(n_steps,)``) and ``buckets``
        (``(n_steps, 12)``, non-cumulative). What Prometheus sees as
        ``sum(increase(...))`` over a window is the sum of these over the steps in it.
        """
        out = {
            "requests": np.zeros(self.n_steps, dtype=np.int64),
            "errors": np.zeros(self.n_steps, dtype=np.int64),
            "latency_sum": np.zeros(self.n_steps),
            "buckets": np.zeros((self.n_steps, len(LE_LABELS)), dtype=np.int64),
        }
        for s in self.series:
            if s.service != service:
                continue
            sl = slice(s.start_idx, s.start_idx + len(s.requests))
            out["requests"][sl] += s.requests
            out["errors"][sl] += s.errors
            out["latency_sum"][sl] += s.latency_sum
            out["buckets"][sl] += s.buckets
        return out

    def write_openmetrics(self, path: str | Path) -> int:
        """Write every sample as OpenMetrics text for ``promtool``; returns the sample count."""
        return write_scenario(self, Path(path))


# --------------------------------------------------------------------------- public builders


def default_end(now: datetime | None = None) -> datetime:
    """``now`` floored to the hour, minus 3 h: older than Prometheus' head block, so promtool
    backfill and a server started on the blocks agree."""
    now = now or datetime.now(UTC)
    return now.astimezone(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)


def demo_cases() -> tuple[CaseSpec, ...]:
    """The eleven deploys of the demo, in placement order (the ramp case is pinned to 07:20)."""
    return (
        CaseSpec("improvement", "checkout", "Cache product prices: cuts tail latency.",
                 Effect(latency_sigma=0.55), (("latency_p99", "decrease"),)),
        CaseSpec("noop", "search", "Refactor query parser (no behaviour change)."),
        CaseSpec("regression", "payments", "New card-network client.", Effect(error_ratio=10.0)),
        CaseSpec("latency_regression", "checkout", "Add fraud-score call to checkout.",
                 Effect(latency_median=1.6)),
        CaseSpec("gradual", "search", "New index layout, rolled out pod by pod over 20 minutes.",
                 Effect(latency_median=0.55), (("latency_p50", "decrease"),), rollout_s=1200),
        CaseSpec("fix", "payments", "Revert card-network client.", Effect(error_ratio=0.1),
                 (("error_ratio", "decrease"),)),
        CaseSpec("pair_first", "checkout", "Make fraud-score call asynchronous.",
                 Effect(latency_median=1 / 1.6), (("latency_p50", "decrease"),)),
        CaseSpec("pair_second", "payments", "Bump logging library (no behaviour change).",
                 after_previous_s=90),
        CaseSpec("release", "search", "Turn on result prefetching for all users.",
                 Effect(request_rate=1.5), (("request_rate", "increase"),), kind="release",
                 rollout_s=0, flag="prefetch_results"),
        CaseSpec("ramp_noop", "payments", "Update dashboards' alert rules (no behaviour change).",
                 local_hour=7 + 20 / 60),
        CaseSpec("noop_late", "checkout", "Dependency bumps (no behaviour change)."),
    )


def small_cases() -> tuple[CaseSpec, ...]:
    """Six deploys for tests: regression, improvement, no-op, ramp no-op, gradual, release."""
    return (
        CaseSpec("regression", "checkout", "New payment-form validation.", Effect(error_ratio=10.0)),
        CaseSpec("improvement", "payments", "Connection pooling to the card network: cuts tail latency.",
                 Effect(latency_sigma=0.55), (("latency_p99", "decrease"),)),
        CaseSpec("noop", "search", "Refactor query parser (no behaviour change)."),
        CaseSpec("ramp_noop", "checkout", "Update alert rules (no behaviour change).", local_hour=7 + 20 / 60),
        CaseSpec("gradual", "search", "New index layout, rolled out pod by pod over 20 minutes.",
                 Effect(latency_median=0.55), (("latency_p50", "decrease"),), rollout_s=1200),
        CaseSpec("release", "payments", "Turn on saved cards for all users.",
                 Effect(request_rate=1.5), (("request_rate", "increase"),), kind="release",
                 rollout_s=0, flag="saved_cards"),
    )


def demo_scenario(
    seed: int = 7, end: datetime | None = None, days: float = 3, step_s: int = 15, *, now: datetime | None = None
) -> Scenario:
    """Three services over ``days`` (2.5 to 14) ending at ``end`` (default
    :func:`default_end`), eleven deploys with ground truth, morning ramp at 06:00-09:00 UTC.

    Deploys of different services are spread 2 h apart when the data is long enough,
    closer (down to 45 min) on short spans.
    """
    if not 2.5 <= days <= 14:
        raise ValueError(f"days must be between 2.5 and 14 (deploys start 27 h in; retention), got {days}")
    end = end or default_end(now)
    for gap_h in (2.0, 1.5, 1.0, 0.75):
        try:
            return generate(
                name="demo", seed=seed, end=end, days=days, step_s=step_s, services=SERVICES,
                cases=demo_cases(), utc_offset_h=0.0, cross_service_gap_s=gap_h * 3600,
            )
        except ScheduleError:
            continue
    raise ScheduleError(f"the demo deploys do not fit into {days} days ending {end.isoformat()}: use days >= 3")


def small_scenario(
    seed: int = 11, end: datetime | None = None, step_s: int = 15, *, now: datetime | None = None
) -> Scenario:
    """The same generator at test size: 34 h, two endpoints per service, six deploys.

    The users' time zone is chosen so that ``ramp_noop`` falls at 07:20 local time, inside
    the morning traffic ramp, whatever ``end`` is.
    """
    services = tuple(replace(s, endpoints=s.endpoints[:2]) for s in SERVICES)
    return generate(
        name="small", seed=seed, end=end or default_end(now), days=34 / 24, step_s=step_s,
        services=services, cases=small_cases(), utc_offset_h=None,
    )


# --------------------------------------------------------------------------- generation


def generate(
    *,
    name: str,
    seed: int,
    end: datetime,
    days: float,
    step_s: int,
    services: Sequence[ServiceProfile],
    cases: Sequence[CaseSpec],
    utc_offset_h: float | None,
    first_deploy_after_s: float = 27 * 3600,
    same_service_gap_s: float = 3 * 3600 + 15 * 60,
    cross_service_gap_s: float = 45 * 60,
    tail_s: float = 75 * 60,
) -> Scenario:
    """Build a scenario. ``utc_offset_h=None`` shifts the users' day so ``local_hour`` cases
    land where the schedule puts them; otherwise they are placed at that local hour.

    Deploys start ``first_deploy_after_s`` into the data (a full day plus a 3 h window, so a
    1-day seasonal baseline exists), same-service deploys are ``same_service_gap_s`` apart,
    also modulo one day (3 h before / 1 h after windows stay clean, today and at the same
    time yesterday), other services ``cross_service_gap_s``
    apart except ``after_previous_s`` pairs, and the last one ends ``tail_s`` before the end.
    """
    if step_s <= 0 or 3600 % step_s:
        raise ValueError(f"step_s must divide 3600 (15, 30, 60 ...), got {step_s}")
    end = to_utc(end)  # naive means UTC, as everywhere in the project
    end = datetime.fromtimestamp(int(end.timestamp()) // step_s * step_s, UTC)
    n_steps = int(days * 86400) // step_s + 1
    start = end - timedelta(seconds=step_s * (n_steps - 1))
    unknown = {c.service for c in cases} - {s.name for s in services}
    if unknown:
        raise ValueError(f"cases name unknown services {sorted(unknown)}; known: {sorted(s.name for s in services)}")
    rng = np.random.default_rng(seed)
    t_rel = np.arange(n_steps, dtype=np.float64) * step_s

    times, utc_offset = _schedule(
        cases, start, end, utc_offset_h, first_deploy_after_s, same_service_gap_s, cross_service_gap_s, tail_s
    )
    local_h = ((start.timestamp() + t_rel) / 3600.0 + utc_offset) % 24.0
    load = daily_load(local_h)

    deploys: list[ScenarioDeploy] = []
    series: list[PodSeries] = []
    for svc in services:
        svc_cases = [(c, times[c.case]) for c in cases if c.service == svc.name]
        svc_series, svc_deploys = _service(svc, svc_cases, rng, name, seed, start, step_s, n_steps, load)
        series.extend(svc_series)
        deploys.extend(svc_deploys)
    deploys.sort(key=lambda d: (d.started_at, d.service))
    return Scenario(
        name=name, seed=seed, start=start, step_s=step_s, n_steps=n_steps, utc_offset_h=utc_offset,
        services=tuple(s.name for s in services), series=tuple(series), deploys=tuple(deploys),
    )


def daily_load(local_hour: np.ndarray) -> np.ndarray:
    """Traffic relative to peak (0.3 at night, 1.0 by mid-morning) for a local hour of day.

    Logistic ramp up centred at 07:30 (most of it between 06:00 and 09:00), down at 20:30,
    continuous over midnight.
    """
    h = np.asarray(local_hour, dtype=np.float64)

    def bump(x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(x - 7.5) / 0.55)) / (1.0 + np.exp((x - 20.5) / 1.0))

    return 0.3 + 0.7 * (bump(h) + bump(h + 24.0))


def _schedule(
    cases: Sequence[CaseSpec],
    start: datetime,
    end: datetime,
    utc_offset_h: float | None,
    first_after_s: float,
    same_gap: float,
    cross_gap: float,
    tail_s: float,
) -> tuple[dict[str, datetime], float]:
    """Place every case on a 5-minute grid, greedily in order; pinned cases first."""
    lo = start + timedelta(seconds=first_after_s)
    hi = end - timedelta(seconds=tail_s)
    grid = timedelta(minutes=5)
    placed: list[tuple[CaseSpec, datetime]] = []
    offset = 0.0 if utc_offset_h is None else utc_offset_h

    def fits(c: CaseSpec, t: datetime, partner: CaseSpec | None = None) -> bool:
        for other, ot in placed:
            gap = abs((t - ot).total_seconds())
            if other.service == c.service and min(gap, abs(gap - 86400)) < same_gap:
                return False  # also keeps the same windows a day earlier clean (seasonal baseline)
            if other is not partner and other.service != c.service and gap < cross_gap:
                return False
        return lo <= t <= hi

    if utc_offset_h is not None:
        for c in cases:
            if c.local_hour is None:
                continue
            local_midnight = (lo + timedelta(hours=offset)).replace(hour=0, minute=0, second=0, microsecond=0)
            t = local_midnight + timedelta(hours=c.local_hour - offset)
            while t < lo or not fits(c, t):
                t += timedelta(days=1)
                if t > hi:
                    raise ScheduleError(f"no {c.local_hour:.2f} h local slot for case {c.case!r}: make days larger")
            t = t.replace(second=0, microsecond=0)
            placed.append((c, t))
    cursor = lo
    previous: tuple[CaseSpec, datetime] | None = None
    for i, c in enumerate(cases):
        if c.local_hour is not None and utc_offset_h is not None:
            continue
        follower = cases[i + 1] if i + 1 < len(cases) and cases[i + 1].after_previous_s is not None else None

        def fits_with_follower(t: datetime, c: CaseSpec = c, follower: CaseSpec | None = follower) -> bool:
            if not fits(c, t):
                return False
            return follower is None or fits(follower, t + timedelta(seconds=follower.after_previous_s or 0), c)

        if c.after_previous_s is not None:
            if previous is None:
                raise ScheduleError(f"case {c.case!r} pairs with a previous case but is first")
            t = previous[1] + timedelta(seconds=c.after_previous_s)
            if not fits(c, t, partner=previous[0]):
                raise ScheduleError(f"case {c.case!r} cannot follow {previous[0].case!r} {c.after_previous_s} s later")
        else:
            t = cursor
            while not fits_with_follower(t):
                t += grid
                if t > hi:
                    raise ScheduleError(f"no room for case {c.case!r} before {hi.isoformat()}: make days larger")
        placed.append((c, t))
        previous = (c, t)
        cursor = _ceil_to(t + timedelta(seconds=cross_gap), grid)
        if c.local_hour is not None:  # shift the users' day so this lands at local_hour
            offset = (c.local_hour - (t.hour + t.minute / 60)) % 24
    return {c.case: t for c, t in placed}, offset


def _ceil_to(t: datetime, grid: timedelta) -> datetime:
    g = grid.total_seconds()
    return datetime.fromtimestamp(math.ceil(t.timestamp() / g) * g, UTC)


def _k8s_suffix(seed_text: str, n: int) -> str:
    digest = hashlib.sha256(seed_text.encode()).digest()
    return "".join(_K8S_ALPHABET[b % len(_K8S_ALPHABET)] for b in digest[:n])


def _bump_version(version: str, kind: str) -> str:
    if kind == "release":
        return version
    major, minor, patch = (int(x) for x in version.lstrip("v").split("."))
    return f"v{major}.{minor + 1}.0" if patch >= 3 else f"v{major}.{minor}.{patch + 1}"


def _ar1(rng: np.random.Generator, n: int, step_s: int, tau_s: float, sd: float) -> np.ndarray:
    """Stationary AR(1) with time constant ``tau_s`` and marginal standard deviation ``sd``."""
    phi = math.exp(-step_s / tau_s)
    eps = rng.normal(0.0, sd * math.sqrt(1 - phi * phi), n)
    eps[0] = rng.normal(0.0, sd)
    return lfilter([1.0], [1.0, -phi], eps)


@dataclass
class _Pod:
    name: str
    version: str
    effect: Effect
    start_idx: int
    end_idx: int  # exclusive
    slot: int  # the node it runs on: pod i of every version replaces pod i there
    gc_fraction: np.ndarray = field(default_factory=lambda: np.zeros(0))


def _service(
    svc: ServiceProfile,
    cases: list[tuple[CaseSpec, datetime]],
    rng: np.random.Generator,
    scenario_name: str,
    seed: int,
    start: datetime,
    step_s: int,
    n_steps: int,
    load: np.ndarray,
) -> tuple[list[PodSeries], list[ScenarioDeploy]]:
    """Pods, traffic and deploys of one service."""
    cases = sorted(cases, key=lambda ct: ct[1])

    def idx(t: datetime) -> int:
        return max(0, min(n_steps, math.ceil((t - start).total_seconds() / step_s)))

    def pod_name(version: str, i: int) -> str:
        rs = _k8s_suffix(f"{scenario_name}/{seed}/{svc.name}/{version}", 9)
        return f"{svc.name}-{rs}-{_k8s_suffix(f'{rs}/{i}', 5)}"

    version, state = svc.first_version, NO_EFFECT
    pods = [_Pod(pod_name(version, i), version, state, 0, n_steps, i) for i in range(svc.pods)]
    all_pods = list(pods)
    release = {k: np.ones(n_steps) for k in ("latency_median", "latency_sigma", "error_ratio", "request_rate")}
    deploys: list[ScenarioDeploy] = []
    for c, t in cases:
        k0 = idx(t)
        if c.kind == "release":
            for key in release:
                release[key][k0:] *= getattr(c.effect, key)
        else:
            version = _bump_version(version, c.kind)
            state = state.then(c.effect)
            n = svc.pods
            for i in range(n):  # surge 1: new pod up, then an old one down, 2n events over rollout
                up = t + timedelta(seconds=c.rollout_s * (2 * i + 1) / (2 * n))
                down = t + timedelta(seconds=c.rollout_s * (2 * i + 2) / (2 * n))
                new = _Pod(pod_name(version, i), version, state, idx(up), n_steps, i)
                pods[i].end_idx = max(idx(down), pods[i].start_idx + 1)
                pods[i] = new
                all_pods.append(new)
        deploys.append(_scenario_deploy(c, t, svc.name, version, seed, scenario_name))

    traffic_noise = np.exp(_ar1(rng, n_steps, step_s, 1800.0, 0.04))
    error_load = 0.9 + 0.2 * load
    live = np.zeros(n_steps)
    for p in all_pods:
        live[p.start_idx : p.end_idx] += 1
    for p in all_pods:
        p.gc_fraction = _gc_bursts(rng, p.end_idx - p.start_idx, step_s)

    out: list[PodSeries] = []
    for ep in svc.endpoints:
        lat_noise = _ar1(rng, n_steps, step_s, 600.0, 0.07)
        lam = ep.peak_rps * step_s * load * traffic_noise * release["request_rate"]
        mu_base = math.log(ep.median_s) + LOAD_LATENCY * load + lat_noise + np.log(release["latency_median"])
        sigma_base = svc.sigma * (1.0 + LOAD_SIGMA * load) * release["latency_sigma"]
        err_base = svc.error_ratio * error_load * release["error_ratio"]
        # A pod's latency offset is its node's (speed, neighbours): the new version's pod i runs
        # where pod i ran, so a deploy moves latency only by its declared effect (an offset drawn
        # per pod was an undeclared effect at every deploy: +7.5 % p99 on a no-op, one seed).
        node_offset = rng.normal(0.0, 0.03, svc.pods)
        for p in all_pods:
            sl = slice(p.start_idx, p.end_idx)
            pod_offset = node_offset[p.slot]
            n_req = rng.poisson(lam[sl] / live[sl])
            mu = mu_base[sl] + math.log(p.effect.latency_median) + pod_offset
            sigma = sigma_base[sl] * p.effect.latency_sigma
            buckets, lat_sum = _latency_draw(rng, n_req, mu, sigma, p.gc_fraction)
            err_p = np.clip(err_base[sl] * p.effect.error_ratio, 0.0, 1.0)
            errors = rng.binomial(n_req, err_p)
            out.append(
                PodSeries(svc.name, ep.path, p.version, p.name, p.start_idx,
                          n_req.astype(np.int64), errors.astype(np.int64), buckets, lat_sum)
            )
    return out, deploys


def _gc_bursts(rng: np.random.Generator, n: int, step_s: int) -> np.ndarray:
    """Share of a pod's requests caught in a GC pause per step: ~one 15-45 s burst per 6 h."""
    frac = np.zeros(n)
    starts = np.flatnonzero(rng.random(n) < step_s / (6 * 3600.0))
    for s in starts:
        length = max(1, int(round(rng.uniform(15, 45) / step_s)))
        frac[s : s + length] = rng.uniform(0.02, 0.10)
    return frac


def _latency_draw(
    rng: np.random.Generator, n: np.ndarray, mu: np.ndarray, sigma: np.ndarray, gc: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Bucket counts (non-cumulative, 12 columns) and latency sums for ``n`` requests per step.

    Latency is a mixture: ``1 - gc`` of requests log-normal(mu, sigma), ``gc`` log-normal
    around :data:`GC_MEDIAN_S`. Sums use each component's exact mean within each bucket,
    so ``_sum / _count`` agrees with the buckets.
    """
    log_b = np.log(np.asarray(BUCKETS))[None, :]
    mu2, s2 = mu[:, None], sigma[:, None]
    g = gc[:, None]
    cdf = (1 - g) * ndtr((log_b - mu2) / s2) + g * ndtr((log_b - math.log(GC_MEDIAN_S)) / GC_SIGMA)
    # partial expectations E[X; X <= b] per component
    pe_main = np.exp(mu2 + s2**2 / 2) * ndtr((log_b - mu2 - s2**2) / s2)
    pe_gc = math.exp(math.log(GC_MEDIAN_S) + GC_SIGMA**2 / 2) * ndtr(
        (log_b - math.log(GC_MEDIAN_S) - GC_SIGMA**2) / GC_SIGMA
    )
    mean_total = (1 - g[:, 0]) * np.exp(mu + sigma**2 / 2) + g[:, 0] * math.exp(
        math.log(GC_MEDIAN_S) + GC_SIGMA**2 / 2
    )
    pe = (1 - g) * pe_main + g * pe_gc
    ones = np.ones((len(n), 1))
    cdf_full = np.hstack([cdf, ones])
    pe_full = np.hstack([pe, mean_total[:, None]])
    probs = np.diff(cdf_full, axis=1, prepend=0.0)
    part = np.diff(pe_full, axis=1, prepend=0.0)
    probs = np.clip(probs, 0.0, None)
    probs /= probs.sum(axis=1, keepdims=True)
    counts = rng.multinomial(n, probs)
    safe = probs > 1e-300
    cond_mean = np.divide(part, probs, out=np.zeros_like(part), where=safe)
    lat_sum = (counts * cond_mean).sum(axis=1)
    return counts.astype(np.int64), lat_sum


def derive_truth(effect: Effect, sigma: float = 0.6) -> dict[str, str]:
    """Direction per catalog metric of an :class:`Effect` (changes under 15 % count as none).

    p99 of a log-normal is ``median * exp(z99 * sigma)``, so both the median and the width
    move it; ``sigma`` is a typical width at load.
    """
    def direction(factor: float) -> str:
        if factor >= 1.15:
            return "increase"
        if factor <= 1 / 1.15:
            return "decrease"
        return "unchanged"

    p99 = effect.latency_median * math.exp(_Z99 * sigma * (effect.latency_sigma - 1.0))
    return {
        "error_ratio": direction(effect.error_ratio),
        "latency_p99": direction(p99),
        "latency_shift": direction(effect.latency_median),  # the median read from the buckets
        "latency_p50": direction(effect.latency_median),
        "request_rate": direction(effect.request_rate),
    }


def expected_overall(truth: dict[str, str], expectations: Sequence[tuple[str, str]]) -> Literal["pass", "fail"]:
    """``fail`` when a default guard moved the bad way or a declared expectation is contradicted."""
    for metric, bad in GUARDS_BAD.items():
        if truth.get(metric) == bad and (metric, "increase") not in expectations:
            return "fail"
    for metric, expect in expectations:
        actual = truth.get(metric)
        if expect in ("increase", "decrease") and actual != expect:
            return "fail"
        if expect == "unchanged" and actual != "unchanged":
            return "fail"
    return "pass"


_AUTHORS = ("ana.silva", "bo.chen", "chidi.okafor", "dana.kowalski", "elif.yilmaz", "farid.haddad")


def _scenario_deploy(
    c: CaseSpec, t: datetime, service: str, version: str, seed: int, scenario_name: str
) -> ScenarioDeploy:
    stamp = t.strftime("%Y%m%dt%H%M")
    digest = hashlib.sha1(f"{scenario_name}/{seed}/{c.case}/{t.isoformat()}".encode()).hexdigest()
    if c.kind == "release":
        deploy_id = f"{service}-flag-{c.flag}-{stamp}"
    else:
        deploy_id = f"{service}-{version}-{stamp}"
    truth = derive_truth(c.effect)
    event: dict[str, Any] = {
        "service": service,
        "environment": "production",
        "version": version,
        "kind": c.kind,
        "status": "succeeded",
        "started_at": iso(t),
        "finished_at": iso(t + timedelta(seconds=c.rollout_s)),
        "deploy_id": deploy_id,
        "event_id": f"{deploy_id}:succeeded",
        "source": "generic",
        "author": _AUTHORS[int(digest[:8], 16) % len(_AUTHORS)],
        "commit_sha": hashlib.sha1(digest.encode()).hexdigest(),
        "ref": "refs/heads/main",
        "description": c.description,
        "labels": {"scenario": scenario_name, "case": c.case, "team": service},
        "expectations": [{"metric": m, "expect": e} for m, e in c.expectations],
    }
    if c.kind == "release":
        event.update({"flag": c.flag, "from": "off", "to": "on"})
    return ScenarioDeploy(
        case=c.case, event=event, truth=truth, expected_overall=expected_overall(truth, c.expectations),
        effect=c.effect, rollout_s=c.rollout_s,
    )


def write_scenario(scenario: Scenario, path: Path) -> int:
    """Write every series of ``scenario`` to ``path``; returns the number of samples."""
    ts_all = [str(t) for t in scenario.timestamps.tolist()]

    def ts_of(s: PodSeries) -> list[str]:
        return ts_all[s.start_idx : s.start_idx + len(s.requests)]

    n = 0
    with path.open("w", encoding="utf-8", buffering=1 << 20) as out:
        om.write_family_header(out, om.HISTOGRAM, "histogram", "Request latency in seconds.", unit="seconds")
        for s in scenario.series:
            cum = np.cumsum(np.cumsum(s.buckets, axis=1), axis=0)
            n += om.write_histogram_series(out, om.HISTOGRAM, s.labels, LE_LABELS, cum, np.cumsum(s.latency_sum), ts_of(s))
        om.write_family_header(out, om.REQUESTS, "counter", "Requests handled.")
        for s in scenario.series:
            n += om.write_counter_series(out, om.REQUESTS + "_total", s.labels, np.cumsum(s.requests), ts_of(s))
        om.write_family_header(out, om.ERRORS, "counter", "Requests answered with a 5xx status.")
        for s in scenario.series:
            n += om.write_counter_series(out, om.ERRORS + "_total", s.labels, np.cumsum(s.errors), ts_of(s))
        out.write("# EOF\n")
    return n
