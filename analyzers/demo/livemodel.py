"""The demo's traffic model, run live: the scenario's services continued from where the backfill ends.

:mod:`analyzers.demo.scenarios` draws three days of history in one go; this module draws the
same model tick by tick against the wall clock, so the demo's data always reaches now:

* traffic: peak rate per endpoint x :func:`~analyzers.demo.scenarios.daily_load` at the users'
  local hour x slow AR(1) noise (30 min time constant), Poisson per pod and tick, split over the
  pods serving (evenly, or by the canary's share while a canary runs);
* latency: the scenario's log-normal per endpoint (median and width follow load, AR(1) noise on
  log-latency with a 10 min time constant, a fixed offset per node that a rollout's pod i takes
  over from pod i) mixed with GC-pause bursts around 0.7 s; each request is drawn, so every bucket touched gets an exemplar with a trace id;
* errors: Binomial(requests, ratio) per pod and tick.

A :class:`LiveWorld` starts from a *handoff*: the versions, pods, effects and cumulative counters
the backfilled history ends with (:func:`handoff_from_scenario`), so the scraped series continue
the backfilled ones without a counter reset. The first tick covers the time since the handoff
(up to :data:`MAX_CATCH_UP_S`), which fills the hole between the backfill's end and the first
scrape. Everything random comes from one seeded ``numpy.random.Generator``.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from analyzers.demo.scenarios import (
    BUCKETS,
    GC_MEDIAN_S,
    GC_SIGMA,
    LE_LABELS,
    LOAD_LATENCY,
    LOAD_SIGMA,
    NO_EFFECT,
    SERVICES,
    Effect,
    Scenario,
    ServiceProfile,
    daily_load,
)

#: The first tick after a (re)start covers at most this much missed time; a longer outage of
#: the demo shows as a hole in the data, as it would in production.
MAX_CATCH_UP_S = 3600.0
_TRAFFIC_TAU_S, _TRAFFIC_SD = 1800.0, 0.04
_LATENCY_TAU_S, _LATENCY_SD = 600.0, 0.07
_K8S = "bcdfghjklmnpqrstvwxz2456789"
_EFFECT_RE = re.compile(
    r"^\s*(?:(?P<noop>noop)|(?P<lat>latency|tail)\s*(?P<sign>[+-])\s*(?P<pct>\d+(?:\.\d+)?)\s*%"
    r"|(?P<err>errors)\s*[x*]\s*(?P<mult>\d+(?:\.\d+)?))\s*$",
    re.IGNORECASE,
)


class EffectError(ValueError):
    """An effect string ``demo deploy --effect`` cannot read."""


def parse_effect(text: str) -> Effect:
    """``noop``, ``latency+30%`` (median latency x1.3), ``tail+50%`` (log-width x1.5),
    ``errors x5`` / ``errors*5`` (error ratio x5), or several joined by commas."""
    effect = NO_EFFECT
    for part in (p for p in text.split(",") if p.strip()):
        m = _EFFECT_RE.match(part)
        if m is None:
            raise EffectError(
                f"cannot read effect {part.strip()!r}: use noop, latency+30%, latency-20%, tail+50% or errors x5 "
                "(several joined by commas)"
            )
        if m["lat"]:
            factor = 1 + (1 if m["sign"] == "+" else -1) * float(m["pct"]) / 100
            if factor <= 0:
                raise EffectError(f"{part.strip()!r} would make latency zero or negative: use less than -100%")
            key = "latency_median" if m["lat"].lower() == "latency" else "latency_sigma"
            effect = effect.then(replace(NO_EFFECT, **{key: factor}))
        elif m["err"]:
            effect = effect.then(Effect(error_ratio=float(m["mult"])))
    return effect


def effect_text(effect: Effect) -> str:
    """The inverse of :func:`parse_effect` (``noop`` for no change)."""
    parts = []
    if abs(effect.latency_median - 1) > 1e-9:
        parts.append(f"latency{(effect.latency_median - 1) * 100:+.0f}%")
    if abs(effect.latency_sigma - 1) > 1e-9:
        parts.append(f"tail{(effect.latency_sigma - 1) * 100:+.0f}%")
    if abs(effect.error_ratio - 1) > 1e-9:
        parts.append(f"errors x{effect.error_ratio:g}")
    return ",".join(parts) or "noop"


def bump_version(version: str) -> str:
    """``v1.14.0`` -> ``v1.14.1``; after patch 3 the minor goes up (as the scenario does)."""
    major, minor, patch = (int(x) for x in version.lstrip("v").split("."))
    return f"v{major}.{minor + 1}.0" if patch >= 3 else f"v{major}.{minor}.{patch + 1}"


def pod_name(service: str, version: str, i: int, seed: int) -> str:
    """A Kubernetes-looking pod name, stable for (service, version, index, seed)."""
    def suffix(text: str, n: int) -> str:
        digest = hashlib.sha256(text.encode()).digest()
        return "".join(_K8S[b % len(_K8S)] for b in digest[:n])

    rs = suffix(f"live/{seed}/{service}/{version}", 9)
    return f"{service}-{rs}-{suffix(f'{rs}/{i}', 5)}"


def effect_dict(e: Effect) -> dict[str, float]:
    return {"latency_median": e.latency_median, "latency_sigma": e.latency_sigma,
            "error_ratio": e.error_ratio, "request_rate": e.request_rate}


# --------------------------------------------------------------------------- handoff


def handoff_from_scenario(scenario: Scenario) -> dict[str, Any]:
    """What the backfilled history ends with, as JSON: per service the version, the pods alive at
    the last sample with their cumulative counters, and the state every scenario effect left."""
    services: dict[str, Any] = {}
    for name in scenario.services:
        effect = NO_EFFECT
        version = next(s.first_version for s in SERVICES if s.name == name)
        for d in scenario.deploys:
            if d.service == name:
                effect = effect.then(d.effect)
                version = str(d.event["version"]) if d.event.get("kind") != "release" else version
        services[name] = {"version": version, "effect": effect_dict(effect), "pods": {}}
    for s in scenario.series:
        if s.start_idx + len(s.requests) != scenario.n_steps:
            continue  # a pod that was gone before the end
        pods = services[s.service]["pods"]
        pod = pods.setdefault(s.pod, {"version": s.version, "series": {}})
        pod["series"][s.endpoint] = {
            "requests": int(s.requests.sum()), "errors": int(s.errors.sum()),
            "buckets": [int(x) for x in s.buckets.sum(axis=0)], "sum": float(s.latency_sum.sum()),
        }
    endpoints = {s.name: [e.path for e in s.endpoints] for s in SERVICES}
    for s in scenario.series:  # the small scenario has fewer endpoints per service
        endpoints.setdefault(s.service, [])
    used = {(s.service, s.endpoint) for s in scenario.series}
    return {
        "scenario": scenario.name, "seed": scenario.seed, "time": scenario.end.timestamp(),
        "utc_offset_h": scenario.utc_offset_h, "services": services,
        "endpoints": {svc: [e for e in eps if (svc, e) in used] for svc, eps in endpoints.items() if svc in services},
    }


# --------------------------------------------------------------------------- live state


@dataclass
class SeriesState:
    """Cumulative counters of one (service, endpoint, version, pod) and the latest exemplars."""

    requests: int = 0
    errors: int = 0
    buckets: np.ndarray = field(default_factory=lambda: np.zeros(len(LE_LABELS), dtype=np.int64))
    latency_sum: float = 0.0
    bucket_exemplars: list[tuple[str, float, float] | None] = field(default_factory=lambda: [None] * len(LE_LABELS))
    request_exemplar: tuple[str, float, float] | None = None
    error_exemplar: tuple[str, float, float] | None = None


@dataclass
class LivePod:
    name: str
    version: str
    effect: Effect
    node: int  # index into its service's ``node_offsets``: the node it runs on
    series: dict[str, SeriesState]
    gc_until: float = 0.0
    gc_fraction: float = 0.0


@dataclass
class LiveService:
    profile: ServiceProfile
    version: str
    effect: Effect  # the state of the current version (every deploy's effect so far)
    baseline: Effect  # the state the backfill ended in: what a revert returns to
    pods: list[LivePod]
    traffic_noise: float = 0.0
    latency_noise: dict[str, float] = field(default_factory=dict)
    canary_version: str | None = None
    canary_share: float = 0.0  # share of traffic on canary_version's pods while a canary runs
    #: Latency offset of each node: pod i of a new version runs where pod i ran (so a deploy or
    #: a canary moves latency only by its effect, as in :mod:`analyzers.demo.scenarios`). The one
    #: place an offset is kept: a pod holds only its node's index (:attr:`LivePod.node`).
    node_offsets: list[float] = field(default_factory=list)

    def offset(self, pod: LivePod) -> float:
        """The latency offset of the node ``pod`` runs on."""
        return self.node_offsets[pod.node]


class LiveWorld:
    """The demo's services, advanced tick by tick (:meth:`advance`); not thread-safe on its own."""

    def __init__(self, handoff: dict[str, Any], *, seed: int = 7, now: float | None = None) -> None:
        self.rng = np.random.default_rng(seed)
        self.seed = seed
        self.utc_offset_h = float(handoff.get("utc_offset_h", 0.0))
        self.time = float(handoff["time"])
        self.endpoints: dict[str, list[str]] = {k: list(v) for k, v in handoff["endpoints"].items()}
        self.services: dict[str, LiveService] = {}
        profiles = {p.name: p for p in SERVICES}
        for name, spec in handoff["services"].items():
            eff = Effect(**spec["effect"])
            base = Effect(**spec.get("baseline", spec["effect"]))
            pods, drawn = [], []
            for i, (pod_name_, pod) in enumerate(spec["pods"].items()):
                series = {}
                for ep in self.endpoints[name]:
                    raw = pod["series"].get(ep, {})
                    st = SeriesState(requests=int(raw.get("requests", 0)), errors=int(raw.get("errors", 0)),
                                     latency_sum=float(raw.get("sum", 0.0)))
                    if raw.get("buckets"):
                        st.buckets = np.asarray(raw["buckets"], dtype=np.int64)
                    series[ep] = st
                pod_effect = Effect(**pod["effect"]) if "effect" in pod else eff
                drawn.append(float(self.rng.normal(0.0, 0.03)))  # drawn either way: the random stream stays the same
                pods.append(LivePod(pod_name_, pod["version"], pod_effect, int(pod.get("node", i)), series))
            # a snapshot keeps each node's offset (a restart mid-rollout has pods of two versions);
            # the backfill's handoff has none: pod i gets node i with a fresh offset
            nodes = [float(x) for x in spec.get("node_offsets", drawn)]
            nodes += drawn[len(nodes):max(p.node for p in pods) + 1] if pods else []
            svc = LiveService(profiles[name], spec["version"], eff, base, pods, node_offsets=nodes)
            svc.traffic_noise = float(self.rng.normal(0.0, _TRAFFIC_SD))
            svc.latency_noise = {ep: float(self.rng.normal(0.0, _LATENCY_SD)) for ep in self.endpoints[name]}
            self.services[name] = svc

    # -- pods -------------------------------------------------------------------------
    def add_pod(self, service: str, version: str, effect: Effect, index: int) -> LivePod:
        svc = self.services[service]
        drawn = float(self.rng.normal(0.0, 0.03))  # drawn either way: the random stream stays the same
        while len(svc.node_offsets) <= index:  # a service that grows gets new nodes
            svc.node_offsets.append(drawn)
        pod = LivePod(pod_name(service, version, index, self.seed), version, effect, index,
                      {ep: SeriesState() for ep in self.endpoints[service]})
        svc.pods.append(pod)
        return pod

    def remove_pod(self, service: str, name: str) -> None:
        svc = self.services[service]
        svc.pods = [p for p in svc.pods if p.name != name]

    # -- ticks ------------------------------------------------------------------------
    def advance(self, now: float) -> float:
        """Draw the traffic of ``(self.time, now]`` (at most :data:`MAX_CATCH_UP_S`); returns seconds drawn."""
        dt = now - self.time
        if dt <= 0:
            return 0.0
        dt_drawn = min(dt, MAX_CATCH_UP_S)
        mid = now - dt_drawn / 2
        load = float(daily_load(np.array([(mid / 3600.0 + self.utc_offset_h) % 24.0]))[0])
        for svc in self.services.values():
            svc.traffic_noise = _ar1_step(self.rng, svc.traffic_noise, dt, _TRAFFIC_TAU_S, _TRAFFIC_SD)
            for pod in svc.pods:  # once per pod and tick, whatever the number of endpoints
                self._gc(pod, now, dt_drawn)
            for ep in svc.profile.endpoints:
                if ep.path not in svc.latency_noise:
                    continue
                svc.latency_noise[ep.path] = _ar1_step(
                    self.rng, svc.latency_noise[ep.path], dt, _LATENCY_TAU_S, _LATENCY_SD)
                self._draw_endpoint(svc, ep.path, ep.peak_rps, ep.median_s, load, dt_drawn, now)
        self.time = now
        return dt_drawn

    def shares(self, svc: LiveService) -> list[float]:
        """Each pod's share of the service's traffic (even, or the canary's share on its pods)."""
        pods = svc.pods
        if not pods:
            return []
        if svc.canary_version is None:
            return [1.0 / len(pods)] * len(pods)
        new = [p.version == svc.canary_version for p in pods]
        n_new, n_old = sum(new), len(pods) - sum(new)
        share = svc.canary_share if n_old else 1.0
        return [(share / n_new if is_new else (1 - share) / n_old) if (n_new and n_old) else 1.0 / len(pods)
                for is_new in new]

    def _draw_endpoint(self, svc: LiveService, path: str, peak_rps: float, median_s: float, load: float,
                       dt: float, now: float) -> None:
        prof = svc.profile
        lam_total = peak_rps * dt * load * math.exp(svc.traffic_noise)
        for pod, share in zip(svc.pods, self.shares(svc), strict=True):
            eff = pod.effect
            n = int(self.rng.poisson(lam_total * share * eff.request_rate))
            st = pod.series[path]
            if n == 0:
                continue
            mu = math.log(median_s) + LOAD_LATENCY * load + svc.latency_noise[path] + math.log(eff.latency_median) \
                + svc.offset(pod)
            sigma = prof.sigma * (1.0 + LOAD_SIGMA * load) * eff.latency_sigma
            n_gc = int(self.rng.binomial(n, pod.gc_fraction)) if pod.gc_fraction else 0
            lat = np.concatenate([self.rng.lognormal(mu, sigma, n - n_gc),
                                  self.rng.lognormal(math.log(GC_MEDIAN_S), GC_SIGMA, n_gc)])
            self.rng.shuffle(lat)
            err_p = min(1.0, prof.error_ratio * (0.9 + 0.2 * load) * eff.error_ratio)
            failed = self.rng.random(n) < err_p
            idx = np.searchsorted(np.asarray(BUCKETS), lat, side="left")
            st.buckets += np.bincount(idx, minlength=len(LE_LABELS)).astype(np.int64)
            st.requests += n
            st.errors += int(failed.sum())
            st.latency_sum += float(lat.sum())
            # one exemplar per bucket touched: the last request that fell in it, at a time inside the tick
            last_in_bucket = {int(b): i for i, b in enumerate(idx.tolist())}
            for b, i in last_in_bucket.items():
                st.bucket_exemplars[b] = (self._trace_id(), float(lat[i]), now - dt * (1 - (i + 1) / n))
            st.request_exemplar = (self._trace_id(), 1.0, now)
            if failed.any():
                st.error_exemplar = (self._trace_id(), 1.0, now)

    def _gc(self, pod: LivePod, now: float, dt: float) -> None:
        if now >= pod.gc_until:
            pod.gc_fraction = 0.0
            if self.rng.random() < dt / (6 * 3600.0):  # about one 15-45 s burst per pod in 6 h
                pod.gc_until = now + float(self.rng.uniform(15, 45))
                pod.gc_fraction = float(self.rng.uniform(0.02, 0.10))

    def _trace_id(self) -> str:
        return self.rng.bytes(16).hex()

    # -- persistence --------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """A handoff for a restart: :class:`LiveWorld` of it resumes these counters."""
        services = {}
        for name, svc in self.services.items():
            services[name] = {
                "version": svc.version, "effect": effect_dict(svc.effect), "baseline": effect_dict(svc.baseline),
                "node_offsets": list(svc.node_offsets),
                "pods": {p.name: {"version": p.version, "effect": effect_dict(p.effect), "node": p.node, "series": {
                    ep: {"requests": st.requests, "errors": st.errors, "buckets": [int(x) for x in st.buckets],
                         "sum": st.latency_sum} for ep, st in p.series.items()}} for p in svc.pods},
            }
        return {"time": self.time, "utc_offset_h": self.utc_offset_h, "services": services,
                "endpoints": self.endpoints}


