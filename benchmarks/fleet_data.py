"""A seeded fleet for the scale benchmark: N services x 5 metrics x D days, ~0.5 deploys/day each.

Everything is derived from :class:`FleetParams` plus the data's end time, so the deploys and
their truth can be rebuilt without regenerating the series (the benchmark caches the TSDB and
only rebuilds the plan)::

    plan = plan_fleet(FleetParams(services=20, days=7), end=fleet_end())
    arrays = service_series(plan, 0)          # the 5 raw series of service 0 (numpy)
    write_openmetrics(plan, Path("fleet.om")) # every family, seconds timestamps, '# EOF'
    data = ensure_fleet(params)               # cached under benchmarks/.cache/<key>/
    with PrometheusServer(data.tsdb_dir, port=0, retention="60d") as prom: ...

Series (one per service, label ``service``, scrape interval 60 s):

* ``fleet_requests_total``: counter of requests (Poisson per step around a daily cycle).
* ``fleet_errors_total``: counter of 5xx (Poisson, a small error ratio times the requests).
* ``fleet_latency_p99_seconds`` / ``fleet_latency_p50_seconds``: gauges (a service's own
  quantiles; the benchmark does not test histogram maths, :mod:`analyzers.prometheus.latency` does).
* ``fleet_cpu_seconds_total``: counter of CPU seconds (cores used x 60 s per step).

Every series has a daily cycle and AR(1) noise (phi 0.8). Deploys are mostly no-ops (truth
``pass``); some regress one guard metric by a clear, persistent step (truth ``fail``); some
improve latency or CPU and declare it (truth ``pass``, the declared metric ``confirmed``).
Steps start 2 minutes after the deploy and last until changed again, so the level of a
service drifts with its history of regressions and improvements, as in real fleets.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal, TextIO

import numpy as np
from scipy.signal import lfilter

from analyzers.config import Config, MetricSpec, PrometheusSettings, ServiceSpec, VerificationSettings
from analyzers.demo.promserver import backfill
from analyzers.model import Deploy, Expectation

#: Bump when the series model changes, so cached TSDBs of the old model are not reused.
GENERATOR_VERSION = 2
STEP_S = 60
#: Deploys per service per 30 days (the issue: ~3,000 deploys for 200 services in 30 days).
DEPLOYS_PER_30D = 15
#: Shares of deploy kinds (the rest are no-ops).
REGRESSION_SHARE = 0.10
IMPROVEMENT_SHARE = 0.08
#: A deploy's step starts this long after it (inside the verifier's ramp).
EFFECT_LAG_S = 120
#: No effect in the last this-many seconds of data: every deploy has its after-window.
TAIL_S = 3 * 3600
#: Minimum distance between two deploys of one service (keeps truth attributable).
MIN_GAP_S = 6 * 3600
CACHE_DIR = Path(__file__).resolve().parent / ".cache"
AR_PHI = 0.8

# Family names (counter families drop ``_total``; samples keep it).
REQUESTS = "fleet_requests"
ERRORS = "fleet_errors"
P99 = "fleet_latency_p99_seconds"
P50 = "fleet_latency_p50_seconds"
CPU = "fleet_cpu_seconds"

#: metric key -> (family, OpenMetrics type, help) in file order.
FAMILIES: tuple[tuple[str, str, str, str], ...] = (
    ("requests", REQUESTS, "counter", "Requests handled."),
    ("errors", ERRORS, "counter", "Requests answered with a 5xx status."),
    ("p99", P99, "gauge", "99th percentile request latency in seconds."),
    ("p50", P50, "gauge", "Median request latency in seconds."),
    ("cpu", CPU, "counter", "CPU seconds used."),
)

Kind = Literal["noop", "regression", "improvement"]

#: Regressions: catalog metric -> how the raw series moves (multiplier, or added error ratio).
REGRESSIONS: dict[str, tuple[str, float]] = {
    "latency_p99": ("p99", 1.6),
    "latency_p50": ("p50", 1.5),
    "error_ratio": ("err_add", 0.03),
    "cpu": ("cpu", 1.5),
}
#: Improvements (declared as ``decrease`` by the deploy).
IMPROVEMENTS: dict[str, tuple[str, float]] = {
    "latency_p99": ("p99", 0.6),
    "cpu": ("cpu", 0.65),
}


@dataclass(frozen=True)
class FleetParams:
    """What the fleet looks like; the cache key is built from these fields."""

    services: int = 200
    days: int = 30
    deploys_per_30d: int = DEPLOYS_PER_30D
    seed: int = 7

    def __post_init__(self) -> None:
        if self.services < 1 or self.days < 2:
            raise ValueError(f"a fleet needs >= 1 service and >= 2 days, got {self.services} services, {self.days} days")

    @property
    def key(self) -> str:
        return f"s{self.services}-d{self.days}-k{self.deploys_per_30d}-seed{self.seed}-v{GENERATOR_VERSION}"


@dataclass(frozen=True)
class Truth:
    """What a deploy really did: ``metric`` moved by ``factor`` (or ``+factor`` for error_ratio)."""

    kind: Kind
    metric: str | None = None
    factor: float | None = None
    expected_overall: Literal["pass", "fail"] = "pass"


@dataclass(frozen=True)
class FleetDeploy:
    """A deploy as the verifier sees it, with what the generator really did at that time."""

    deploy: Deploy
    truth: Truth


@dataclass(frozen=True)
class ServiceBase:
    """Per-service levels: requests/s at the daily peak, error ratio, p99 (s), cores."""

    name: str
    rps: float
    error_ratio: float
    p99_s: float
    cores: float
    phase_s: float


@dataclass(frozen=True)
class FleetPlan:
    """Everything but the samples: time span (UTC, on the 60 s grid), services, deploys, truth."""

    params: FleetParams
    start: datetime
    end: datetime
    services: tuple[ServiceBase, ...]
    deploys: tuple[FleetDeploy, ...]  # every deploy, sorted by time
    held_out: FleetDeploy  # the newest no-op deploy: the "incremental" one, not in the fleet run
    fleet: tuple[FleetDeploy, ...] = field(default=())  # deploys minus held_out

    @property
    def n_points(self) -> int:
        return int((self.end - self.start).total_seconds()) // STEP_S + 1

    @property
    def timestamps(self) -> np.ndarray:
        t0 = int(self.start.timestamp())
        return t0 + STEP_S * np.arange(self.n_points, dtype=np.int64)


def fleet_end(now: datetime | None = None) -> datetime:
    """End of the data: at least 3 h before ``now`` (the head block owns newer samples),
    floored to the hour so reruns within the hour build the same plan."""
    now = now or datetime.now(UTC)
    t = int((now - timedelta(hours=4)).timestamp())
    return datetime.fromtimestamp(t - t % 3600, UTC)


def plan_fleet(params: FleetParams, end: datetime) -> FleetPlan:
    """Services, deploy times and their truth; no series are generated here (cheap)."""
    rng = np.random.default_rng([params.seed, 0])
    start = end - timedelta(days=params.days)
    services: list[ServiceBase] = []
    for i in range(params.services):
        services.append(
            ServiceBase(
                name=f"svc-{i:03d}",
                rps=float(np.exp(rng.uniform(math.log(5.0), math.log(500.0)))),
                error_ratio=float(rng.uniform(0.001, 0.008)),
                p99_s=float(rng.uniform(0.15, 1.2)),
                cores=float(rng.uniform(0.5, 8.0)),
                phase_s=float(rng.uniform(0, 86400)),
            )
        )
    # Deploys: after one day of history (+3 h margin) and before the tail.
    lo = start.timestamp() + 86400 + 3 * 3600
    hi = end.timestamp() - TAIL_S
    n_per = max(1, round(params.deploys_per_30d * params.days / 30))
    regression_keys = sorted(REGRESSIONS)
    improvement_keys = sorted(IMPROVEMENTS)
    out: list[FleetDeploy] = []
    for svc in services:
        times: list[float] = []
        tries = 0
        while len(times) < n_per and tries < 100 * n_per:
            tries += 1
            t = float(rng.uniform(lo, hi))
            if all(abs(t - u) >= MIN_GAP_S for u in times):
                times.append(t)
        for j, t in enumerate(sorted(times)):
            t = t - t % STEP_S  # on the scrape grid, so the step lands on a known sample
            u = rng.uniform()
            expectations: tuple[Expectation, ...] = ()
            if u < REGRESSION_SHARE:
                metric = regression_keys[int(rng.integers(len(regression_keys)))]
                truth = Truth("regression", metric, REGRESSIONS[metric][1], "fail")
            elif u < REGRESSION_SHARE + IMPROVEMENT_SHARE:
                metric = improvement_keys[int(rng.integers(len(improvement_keys)))]
                truth = Truth("improvement", metric, IMPROVEMENTS[metric][1], "pass")
                expectations = (Expectation(metric, "decrease"),)
            else:
                truth = Truth("noop")
            at = datetime.fromtimestamp(t, UTC)
            deploy = Deploy(
                deploy_id=f"{svc.name}-{j:03d}",
                service=svc.name,
                environment="production",
                version=f"v{j + 1}",
                started_at=at,
                finished_at=at + timedelta(minutes=5),
                source="fleet-bench",
                expectations=expectations,
            )
            out.append(FleetDeploy(deploy, truth))
    out.sort(key=lambda f: (f.deploy.started_at, f.deploy.deploy_id))
    held_out = next(f for f in reversed(out) if f.truth.kind == "noop")
    fleet = tuple(f for f in out if f is not held_out)
    return FleetPlan(params, start, end, tuple(services), tuple(out), held_out, fleet)


def _ar1(rng: np.random.Generator, n: int, sd: float) -> np.ndarray:
    """Stationary AR(1) noise with marginal standard deviation ``sd``."""
    e = rng.normal(0.0, sd * math.sqrt(1 - AR_PHI**2), n)
    e[0] = rng.normal(0.0, sd)
    return lfilter([1.0], [1.0, -AR_PHI], e)


def effect_multipliers(plan: FleetPlan, service: str, ts: np.ndarray) -> dict[str, np.ndarray]:
    """Per raw series (``p99``, ``p50``, ``cpu``) the product of every earlier deploy's factor at
    each of ``ts``, and ``err_add``, the error ratio added by regressions (the truth, per sample)."""
    out = {k: np.ones(len(ts)) for k in ("p99", "p50", "cpu")}
    out["err_add"] = np.zeros(len(ts))
    for f in plan.deploys:
        if f.deploy.service != service or f.truth.kind == "noop" or f.truth.metric is None:
            continue
        table = REGRESSIONS if f.truth.kind == "regression" else IMPROVEMENTS
        series, factor = table[f.truth.metric]
        i0 = int(np.searchsorted(ts, f.deploy.started_at.timestamp() + EFFECT_LAG_S))
        if series == "err_add":
            out[series][i0:] += factor
        else:
            out[series][i0:] *= factor
    return out


def service_series(plan: FleetPlan, index: int) -> dict[str, np.ndarray]:
    """The raw samples of one service: ``requests``/``errors`` (int64 cumulative), ``p99``/``p50``
    (seconds), ``cpu`` (cumulative seconds). Seeded by (seed, service index): deterministic."""
    svc = plan.services[index]
    rng = np.random.default_rng([plan.params.seed, 1, index])
    ts = plan.timestamps
    n = len(ts)
    load = 0.55 + 0.45 * np.sin(2 * np.pi * (ts - svc.phase_s) / 86400.0)  # 0.1 .. 1.0
    f = effect_multipliers(plan, svc.name, ts)
    # Every continuous draw first, counts last: the draws then do not depend on the deploys'
    # effects, so a plan without effects gives the same noise (the tests rely on it).
    noise = {k: np.exp(_ar1(rng, n, sd)) for k, sd in (("rps", 0.04), ("err", 0.1), ("p99", 0.05), ("p50", 0.04),
                                                       ("cpu", 0.03))}
    p99 = svc.p99_s * (0.8 + 0.3 * load) * noise["p99"] * f["p99"]
    p50 = 0.25 * svc.p99_s * (0.85 + 0.2 * load) * noise["p50"] * f["p50"]
    cores = svc.cores * (0.3 + 0.7 * load) * noise["cpu"] * f["cpu"]
    req = rng.poisson(svc.rps * load * noise["rps"] * STEP_S)
    ratio = np.clip(svc.error_ratio * noise["err"] + f["err_add"], 0.0, 1.0)
    err = rng.binomial(req, ratio)
    return {
        "requests": np.cumsum(req, dtype=np.int64),
        "errors": np.cumsum(err, dtype=np.int64),
        "p99": p99,
        "p50": p50,
        "cpu": np.cumsum(cores * STEP_S),
    }


def _lines(out: TextIO, prefix: str, values: list[str], ts_text: list[str]) -> None:
    out.write("\n".join([f"{prefix}{v} {t}" for v, t in zip(values, ts_text, strict=True)]))
    out.write("\n")


def write_openmetrics(plan: FleetPlan, path: Path, *, services: range | None = None) -> int:
    """Write the fleet as OpenMetrics for promtool: each family in one piece, each series in
    time order, timestamps in whole seconds, ``# EOF`` last. Returns the number of samples.

    Each family regenerates the services' series from their seeds (cheap next to formatting),
    so memory stays at one service's arrays instead of the fleet's.
    """
    idx = services if services is not None else range(len(plan.services))
    ts_text = [str(t) for t in plan.timestamps.tolist()]
    n = 0
    with path.open("w", encoding="utf-8", buffering=1 << 22) as out:
        for key, family, mtype, help_text in FAMILIES:
            out.write(f"# TYPE {family} {mtype}\n# HELP {family} {help_text}\n")
            sample = family + ("_total" if mtype == "counter" else "")
            for i in idx:
                arr = service_series(plan, i)[key]
                if arr.dtype.kind == "i":
                    values = [str(v) for v in arr.tolist()]
                else:
                    values = [repr(v) for v in np.round(arr, 6).tolist()]
                _lines(out, f'{sample}{{service="{plan.services[i].name}"}} ', values, ts_text)
                n += len(values)
        out.write("# EOF\n")
    return n


def fleet_config(plan: FleetPlan, url: str = "http://127.0.0.1:9090", *, history_s: float = 86400.0) -> Config:
    """The catalog of the 5 fleet metrics (all guards), 60 s steps and a 1-day history.

    ``history_s`` is 1 day, not the default 8: each deploy fetches its own recent past (one
    daily cycle for the seasonal baseline), which keeps a naive per-deploy query at ~1,500
    points (the benchmark's ``--history-days`` varies it; deploys are placed at least 1 day
    after the data starts, so longer histories are cut by the start of the data). Every service is declared (no dependencies) so overlap warnings only name deploys
    of the same service, as in a fleet where services are independent.
    """
    metrics = (
        MetricSpec(
            key="error_ratio",
            query=(
                'sum(rate(fleet_errors_total{service="$service"}[$window]))'
                ' / sum(rate(fleet_requests_total{service="$service"}[$window]))'
            ),
            unit="ratio", good="decrease", min_effect=0.005, min_effect_rel=0.25, guard=True, kind="ratio",
        ),
        MetricSpec(
            key="latency_p99", query='max(fleet_latency_p99_seconds{service="$service"})',
            unit="s", good="decrease", min_effect_rel=0.10, guard=True, kind="latency",
        ),
        MetricSpec(
            key="latency_p50", query='max(fleet_latency_p50_seconds{service="$service"})',
            unit="s", good="decrease", min_effect_rel=0.10, guard=True, kind="latency",
        ),
        MetricSpec(
            key="request_rate", query='sum(rate(fleet_requests_total{service="$service"}[$window]))',
            unit="req/s", good="none", min_effect_rel=0.10, guard=True, kind="rate",
        ),
        MetricSpec(
            key="cpu", query='sum(rate(fleet_cpu_seconds_total{service="$service"}[$window]))',
            unit="cores", good="decrease", min_effect_rel=0.10, guard=True, kind="rate",
        ),
    )
    return Config(
        prometheus=PrometheusSettings(url=url, scrape_interval_s=float(STEP_S), timeout_s=60.0),
        verification=VerificationSettings(history_s=history_s, step_s=float(STEP_S)),
        metrics={m.key: m for m in metrics},
        services={s.name: ServiceSpec(name=s.name) for s in plan.services},
    )


@dataclass(frozen=True)
class FleetData:
    """A generated fleet on disk: the TSDB to serve and the plan that describes it."""

    plan: FleetPlan
    tsdb_dir: Path
    generated_s: float  # 0.0 when the cache was reused
    samples: int


def ensure_fleet(params: FleetParams, *, cache_dir: Path = CACHE_DIR, now: datetime | None = None,
                 log: bool = True) -> FleetData:
    """The fleet's TSDB under ``cache_dir/<params.key>/``, generated and backfilled when missing.

    The manifest (written last) records the data's end; a cache is reused while its data
    is at least 3 h old (always) and less than 50 days old (retention is 60 days).
    """
    now = now or datetime.now(UTC)
    root = cache_dir / params.key
    manifest = root / "manifest.json"
    if manifest.exists():
        meta = json.loads(manifest.read_text())
        end = datetime.fromisoformat(meta["end"])
        if now - end < timedelta(days=50) - timedelta(days=params.days):
            return FleetData(plan_fleet(params, end), root / "tsdb", 0.0, int(meta["samples"]))
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    plan = plan_fleet(params, fleet_end(now))
    t0 = time.perf_counter()
    om = root / "fleet.om"
    samples = write_openmetrics(plan, om)
    t1 = time.perf_counter()
    if log:
        print(f"  wrote {samples:,} samples ({om.stat().st_size / 2**20:.0f} MiB) in {t1 - t0:.1f} s; backfilling ...",
              flush=True)
    # Blocks as long as promtool allows: it re-reads the whole file once per block range.
    backfill(om, root / "tsdb", max_block_duration=f"{24 * params.days + 48}h", timeout_s=3600)
    om.unlink()
    t2 = time.perf_counter()
    if log:
        print(f"  backfilled in {t2 - t1:.1f} s", flush=True)
    meta = {"end": plan.end.isoformat(), "samples": samples, "params": asdict(params),
            "write_s": round(t1 - t0, 1), "backfill_s": round(t2 - t1, 1)}
    manifest.write_text(json.dumps(meta, indent=1))
    return FleetData(plan, root / "tsdb", t2 - t0, samples)
