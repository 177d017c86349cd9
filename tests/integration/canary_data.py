"""Two versions serving at once, backfilled into a real Prometheus (shared by the canary tests).

``canary_prom`` (module scope): 80 minutes of 15 s samples ending 4-5 hours ago (older than
Prometheus' head block), label ``version``: ``v1`` serves throughout, ``v2`` from
``canary_start`` (40 minutes in) at a 25% share. ``shop``'s canary fails 5x as often as its
baseline and uses 30% more memory (gauge ``process_resident_memory_bytes``), ``cart``'s is a
no-op, ``quiet``'s never serves. 50 requests/s per service, 1% errors,
log-normal latency (median 80 ms) in the demo's histogram buckets. Seeded.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import requests

from analyzers.demo.promserver import PrometheusServer
from tests.fixtures.prom import cached_backfill

LES = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STEP_S = 15
#: service -> (canary error multiplier, canary share, canary serves at all)
SERVICES = {"shop": (5.0, 0.25, True), "cart": (1.0, 0.25, True), "quiet": (1.0, 0.0, False)}


@dataclass(frozen=True)
class CanaryProm:
    url: str
    canary_start: datetime
    now: datetime  # 30 minutes into the canary
    root: Path


def openmetrics(start: datetime, minutes: int, canary_start: datetime, seed: int = 5) -> str:
    """OpenMetrics text: each series' samples together and in time order, then ``# EOF``."""
    from scipy import stats as sps

    rng = np.random.default_rng(seed)
    cdf = sps.norm.cdf((np.log(np.array(LES)) - math.log(0.08)) / 0.6)
    probs = np.diff(np.concatenate([[0.0], cdf, [1.0]]))
    fams: dict[str, list[str]] = {"http_requests": [], "http_request_errors": [], "http_request_duration_seconds": []}
    for service, (err_mult, share, serves) in SERVICES.items():
        for version in ("v1", "v2"):
            req = err = 0.0
            buckets = np.zeros(len(LES) + 1)
            series: dict[str, list[str]] = {}
            for k in range(minutes * 60 // STEP_S):
                t = start + timedelta(seconds=k * STEP_S)
                canary_on = t >= canary_start and serves
                if version == "v2" and not canary_on:
                    continue
                mine = (share if canary_on else 0.0) if version == "v2" else 1 - (share if canary_on else 0.0)
                n = rng.poisson(50 * STEP_S * mine)
                e = rng.binomial(n, min(1.0, 0.01 * (err_mult if version == "v2" else 1.0)))
                req, err = req + n, err + e
                buckets += rng.multinomial(n, probs)
                ts = f"{t.timestamp():.0f}"
                lab = f'service="{service}",version="{version}"'
                series.setdefault("r", []).append(f"http_requests_total{{{lab}}} {req:.0f} {ts}")
                series.setdefault("e", []).append(f"http_request_errors_total{{{lab}}} {err:.0f} {ts}")
                for i, (le, c) in enumerate(zip([*LES, math.inf], np.cumsum(buckets), strict=True)):
                    le_s = "+Inf" if math.isinf(le) else f"{le:g}"
                    series.setdefault(f"b{i}", []).append(
                        f'http_request_duration_seconds_bucket{{{lab},le="{le_s}"}} {c:.0f} {ts}')
            fams["http_requests"] += series.get("r", [])
            fams["http_request_errors"] += series.get("e", [])
            for i in range(len(LES) + 1):
                fams["http_request_duration_seconds"] += series.get(f"b{i}", [])
    fams["process_resident_memory_bytes"] = _memory(start, minutes, canary_start, seed)
    out = []
    for name, kind in (("http_requests", "counter"), ("http_request_errors", "counter"),
                       ("http_request_duration_seconds", "histogram"), ("process_resident_memory_bytes", "gauge")):
        out.append(f"# TYPE {name} {kind}")
        out += fams[name]
    return "\n".join(out) + "\n# EOF\n"


def _memory(start: datetime, minutes: int, canary_start: datetime, seed: int) -> list[str]:
    """A gauge per version: a shared cycle, AR(1) noise of its own; shop's canary uses 30% more."""
    rng = np.random.default_rng([seed, 1])
    lines = []
    n = minutes * 60 // STEP_S
    shared = 200e6 * (1 + 0.2 * np.sin(np.arange(n) * 2 * math.pi / 240))
    for service, (_err_mult, _share, serves) in SERVICES.items():
        for version in ("v1", "v2"):
            noise = np.zeros(n)
            for k in range(1, n):
                noise[k] = 0.9 * noise[k - 1] + rng.normal(0, 2e6)
            extra = 1.3 if (service == "shop" and version == "v2") else 1.0
            for k in range(n):
                t = start + timedelta(seconds=k * STEP_S)
                if version == "v2" and not (t >= canary_start and serves):
                    continue
                lines.append(f'process_resident_memory_bytes{{service="{service}",version="{version}"}} '
                             f"{shared[k] * extra + noise[k]:.0f} {t.timestamp():.0f}")
    return lines


def _wait_queryable(url: str, at: datetime) -> None:
    for _ in range(120):
        r = requests.post(url + "/api/v1/query", data={"query": "count(http_requests_total)", "time": f"{at.timestamp():.0f}"},
                          timeout=10)
        if r.ok and r.json()["data"]["result"]:
            return
        time.sleep(0.5)
    raise RuntimeError("backfilled canary data never became queryable")


@pytest.fixture(scope="module")
def canary_prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CanaryProm]:
    root = tmp_path_factory.mktemp("canary")
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = hour - timedelta(hours=5)
    canary_start = start + timedelta(minutes=40)
    # the same blocks for every module (and xdist worker) asking within the hour
    cached_backfill(tmp_path_factory, f"canary-{start:%Y%m%dT%H%M}",
                    lambda om: om.write_text(openmetrics(start, 80, canary_start)), root / "tsdb")
    server = PrometheusServer(root / "tsdb").start()
    try:
        now = canary_start + timedelta(minutes=30)
        _wait_queryable(server.url, now)
        yield CanaryProm(url=server.url, canary_start=canary_start, now=now, root=root)
    finally:
        server.stop()