def _ar1_step(rng: np.random.Generator, x: float, dt: float, tau_s: float, sd: float) -> float:
    """One step of a stationary AR(1) (time constant ``tau_s``, marginal sd ``sd``) over ``dt`` seconds."""
    phi = math.exp(-dt / tau_s)
    return phi * x + float(rng.normal(0.0, sd * math.sqrt(1 - phi * phi)))


def fast_forward(world: LiveWorld, until: float, path: str | Any, *, step_s: int = 15) -> int:
    """Advance ``world`` to ``until`` in ``step_s`` ticks and write every sample as OpenMetrics
    for a second ``promtool`` backfill (no exemplars: backfill has none); returns the sample count.

    This bridges the scenario's hour-aligned end (3 h before the hour, so its deploys and verdicts
    stay the same within an hour) and now: the series continue the scenario's, counters included.
    """
    from pathlib import Path

    from analyzers.demo import openmetrics as om

    times = np.arange(world.time + step_s, until + 1e-9, step_s)
    keys = [(name, p, ep) for name, svc in world.services.items() for p in svc.pods for ep in p.series]
    n, k = len(times), len(LE_LABELS)
    req = np.zeros((len(keys), n), dtype=np.int64)
    err = np.zeros((len(keys), n), dtype=np.int64)
    bkt = np.zeros((len(keys), n, k), dtype=np.int64)
    sums = np.zeros((len(keys), n))
    for j, t in enumerate(times.tolist()):
        world.advance(float(t))
        for i, (_, pod, ep) in enumerate(keys):
            st = pod.series[ep]
            req[i, j], err[i, j], sums[i, j] = st.requests, st.errors, st.latency_sum
            bkt[i, j] = np.cumsum(st.buckets)
    ts = [str(int(t)) for t in times.tolist()]
    labels = [{"service": name, "endpoint": ep, "version": pod.version, "pod": pod.name} for name, pod, ep in keys]
    count = 0
    with Path(path).open("w", encoding="utf-8") as out:
        om.write_family_header(out, om.HISTOGRAM, "histogram", "Request latency in seconds.", unit="seconds")
        for i, lab in enumerate(labels):
            count += om.write_histogram_series(out, om.HISTOGRAM, lab, LE_LABELS, bkt[i], sums[i], ts) if n else 0
        om.write_family_header(out, om.REQUESTS, "counter", "Requests handled.")
        for i, lab in enumerate(labels):
            count += om.write_counter_series(out, om.REQUESTS + "_total", lab, req[i], ts) if n else 0
        om.write_family_header(out, om.ERRORS, "counter", "Requests answered with a 5xx status.")
        for i, lab in enumerate(labels):
            count += om.write_counter_series(out, om.ERRORS + "_total", lab, err[i], ts) if n else 0
        out.write("# EOF\n")
    return count
