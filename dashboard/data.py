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
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pandas as pd
import streamlit as st

from analyzers.config import Config, load_config
from analyzers.drilldown.bubbleup import BubbleUp, candidate_labels, error_bubbleup, latency_bubbleup
from analyzers.drilldown.errors import ErrorBreakdown, ErrorSeries, counters, error_breakdown, error_series
from analyzers.drilldown.exemplars import Exemplars, latency_exemplars
from analyzers.drilldown.latency import (
    PERCENTILES,
    Breakdown,
    Distribution,
    LatencyData,
    breakdown,
    distributions,
    latency_panel,
    service_selector,
)
from analyzers.drilldown.slo import BurnRates, burn_rates
from analyzers.errors import AnalyzerError, StoreUnavailable
from analyzers.model import Deploy, DeployVerdict

if TYPE_CHECKING:
    from analyzers.prometheus.client import Exemplar, PrometheusClient, QueryResult

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
    from analyzers.events.store import open_store, sqlite_path

    path = sqlite_path(url)
    if path is not None and not os.path.exists(path):  # read-only: never create an empty store and show "no deploys"
        raise StoreUnavailable(
            f"there is no deploy store at {os.path.abspath(path)} ({url}); the dashboard reads the receiver's "
            "store and never creates one. Point it there with DEPLOY_STORE_URL or ANALYZERS_CONFIG (after "
            "make demo: export ANALYZERS_CONFIG=.demo/config.toml), or start the receiver first: it creates it."
        )
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
    # from verify.fetch, not verify.deploy: that one imports scipy.stats (~2 s on a fresh process)
    from analyzers.verify.fetch import fetch_metric_series

    return fetch_metric_series(
        get_client(_config), _config, metric_key, _deploy, to_dt(start), to_dt(end), float(step)
    )


# --------------------------------------------------------------------------- drill-down
#
# The pipelines live in analyzers.drilldown (the CLI and reports call the same functions); here
# they only get cached. They query through CachedQuerier, so each PromQL answer is cached once
# however many panels or percentile choices reuse it.

PERCENTILES = PERCENTILES  # re-exported for the pages


class CachedQuerier:
    """The drill-down pipelines' :class:`analyzers.drilldown.base.Querier`, answering from the cache."""

    def __init__(self, config_key: str, config: Config) -> None:
        self.config_key, self.config = config_key, config

    def query_range(self, query: str, start: datetime, end: datetime, step_s: float | None = None) -> QueryResult:
        assert step_s is not None, "dashboard ranges always carry their step"
        return query_range(self.config_key, self.config, query, int(start.timestamp()), int(end.timestamp()),
                           int(step_s))

    def query(self, query: str, at: datetime) -> QueryResult:
        return query_instant(self.config_key, self.config, query, int(at.timestamp()))

    def query_exemplars(self, query: str, start: datetime, end: datetime) -> tuple[Exemplar, ...]:
        return query_exemplars(self.config_key, self.config, query, int(start.timestamp()), int(end.timestamp()))

    def label_names(self, match: str, start: datetime, end: datetime) -> tuple[str, ...]:
        return label_names(self.config_key, self.config, match, int(start.timestamp()), int(end.timestamp()))


@st.cache_data(ttl=PROM_TTL_S, show_spinner=False)
def label_names(config_key: str, _config: Config, match: str, start: int, end: int) -> tuple[str, ...]:
    """Label names of the series ``match`` selects in ``[start, end]`` (Unix s)."""
    return get_client(_config).label_names(match, to_dt(start), to_dt(end))


@st.cache_data(ttl=PROM_TTL_S, show_spinner=False)
def query_exemplars(config_key: str, _config: Config, query: str, start: int, end: int) -> tuple[Exemplar, ...]:
    """Exemplars of ``query``'s series in ``[start, end]`` (Unix s)."""
    return get_client(_config).query_exemplars(query, to_dt(start), to_dt(end))


def histogram_selector(service: str) -> str:
    """Label matchers (escaped) selecting one service's series."""
    return service_selector(service)


# -- errors, BubbleUp, exemplars (analyzers.drilldown.errors / .bubbleup / .exemplars)


def error_counters(config: Config, service: str) -> tuple[str, str]:
    """The (failed, all) request counters of the catalog's error metric for ``service``."""
    return counters(config, service)


