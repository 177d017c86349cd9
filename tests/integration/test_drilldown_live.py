"""Error drill-down, BubbleUp and exemplars against a real Prometheus holding known truth.

The module backfills its own data (2 hours, 15 s scrapes, seeded): service ``shop`` has
endpoints ``/a /b /c``, pods ``p1..p4`` and version ``v1``; at ``MID`` version ``v2`` starts
serving beside it on every endpoint and pod (a rollout: two versions at once).

- errors: every series fails 1% of its requests (binomial), except ``endpoint="/b", version="v2"``,
  which fails 40% (the bad release, only on one endpoint);
- latency: median 50 ms everywhere, except pod ``p3`` after ``MID`` (median 500 ms);
- service ``calm`` has the same labels and fails 2% of requests everywhere, independently of
  every label (a null case: BubbleUp must not name a culprit).

Exemplars cannot be backfilled: a second Prometheus (``--enable-feature=exemplar-storage``)
scrapes a client_python registry exposing OpenMetrics with exemplars.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from analyzers.config import PrometheusSettings, default_config
from analyzers.demo.openmetrics import (
    ERRORS,
    HISTOGRAM,
    REQUESTS,
    write_counter_series,
    write_family_header,
    write_histogram_series,
)
from analyzers.demo.promserver import PrometheusServer, backfill
from analyzers.drilldown.bubbleup import candidate_labels, error_bubbleup, latency_bubbleup
from analyzers.drilldown.errors import counters, error_breakdown, error_series
from analyzers.drilldown.exemplars import NO_EXEMPLARS, latency_exemplars
from analyzers.model import TraceUrl
from analyzers.prometheus.client import PrometheusClient
from analyzers.stats.divergence import STANDS_OUT
from tests.fixtures.prom import exemplar_target, scraping_prometheus

pytestmark = pytest.mark.integration

STEP = 15
PER_SCRAPE = 30
SEED = 20261207
BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LE = tuple(f"{b:g}" for b in BOUNDS) + ("+Inf",)
ENDPOINTS = ("/a", "/b", "/c")
PODS = ("p1", "p2", "p3", "p4")


@dataclass(frozen=True)
class Truth:
    url: str
    start: int
    mid: int
    end: int
    # (service, endpoint, pod, version) -> (requests, errors) per scrape interval
    counts: dict[tuple[str, str, str, str], tuple[np.ndarray, np.ndarray]]

    def window(self, service: str, t0: int, t1: int, **match: str) -> tuple[float, float]:
        """True (requests, errors) counted in (t0, t1] for the series matching ``match``."""
        i0, i1 = (t0 - self.start) // STEP, (t1 - self.start) // STEP
        req = err = 0.0
        for (svc, ep, pod, ver), (r, e) in self.counts.items():
            labels = {"endpoint": ep, "pod": pod, "version": ver}
            if svc == service and all(labels[k] == v for k, v in match.items()):
                req += float(r[i0 + 1 : i1 + 1].sum())
                err += float(e[i0 + 1 : i1 + 1].sum())
        return req, err


def _write(path: Path, start: int, n: int, mid_idx: int) -> dict[tuple[str, str, str, str], tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(SEED)
    ts = [str(start + i * STEP) for i in range(n)]
    counts: dict[tuple[str, str, str, str], tuple[np.ndarray, np.ndarray]] = {}
    hist: dict[tuple[str, str, str, str], tuple[np.ndarray, np.ndarray]] = {}
    edges = np.array(BOUNDS)
    for service in ("shop", "calm"):
        for ep in ENDPOINTS:
            for pod in PODS:
                for ver in ("v1", "v2"):
                    live = np.arange(n) >= (mid_idx if ver == "v2" else 0)
                    req = np.where(live, PER_SCRAPE, 0)
                    p = 0.02 if service == "calm" else (0.40 if (ep == "/b" and ver == "v2") else 0.01)
                    err = rng.binomial(req, p)
                    counts[(service, ep, pod, ver)] = (req, err)
                    per_bucket = np.zeros((n, len(LE)), dtype=np.int64)
                    sums = np.zeros(n)
                    for i in np.flatnonzero(live):
                        median = 0.5 if (service == "shop" and pod == "p3" and i >= mid_idx) else 0.05
                        x = rng.lognormal(math.log(median), 0.4, PER_SCRAPE)
                        per_bucket[i] = np.bincount(np.searchsorted(edges, x, side="left"), minlength=len(LE))
                        sums[i] = x.sum()
                    hist[(service, ep, pod, ver)] = (np.cumsum(np.cumsum(per_bucket, axis=1), axis=0), np.cumsum(sums))
    with path.open("w", encoding="utf-8") as out:
        for family, idx in ((REQUESTS, 0), (ERRORS, 1)):
            write_family_header(out, family, "counter", "Requests.")
            for (service, ep, pod, ver), pair in counts.items():
                first = mid_idx if ver == "v2" else 0  # v2's series only exist from the rollout on
                labels = {"service": service, "endpoint": ep, "pod": pod, "version": ver}
                write_counter_series(out, f"{family}_total", labels, np.cumsum(pair[idx])[first:], ts[first:])
        write_family_header(out, HISTOGRAM, "histogram", "Request latency in seconds.", unit="seconds")
        for (service, ep, pod, ver), (cum, sums) in hist.items():
            first = mid_idx if ver == "v2" else 0
            labels = {"service": service, "endpoint": ep, "pod": pod, "version": ver}
            write_histogram_series(out, HISTOGRAM, labels, LE, cum[first:], sums[first:], ts[first:])
        out.write("# EOF\n")
    return counts


@pytest.fixture(scope="module")
def truth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Truth]:
    base = tmp_path_factory.mktemp("drilldown-truth")
    end = (int(datetime.now(UTC).timestamp()) // 3600 - 4) * 3600  # 4-6 h ago: out of the head block
    start = end - 2 * 3600
    n = 2 * 3600 // STEP + 1
    counts = _write(base / "data.om", start, n, n // 2)
    backfill(base / "data.om", base / "tsdb")
    server = PrometheusServer(base / "tsdb").start()
    try:
        client = PrometheusClient(PrometheusSettings(url=server.url, timeout_s=20.0))
        deadline = time.monotonic() + 60
        while len(client.query("count by (service) (http_requests_total)", datetime.fromtimestamp(end, UTC)).series) < 2:
            if time.monotonic() > deadline:
                raise RuntimeError("backfilled drill-down data did not become queryable within 60 s")
            time.sleep(0.2)
        yield Truth(server.url, start, start + (n // 2) * STEP, end, counts)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def client(truth: Truth) -> PrometheusClient:
    return PrometheusClient(PrometheusSettings(url=truth.url, timeout_s=20.0))


def _shop() -> tuple[str, str]:
    return counters(default_config(), "shop")


def test_who_is_failing_ranks_the_broken_endpoint_first_with_its_true_ratio(client: PrometheusClient, truth: Truth) -> None:
    events, exposure = _shop()
    t0, t1 = truth.mid + 600, truth.end  # the rollout's second hour, clear of its first minutes
    bd = error_breakdown(client, events, exposure, "endpoint", t0, t1)
    assert [r.value for r in bd.rows][0] == "/b" and {r.value for r in bd.rows} == set(ENDPOINTS)
    top = bd.rows[0]
    req, err = truth.window("shop", t0, t1, endpoint="/b")
    # increase() extrapolates to the window's edges: counts agree within a few percent, ratios closer
    assert top.requests == pytest.approx(req, rel=0.03) and top.errors == pytest.approx(err, rel=0.05)
    assert top.ratio == pytest.approx(err / req, rel=0.03)
    assert top.ratio_ci[0] < err / req < top.ratio_ci[1]
    assert top.excess > 0.5 and top.error_share > 0.8  # most errors, a third of the traffic
    assert top.error_rate == pytest.approx(top.errors / (t1 - t0), rel=1e-9)
    for r in bd.rows[1:]:
        assert r.excess < 0 and r.ratio < 0.02
    assert bd.ratio == pytest.approx(sum(r.errors for r in bd.rows) / sum(r.requests for r in bd.rows), rel=1e-9)


def test_per_version_series_show_the_rollout_side_by_side(client: PrometheusClient, truth: Truth) -> None:
    events, exposure = _shop()
    series = error_series(client, events, exposure, "version", truth.start, truth.end, 60, scrape_interval_s=STEP)
    assert set(series.ratio.columns) == {"v1", "v2"}
    before = series.ratio.index < datetime.fromtimestamp(truth.mid, UTC)
    after = series.ratio.index > datetime.fromtimestamp(truth.mid + 600, UTC)
    # v2 did not serve before the rollout: no requests is "no data" (NaN), never a 0% error ratio
    assert series.ratio.loc[before, "v2"].isna().all()
    assert series.ratio.loc[after, "v1"].median() == pytest.approx(0.01, abs=0.006)
    # v2 fails 40% of /b's requests and 1% of the others: (0.40 + 0.01 + 0.01) / 3 = 0.14
    assert series.ratio.loc[after, "v2"].median() == pytest.approx(0.14, abs=0.03)
    assert series.request_rate.loc[after, "v2"].median() == pytest.approx(
        len(ENDPOINTS) * len(PODS) * PER_SCRAPE / STEP, rel=0.02)


def test_candidate_labels_come_from_the_series(client: PrometheusClient, truth: Truth) -> None:
    _, exposure = _shop()
    assert candidate_labels(client, exposure, truth.start, truth.end) == ("endpoint", "pod", "version")


def test_bubbleup_names_the_label_value_behind_the_errors(client: PrometheusClient, truth: Truth) -> None:
    events, exposure = _shop()
    t0, t1 = truth.mid + 600, truth.end
    bu = error_bubbleup(client, events, exposure, ("endpoint", "pod", "version"), t0, t1)
    best = bu.explanation
    assert best is not None and best.label in ("endpoint", "version"), [(c.label, c.score) for c in bu.labels]
    assert best.top is not None and best.top.value in ("/b", "v2")
    by_label = {c.label: c for c in bu.labels}
    # /b holds ~90% of the errors and under a third of the requests that did not fail
    req, err = truth.window("shop", t0, t1)
    req_b, err_b = truth.window("shop", t0, t1, endpoint="/b")
    b = next(v for v in by_label["endpoint"].values if v.value == "/b")
    assert b.bad_share == pytest.approx(err_b / err, abs=0.02) and b.bad_share > 0.85
    assert b.good_share == pytest.approx((req_b - err_b) / (req - err), abs=0.01)
    assert b.bad_ratio == pytest.approx(err_b / req_b, rel=0.05)
    assert b.difference == pytest.approx(b.bad_share - b.good_share, abs=1e-12)
    # pods share the errors as they share the traffic: not an explanation
    assert not by_label["pod"].stands_out and by_label["pod"].score < STANDS_OUT
    assert bu.labels[-1].label == "pod"


def test_bubbleup_names_nothing_when_errors_do_not_depend_on_any_label(client: PrometheusClient, truth: Truth) -> None:
    events, exposure = counters(default_config(), "calm")
    for t0, t1 in ((truth.start, truth.mid), (truth.mid + 600, truth.end), (truth.end - 600, truth.end)):
        bu = error_bubbleup(client, events, exposure, ("endpoint", "pod", "version"), t0, t1)
        assert bu.n_bad > 0 and bu.explanation is None, [(c.label, c.score, c.p_adjusted) for c in bu.labels]
        assert all(c.score < STANDS_OUT for c in bu.labels)


def test_bubbleup_names_the_pod_behind_the_slow_tail(client: PrometheusClient, truth: Truth) -> None:
    bu = latency_bubbleup(client, HISTOGRAM, "shop", ("endpoint", "pod", "version"), truth.mid + 600, truth.end)
    assert bu.kind == "slow" and bu.threshold_s in BOUNDS
    best = bu.explanation
    assert best is not None and best.label == "pod" and best.top is not None and best.top.value == "p3"
    assert best.top.bad_share > 0.8 and best.top.good_share < 0.25
    # an explicit threshold must be a bucket bound
    assert latency_bubbleup(client, HISTOGRAM, "shop", ("pod",), truth.mid + 600, truth.end,
                            threshold_s=0.25).explanation is not None
    with pytest.raises(Exception, match="bucket bound"):
        latency_bubbleup(client, HISTOGRAM, "shop", ("pod",), truth.mid + 600, truth.end, threshold_s=0.3)


# --- exemplars: a real scrape of OpenMetrics with exemplars ------------------------------

@pytest.fixture(scope="module")
def exemplar_prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, float]]]:
    with exemplar_target(SEED) as (target, observed), \
            scraping_prometheus(target, tmp_path_factory.mktemp("exemplars")) as prom:
        yield prom.url, observed


def test_exemplars_come_from_a_scrape_with_escaped_trace_links(exemplar_prom: tuple[str, dict[str, float]]) -> None:
    url, observed = exemplar_prom
    client = PrometheusClient(PrometheusSettings(url=url, timeout_s=10.0))
    trace = TraceUrl("http://tempo.example/trace/{trace_id}")
    deadline = time.monotonic() + 60
    while True:
        now = int(time.time())
        ex = latency_exemplars(client, HISTOGRAM, "shop", now - 600, now + 60, trace)
        if ex.total or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert ex.total > 0, "no exemplars scraped within 60 s"
    assert ex.points and ex.linked and "trace ids" in ex.note
    for p in ex.points:
        # each exemplar is one observed request: its id and its exact value
        assert p.trace_id in observed and p.value == pytest.approx(observed[p.trace_id], rel=1e-9)
        assert p.url is not None and p.url.startswith("http://tempo.example/trace/")
        assert "/" not in p.url.removeprefix("http://tempo.example/trace/")  # the id cannot leave the path segment
        assert float(p.le) >= p.value if p.le != "+Inf" else True
    # one exemplar per bucket (the last observed there): the slowest requests are among them
    assert max(p.value for p in ex.points) == pytest.approx(max(observed.values()), rel=1e-9)
    # without a template: points without links, and the note says how to get them
    bare = latency_exemplars(client, HISTOGRAM, "shop", now - 600, now + 60, None)
    assert all(p.url is None for p in bare.points) and "trace_url" in bare.note
    # another service: nothing, and the note says why it may be empty
    none = latency_exemplars(client, HISTOGRAM, "nobody", now - 600, now + 60, trace)
    assert none.total == 0 and none.note == NO_EXEMPLARS


def test_exemplar_urls_escape_ids_and_keep_the_host() -> None:
    trace = TraceUrl("https://grafana.example/explore?left={\"query\":\"{trace_id}\"}")
    assert trace.url("a b/../evil.example?x=1") == (
        'https://grafana.example/explore?left={"query":"a%20b%2F..%2Fevil.example%3Fx%3D1"}')
    assert trace.url("") is None and trace.url("x\n") is None and trace.url("x" * 300) is None


@pytest.mark.parametrize("template", [
    "http://{trace_id}.example/",          # the id would choose the host
    "http://tempo.example{trace_id}",       # ... or the port / the rest of the host
    "javascript:alert(1)//{trace_id}",      # not http(s)
    "http://tempo.example/trace",           # no placeholder
    "http://tempo.example/{trace_id}/{trace_id}",
    "http://tempo.example/ {trace_id}",
])
def test_trace_url_templates_that_let_an_id_choose_the_target_are_refused(template: str) -> None:
    from analyzers.config import config_from_dict
    from analyzers.errors import ConfigError

    with pytest.raises(ConfigError, match="trace_url"):
        config_from_dict({"dashboard": {"trace_url": template}})
