"""Cached loaders: the only place the dashboard reaches the store and Prometheus.

Every loader is keyed on plain values (store URL, integer Unix seconds, step, PromQL
text) so reruns and other viewers hit the cache; callers pass "now" already rounded
down to the step. Arguments whose names start with ``_`` are not hashed (Streamlit's
rule): the configuration fingerprint stands in for them. Loaders raise
:class:`analyzers.errors.AnalyzerError` subclasses, never cache them, and pages turn
them into banners (:func:`dashboard.components.common.panel`).

The store is opened per load and closed after it: a SQLite connection must not cross
Streamlit's session threads, and opening one costs well under a millisecond.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pandas as pd
import streamlit as st

from analyzers.config import Config, load_config
from analyzers.errors import AnalyzerError, StoreUnavailable
from analyzers.model import Deploy, DeployVerdict

if TYPE_CHECKING:
    from analyzers.prometheus.client import PrometheusClient, QueryResult

#: Seconds a store read stays cached: new deploys show up within this delay.
STORE_TTL_S = 15
#: Seconds a Prometheus answer stays cached (ranges end at "now" rounded down to the step).
PROM_TTL_S = 60


def get_config() -> Config:
    """The configuration from ``$ANALYZERS_CONFIG`` / ``$PROMETHEUS_URL`` / ``$DEPLOY_STORE_URL``.

    Read on every run (a small TOML file): a changed environment or file applies at once.
    Pages never choose where requests go; only this does.
    """
    return load_config()


def fingerprint(config: Config) -> str:
    """Cache key standing for the whole configuration (connection settings and catalog)."""
    return repr(config)


@st.cache_resource(show_spinner=False)
def _client(settings_key: str, _config: Config) -> PrometheusClient:
    from analyzers.prometheus.client import PrometheusClient

    return PrometheusClient(_config.prometheus)


def get_client(config: Config) -> PrometheusClient:
    """One shared client (and HTTP connection pool) per distinct connection settings."""
    return _client(repr(config.prometheus), config)


@contextlib.contextmanager
def _store(url: str) -> Iterator[Any]:
    from analyzers.events.store import open_store

    try:
        store = open_store(url)
    except AnalyzerError:
        raise
    except Exception as exc:  # noqa: BLE001 - e.g. OSError creating the SQLite directory
        raise StoreUnavailable(f"cannot open the deploy store at {_redact(url)}: {exc}") from exc
    try:
        yield store
    finally:
        with contextlib.suppress(Exception):
            store.close()


def _redact(url: str) -> str:
    """The store URL without a password (``postgresql://user:***@host/db``)."""
    return re.sub(r"(//[^:/@]+):[^@/]*@", r"\1:***@", url)


def to_dt(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


# --------------------------------------------------------------------------- store


@dataclass(frozen=True)
class DeployList:
    """Deploys in a range (newest first) and the latest verdict of each that has one."""

    deploys: tuple[Deploy, ...]
    verdicts: dict[str, DeployVerdict]
    truncated: bool


@st.cache_data(ttl=STORE_TTL_S, show_spinner=False)
def load_deploys(store_url: str, since: int, until: int, environment: str | None, limit: int = 10000) -> DeployList:
    """Deploys started in ``[since, until]`` (Unix s), optionally in one environment."""
    with _store(store_url) as store:
        deploys = store.list_deploys(environment=environment, since=to_dt(since), until=to_dt(until), limit=limit)
        verdicts = store.latest_verdicts([d.deploy_id for d in deploys]) if deploys else {}
    return DeployList(tuple(deploys), dict(verdicts), len(deploys) >= limit)


@st.cache_data(ttl=STORE_TTL_S, show_spinner=False)
def load_services(store_url: str) -> list[str]:
    """Services with at least one stored deploy (for the pickers)."""
    with _store(store_url) as store:
        return list(store.services())


@st.cache_data(ttl=STORE_TTL_S, show_spinner=False)
def load_environments(store_url: str, since: int, until: int) -> list[str]:
    """Environments seen in the range, for the filter's options."""
    data = load_deploys(store_url, since, until, None)
    return sorted({d.environment for d in data.deploys})


@dataclass(frozen=True)
class DeployDetail:
    """One deploy, its latest verdict, the verdict history (oldest first) and its neighbours."""

    deploy: Deploy
    verdict: DeployVerdict | None
    history: tuple[DeployVerdict, ...]
    neighbours: tuple[Deploy, ...]
    deliveries: tuple[dict[str, Any], ...] = ()


@st.cache_data(ttl=STORE_TTL_S, show_spinner=False)
def load_deploy(store_url: str, deploy_id: str, neighbour_s: int) -> DeployDetail | None:
    """A deploy with its verdicts and the deploys within ``neighbour_s`` of its start; None if unknown."""
    with _store(store_url) as store:
        deploy = store.get_deploy(deploy_id)
        if deploy is None:
            return None
        verdict = store.latest_verdict(deploy_id)
        history = store.verdict_history(deploy_id)
        around = timedelta(seconds=neighbour_s)
        others = store.list_deploys(since=deploy.started_at - around, until=deploy.started_at + around, limit=500)
        deliveries = store.deliveries(deploy_id)
    history = sorted(history, key=lambda v: v.checked_at)
    neighbours = tuple(d for d in others if d.deploy_id != deploy_id)
    return DeployDetail(deploy, verdict, tuple(history), neighbours, tuple(deliveries))


@st.cache_data(ttl=STORE_TTL_S, show_spinner=False)
def load_service_history(store_url: str, service: str, limit: int = 50) -> DeployList:
    """The last ``limit`` deploys of one service with their latest verdicts (newest first)."""
    with _store(store_url) as store:
        deploys = store.list_deploys(service=service, limit=limit)
        verdicts = store.latest_verdicts([d.deploy_id for d in deploys]) if deploys else {}
    return DeployList(tuple(deploys), dict(verdicts), len(deploys) >= limit)


def save_verdict(store_url: str, verdict: DeployVerdict) -> None:
    """Store a fresh verdict and drop cached store reads so every page shows it."""
    with _store(store_url) as store:
        store.save_verdict(verdict)
    load_deploy.clear()
    load_deploys.clear()
    load_services.clear()
    load_environments.clear()


# --------------------------------------------------------------------------- Prometheus


@st.cache_data(ttl=PROM_TTL_S, show_spinner=False)
def query_range(config_key: str, _config: Config, query: str, start: int, end: int, step: int) -> QueryResult:
    """``query_range`` over ``[start, end]`` (Unix s, aligned to ``step`` by the caller)."""
    return get_client(_config).query_range(query, to_dt(start), to_dt(end), float(step))


@st.cache_data(ttl=PROM_TTL_S, show_spinner=False)
def query_instant(config_key: str, _config: Config, query: str, at: int) -> QueryResult:
    """An instant query evaluated at ``at`` (Unix s)."""
    return get_client(_config).query(query, to_dt(at))


@st.cache_data(ttl=PROM_TTL_S, show_spinner=False)
def load_metric_series(
    config_key: str,
    _config: Config,
    deploy_key: str,
    _deploy: Deploy,
    metric_key: str,
    start: int,
    end: int,
    step: int,
) -> tuple[str, pd.Series, tuple[str, ...]]:
    """A catalog metric around a deploy: ``(resolved PromQL, series, back-end warnings)``."""
    from analyzers.verify.deploy import fetch_metric_series

    return fetch_metric_series(
        get_client(_config), _config, metric_key, _deploy, to_dt(start), to_dt(end), float(step)
    )


# --------------------------------------------------------------------------- latency

#: Percentile choices offered on the Latency page: label -> quantile.
PERCENTILES: dict[str, float] = {"p50": 0.5, "p90": 0.9, "p99": 0.99, "p99.9": 0.999}


@dataclass(frozen=True)
class LatencyData:
    """Bucket counts of one histogram for one service over a range, and percentiles from them.

    ``cumulative``: index time (UTC), one column per bucket upper bound ``le`` (seconds,
    ``inf`` last), values = requests counted over the trailing ``window`` (cumulative over
    buckets, as Prometheus stores them). ``quantiles``: label -> frame with ``value``,
    ``lower``, ``upper`` in seconds, where lower/upper are the bounds of the bucket the
    quantile falls in (interpolation can place it anywhere inside).
    """

    query: str
    les: tuple[float, ...]
    cumulative: pd.DataFrame
    quantiles: dict[str, pd.DataFrame]
    warnings: tuple[str, ...]
    step: int
    window: str
    window_s: float
    #: What answered: "histogram" (classic ``le`` buckets), "native histogram", "summary", or ""
    #: (nothing). For a summary ``cumulative`` is empty and each quantile frame's ``value`` is the
    #: highest instance's quantile, ``lower``/``upper`` the lowest/highest instance's.
    source: str = "histogram"
    instances: int = 0
    #: Percentiles asked for that the summary does not export.
    missing: tuple[str, ...] = ()


def histogram_selector(service: str) -> str:
    """Label matchers (escaped) selecting one service's series."""
    from analyzers.prometheus.promql import matchers

    return matchers(service=service)


@st.cache_data(ttl=PROM_TTL_S, show_spinner=False)
def load_latency(
    config_key: str,
    _config: Config,
    histogram: str,
    service: str,
    start: int,
    end: int,
    step: int,
    percentiles: tuple[str, ...],
) -> LatencyData:
    """One ``query_range`` (:func:`analyzers.prometheus.latency.latency_query`) answered by whichever the
    service exposes: classic buckets ``sum by (le) (increase(<histogram>_bucket[w]))``, a native
    histogram ``sum(increase(<histogram>[w]))`` (turned into the same cumulative counts), or a
    summary's per-instance quantile series.

    From buckets, percentiles are computed with Prometheus's interpolation
    (:func:`analyzers.prometheus.latency.quantiles_frame`); ``w`` is at least 4 scrape intervals and at least
    the step. Percentiles are scale-free, so the same counts serve the percentile lines and
    (divided by ``w``) the heatmap's req/s. A summary's quantiles cannot be aggregated across
    instances: the line is the highest instance's (an upper bound of the service-wide quantile,
    which lies between the instances' lowest and highest) and the band spans all instances.
    The query asks for every offered percentile, so picking others reuses the cached answer.
    """
    from analyzers.config import parse_duration
    from analyzers.prometheus import latency

    window = latency.rate_window(step, _config.prometheus.scrape_interval_s)
    query = latency.latency_query(histogram, histogram_selector(service), window, PERCENTILES.values())
    result = query_range(config_key, _config, query, start, end, step)
    source, frame, summary = latency.split_latency_result(result)
    quantiles: dict[str, pd.DataFrame] = {}
    missing: list[str] = []
    instances = 0
    if source == "summary":
        for label in percentiles:
            per = latency.summary_quantiles(summary, PERCENTILES[label])
            if per.empty:
                missing.append(label)
                continue
            instances = max(instances, per.shape[1])
            quantiles[label] = pd.DataFrame({"value": per.max(axis=1), "lower": per.min(axis=1),
                                             "upper": per.max(axis=1)})
    else:
        quantiles = {label: latency.quantiles_frame(frame, PERCENTILES[label]) for label in percentiles}
    return LatencyData(
        query=query, les=tuple(float(c) for c in frame.columns), cumulative=frame, quantiles=quantiles,
        warnings=tuple(result.warnings), step=step, window=window, window_s=parse_duration(window),
        source=source, instances=instances, missing=tuple(missing),
    )


@dataclass(frozen=True)
class Distribution:
    """Bucket counts of one window: cumulative counts per ``le`` over ``[start, end]``."""

    start: int
    end: int
    les: tuple[float, ...]
    cumulative: tuple[float, ...]
    query: str
    warnings: tuple[str, ...]
    #: "histogram" (classic ``le`` buckets) or "native histogram" (``les`` = every bound of both windows).
    source: str = "histogram"
    #: Native histogram: how many buckets the window's histogram has (classic: 0).
    native_buckets: int = 0


@st.cache_data(ttl=PROM_TTL_S, show_spinner=False)
def load_distributions(config_key: str, _config: Config, histogram: str, service: str,
                       windows: tuple[tuple[str, int, int], ...], native: bool = False) -> tuple[Distribution, ...]:
    """Requests per bucket over each ``(name, start, end)`` window, in ONE instant query
    (:func:`analyzers.prometheus.latency.windows_query`: each window's ``increase(...[end-start])`` shifted
    with ``offset`` to its end). A window without data gets empty ``les``.

    ``native=True`` (two windows, a native histogram): :func:`analyzers.prometheus.latency.native_windows_query`
    fetches both windows' histograms, and both distributions are put on the same bounds (every
    bucket bound either window has, :func:`analyzers.prometheus.latency.native_cumulative`)."""
    from analyzers.prometheus import latency

    if native:
        return _native_distributions(config_key, _config, histogram, service, windows)
    query, at = latency.windows_query(histogram, histogram_selector(service), {n: (a, b) for n, a, b in windows})
    result = query_instant(config_key, _config, query, at)
    out = []
    for name, start, end in windows:
        pairs = sorted(
            (float(s.labels.get("le", "nan")), float(s.values.iloc[-1]) if len(s.values) else float("nan"))
            for s in result.series
            if s.labels.get("window") == name
        )
        out.append(Distribution(start, end, tuple(p[0] for p in pairs), tuple(p[1] for p in pairs), query,
                                tuple(result.warnings)))
    return tuple(out)


def _native_distributions(config_key: str, _config: Config, histogram: str, service: str,
                          windows: tuple[tuple[str, int, int], ...]) -> tuple[Distribution, ...]:
    from analyzers.prometheus import latency

    (n0, b0, b1), (n1, a0, a1) = windows
    query, at = latency.native_windows_query(histogram, histogram_selector(service), (b0, b1), (a0, a1), "service")
    result = query_instant(config_key, _config, query, at)
    first, second = latency.split_native_windows(result, "service")
    present = [h for h in (first, second) if h is not None]
    les, counts = latency.native_cumulative(present)
    out = []
    for h, (start, end) in ((first, (b0, b1)), (second, (a0, a1))):
        if h is None or h.count <= 0:
            out.append(Distribution(start, end, (), (), query, tuple(result.warnings), "native histogram", 0))
            continue
        row = counts[present.index(h)]
        out.append(Distribution(start, end, les, tuple(float(c) for c in row), query, tuple(result.warnings),
                                "native histogram", len(h.buckets)))
    return tuple(out)


@dataclass(frozen=True)
class Breakdown:
    """Who is slow: label values ranked by their excess share of the slow tail over one window."""

    label: str
    quantile: str
    threshold_le: float
    overall: Any  # analyzers.prometheus.latency.QuantileEstimate of the whole service over the window
    rows: tuple[Any, ...]  # analyzers.prometheus.latency.BreakdownRow, worst first
    query: str
    warnings: tuple[str, ...]


@st.cache_data(ttl=PROM_TTL_S, show_spinner=False)
def load_breakdown(
    config_key: str, _config: Config, histogram: str, service: str, label: str, quantile: str, start: int, end: int,
    native: bool = False,
) -> Breakdown | None:
    """One instant query of every bucket by ``label`` over ``[start, end]``; the slow threshold is
    the lower bound of the bucket holding the service-wide ``quantile`` (so the slow set is the
    tail at and above that bucket). None when there were no requests.

    ``native=True``: one native histogram per label value
    (:func:`analyzers.prometheus.latency.native_breakdown_query`), added up locally for the service-wide
    quantile; the threshold is again a bucket bound, so the slow counts are exact.
    """
    from analyzers.config import format_duration
    from analyzers.prometheus import latency

    if native:
        return _native_breakdown(config_key, _config, histogram, service, label, quantile, start, end)
    query = latency.breakdown_query(histogram, histogram_selector(service), label, None, format_duration(end - start))
    result = query_instant(config_key, _config, query, end)
    frame = latency.buckets_frame(result)
    if frame.empty:
        return None
    les = [float(c) for c in frame.columns]
    overall = latency.quantile_from_buckets(les, frame.iloc[-1].to_numpy(dtype=float), PERCENTILES[quantile])
    if overall.value != overall.value:  # NaN: no requests
        return None
    threshold = overall.lower if overall.lower > 0 else les[0]
    rows = latency.slow_share_breakdown(result, label, threshold)
    return Breakdown(label, quantile, threshold, overall, rows, query, tuple(result.warnings))


def _native_breakdown(
    config_key: str, _config: Config, histogram: str, service: str, label: str, quantile: str, start: int, end: int
) -> Breakdown | None:
    from analyzers.config import format_duration
    from analyzers.prometheus import latency

    query = latency.native_breakdown_query(histogram, histogram_selector(service), label, format_duration(end - start))
    result = query_instant(config_key, _config, query, end)
    histograms = [s.histograms[-1][1] for s in result.series if s.histograms]
    if not histograms:
        return None
    les, counts = latency.native_cumulative(histograms)
    overall = latency.quantile_from_buckets(les, counts.sum(axis=0).tolist(), PERCENTILES[quantile])
    if overall.value != overall.value:  # NaN: no requests
        return None
    # As the classic path: slow = above the lower bound of the bucket holding the quantile; when that
    # is the zero bucket (or below), above the first positive bound.
    positive = [b for b in les if 0 < b < float("inf")]
    threshold = overall.lower if overall.lower > 0 or not positive else positive[0]
    rows = latency.native_slow_share_breakdown(result, label, threshold)
    return Breakdown(label, quantile, threshold, overall, rows, query, tuple(result.warnings))


@dataclass(frozen=True)
class BurnRates:
    """Error-budget burn rates now, per standard window pair (long, short, alert factor, rates)."""

    threshold_le: float
    objective: float
    rates: tuple[tuple[str, str, float, float, float], ...]  # (long, short, factor, long rate, short rate)
    queries: tuple[str, ...]
    warnings: tuple[str, ...]


@st.cache_data(ttl=PROM_TTL_S, show_spinner=False)
def load_burn_rates(
    config_key: str, _config: Config, histogram: str, service: str, threshold_le: float, objective: float, at: int,
    native: bool = False,
) -> BurnRates:
    """The multi-window burn rates at ``at`` (Unix s) in one instant query.

    Each window's query (built by :func:`analyzers.prometheus.latency.burn_rate_queries`) is tagged with a
    ``burn_window`` label via ``label_replace`` and the tagged vectors are joined with ``or``,
    so the panel costs one round trip. The good-ratio line needs no query of its own: it is
    the threshold bucket over the ``+Inf`` bucket of the counts :func:`load_latency` fetched.
    ``native=True``: the good ratio is ``histogram_fraction`` (interpolated inside the bucket
    holding the threshold, which need not be a bucket bound).
    """
    from analyzers.prometheus import latency

    sel = histogram_selector(service)
    pairs = latency.burn_rate_queries(histogram, sel, threshold_le, objective, native=native)
    parts = []
    for pair, long_q, short_q in pairs:
        for window, q in ((pair.long, long_q), (pair.short, short_q)):
            parts.append(f'label_replace({q}, "burn_window", "{window}", "", "")')
    query = " or ".join(parts)
    result = query_instant(config_key, _config, query, at)
    by_window: dict[str, float] = {}
    for s in result.series:
        if len(s.values):
            by_window[s.labels.get("burn_window", "")] = float(s.values.iloc[-1])
    nan = float("nan")
    rates = tuple(
        (pair.long, pair.short, float(pair.factor), by_window.get(pair.long, nan), by_window.get(pair.short, nan))
        for pair, _, _ in pairs
    )
    return BurnRates(threshold_le, objective, rates, (query,), tuple(result.warnings))