@st.cache_data(ttl=PROM_TTL_S, show_spinner=False)
def load_error_labels(config_key: str, _config: Config, service: str, start: int, end: int) -> tuple[str, ...]:
    """Labels worth breaking the service's requests down by (from the Prometheus labels API)."""
    _, exposure = counters(_config, service)
    return candidate_labels(CachedQuerier(config_key, _config), exposure, start, end)


@st.cache_data(ttl=PROM_TTL_S, show_spinner=False)
def load_error_breakdown(config_key: str, _config: Config, service: str, label: str, start: int,
                         end: int) -> ErrorBreakdown:
    """:func:`analyzers.drilldown.errors.error_breakdown` ("who is failing" by ``label``), cached."""
    events, exposure = counters(_config, service)
    return error_breakdown(CachedQuerier(config_key, _config), events, exposure, label, start, end)


@st.cache_data(ttl=PROM_TTL_S, show_spinner=False)
def load_error_series(config_key: str, _config: Config, service: str, label: str, start: int, end: int,
                      step: int) -> ErrorSeries:
    """:func:`analyzers.drilldown.errors.error_series` (per-value error ratio and rate), cached."""
    events, exposure = counters(_config, service)
    return error_series(CachedQuerier(config_key, _config), events, exposure, label, start, end, step,
                        scrape_interval_s=_config.prometheus.scrape_interval_s)


@st.cache_data(ttl=PROM_TTL_S, show_spinner=False)
def load_bubbleup(config_key: str, _config: Config, service: str, kind: str, labels: tuple[str, ...], start: int,
                  end: int, histogram: str = "", quantile: float = 0.99) -> BubbleUp:
    """:mod:`analyzers.drilldown.bubbleup` for the errors (``kind="errors"``) or the slow tail
    (``kind="slow"``: requests above the bucket holding ``quantile``), cached."""
    querier = CachedQuerier(config_key, _config)
    if kind == "slow":
        return latency_bubbleup(querier, histogram, service, labels, start, end, quantile=quantile)
    events, exposure = counters(_config, service)
    return error_bubbleup(querier, events, exposure, labels, start, end)


@st.cache_data(ttl=PROM_TTL_S, show_spinner=False)
def load_exemplars(config_key: str, _config: Config, histogram: str, service: str, start: int, end: int) -> Exemplars:
    """:func:`analyzers.drilldown.exemplars.latency_exemplars` with the configured trace links, cached."""
    return latency_exemplars(CachedQuerier(config_key, _config), histogram, service, start, end, _config.trace_url)


@st.cache_data(ttl=PROM_TTL_S, show_spinner=False)
def load_latency(
    config_key: str, _config: Config, histogram: str, service: str, start: int, end: int, step: int,
    percentiles: tuple[str, ...],
) -> LatencyData:
    """:func:`analyzers.drilldown.latency.latency_panel`, cached."""
    return latency_panel(CachedQuerier(config_key, _config), histogram, service, start, end, step, percentiles,
                         scrape_interval_s=_config.prometheus.scrape_interval_s)


@st.cache_data(ttl=PROM_TTL_S, show_spinner=False)
def load_distributions(config_key: str, _config: Config, histogram: str, service: str,
                       windows: tuple[tuple[str, int, int], ...], native: bool = False) -> tuple[Distribution, ...]:
    """:func:`analyzers.drilldown.latency.distributions` (one instant query for all windows), cached."""
    return distributions(CachedQuerier(config_key, _config), histogram, service, windows, native=native)


@st.cache_data(ttl=PROM_TTL_S, show_spinner=False)
def load_breakdown(
    config_key: str, _config: Config, histogram: str, service: str, label: str, quantile: str, start: int, end: int,
    native: bool = False,
) -> Breakdown | None:
    """:func:`analyzers.drilldown.latency.breakdown` ("who is slow" by ``label``), cached."""
    return breakdown(CachedQuerier(config_key, _config), histogram, service, label, quantile, start, end,
                     native=native)


@st.cache_data(ttl=PROM_TTL_S, show_spinner=False)
def load_burn_rates(
    config_key: str, _config: Config, histogram: str, service: str, threshold_le: float, objective: float, at: int,
    native: bool = False,
) -> BurnRates:
    """:func:`analyzers.drilldown.slo.burn_rates` (both window pairs in one instant query), cached."""
    return burn_rates(CachedQuerier(config_key, _config), histogram, service, threshold_le, objective, at,
                      native=native)
