"""Configuration: Prometheus connection, store, verification windows and the metric catalog.

Loaded from TOML (``load_config(path)``); ``default_config()`` is the embedded default that
matches the demo data. Secrets are never written in the file: name an environment variable
(``bearer_token_env``, ``basic_auth_password_env``). Durations accept ``30s``, ``5m``, ``2h``,
``1d``, ``1w`` or plain seconds.

Metric templates are PromQL with Grafana-style placeholders that are *escaped* when
rendered (see :mod:`analyzers.prometheus.promql`): ``$service``, ``$environment``, ``$version`` (or
``${service}``) inside double quotes; ``${service:regex}`` inside ``=~"..."``; ``$window`` is
the rate window chosen by the analyzer (a duration such as ``5m``), never user input.
"""

from __future__ import annotations

import logging
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from analyzers import config_checks as checks
from analyzers.errors import ConfigError
from analyzers.model import TraceUrl
from analyzers.text import format_duration

Good = Literal["increase", "decrease", "none"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, None: 1.0}


def parse_duration(value: str | float | int, *, key: str = "duration") -> float:
    """Seconds from ``"5m"``, ``"2h"``, ``"1d"``, ``90`` ...; ConfigError naming ``key`` otherwise."""
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected a duration such as '5m', got {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ConfigError(f"{key}: duration must be >= 0, got {value}")
        return float(value)
    m = _DURATION.match(str(value))
    if not m:
        raise ConfigError(f"{key}: expected a duration such as '30s', '5m', '2h' or '1d', got {value!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


@dataclass(frozen=True)
class PrometheusSettings:
    url: str = "http://127.0.0.1:9090"
    headers: dict[str, str] = field(default_factory=dict)
    bearer_token: str | None = None
    basic_auth: tuple[str, str] | None = None
    verify_tls: bool | str = True
    timeout_s: float = 30.0
    tenant: str | None = None  # sent as X-Scope-OrgID (Mimir/Cortex)
    tenant_header: str = "X-Scope-OrgID"
    path_prefix: str = ""  # e.g. "/prometheus" (Mimir) or "/select/0/prometheus" (VM cluster)
    partial_response: bool | None = None  # Thanos
    dedup: bool | None = None  # Thanos
    scrape_interval_s: float = 15.0

    @property
    def base_url(self) -> str:
        return self.url.rstrip("/") + ("/" + self.path_prefix.strip("/") if self.path_prefix.strip("/") else "")


@dataclass(frozen=True)
class MetricSpec:
    """One catalog metric. ``min_effect`` is absolute (metric units), ``min_effect_rel`` a fraction."""

    key: str
    query: str
    unit: str = ""
    good: Good = "none"
    min_effect: float | None = None
    min_effect_rel: float | None = None
    guard: bool = False
    min_points: int = 10
    kind: Literal["gauge", "ratio", "rate", "latency", "count"] = "gauge"
    histogram: str | None = None  # base name of a classic histogram, for bucket comparisons
    label_selector: str = 'service="$service"'  # used with ``histogram`` for bucket queries
    #: With ``histogram``: the series is this quantile of each step's requests, read from that
    #: step's bucket counts (``query``: ``sum by (le) (increase(h_bucket{...}[$window]))``) with
    #: log-probit interpolation, and judged on log latency: ``min_effect_rel`` is then a factor
    #: (0.15: x1.15) and the effect is reported as one (docs/statistics.md, "The typical request
    #: got slower"). ``latency_shift`` in the built-in catalog reads the median (0.5).
    read_quantile: float | None = None
    description: str = ""
    #: Canary vs baseline (docs/progressive-delivery.md): counters of events and of requests
    #: (``kind="ratio"``), e.g. ``http_request_errors_total{service="$service"}``.
    events: str | None = None
    exposure: str | None = None
    version_label: str | None = None  # overrides [canary].label for this metric
    #: Any other metric: a template giving one series per version, e.g.
    #: ``avg by (version) (process_resident_memory_bytes{service="$service"})`` (paired level test).
    per_version: str | None = None
    dry_run: bool = False  # judged and reported, never fails a verdict or a gate


@dataclass(frozen=True)
class VerificationSettings:
    window_before_s: float = 3 * 3600.0
    window_after_s: float = 30 * 60.0
    history_s: float = 8 * 86400.0  # fetched before window_before for seasonal baselines (capped by data)
    step_s: float = 60.0
    alpha: float = 0.01  # per deploy, Bonferroni across its metrics (benchmarks/README_stats.md: why 0.01)
    observation_s: float = 2 * 3600.0  # how long after a deploy its verdict may still change
    overlap_s: float = 30 * 60.0  # deploys within this distance are reported as overlapping


@dataclass(frozen=True)
class SLOSettings:
    """Latency SLO: requests at most ``threshold_s`` (use a bucket bound) for ``objective`` of them."""

    threshold_s: float = 0.25
    objective: float = 0.995


@dataclass(frozen=True)
class CanarySettings:
    """Canary vs baseline while both versions serve (``[canary]``; docs/progressive-delivery.md
    explains every key: ``tolerance``, the accepted rate ratio; ``pass_ratio``, ruled out to pass)."""

    label: str = "version"
    canary_match: str | None = None  # regex (full match) of the canary's label values, e.g. "$service-(?!primary-).*"
    selector: str = ""
    metrics: tuple[str, ...] | None = None  # default: the service's guards that have events or a histogram
    interval_s: float = 60.0
    tolerance: float = 1.05
    pass_ratio: float = 2.0
    min_requests: float = 100.0
    min_duration_s: float = 5 * 60.0
    alpha: float = 0.01
    gate_token_env: str | None = None
    dispersion_prior: float = 1.0  # extra spread assumed for one version's own bad minutes (>= 1; 3: noisy pods)
    window_s: float = 15 * 60.0  # the fail test's horizon (Argo count * interval; docs/progressive-delivery.md)
    weights: tuple[tuple[str, float], ...] = ()  # alpha's split: {metric = weight}; unlisted: ratio 3, else 1


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    environment: str | None = None
    guards: tuple[str, ...] | None = None  # overrides the catalog's guard flags
    depends_on: tuple[str, ...] = ()
    slo: SLOSettings | None = None  # overrides the global [slo]
    dry_run: tuple[str, ...] = ()  # metric keys in dry-run for this service ("*": all of them)


@dataclass(frozen=True)
class NotifyRoute:
    """Where a verdict goes: a chat webhook for some services and some verdicts.

    ``url`` comes from the config file or, better, from the environment variable named by
    ``url_env`` (chat webhook URLs are secrets). Only operators set it: no page or event can.
    """

    name: str
    url: str
    format: Literal["slack", "json"] = "slack"
    services: tuple[str, ...] = ()  # empty: every service
    verdicts: tuple[str, ...] = ("fail", "inconclusive")
    final_only: bool = False  # only the final verdict of each deploy

    def matches(self, service: str, overall: str) -> bool:
        return (not self.services or service in self.services) and overall in self.verdicts


@dataclass(frozen=True)
class GrafanaSettings:
    """Write verdicts back as Grafana annotations (``POST {url}/api/annotations``)."""

    url: str
    token: str | None = None
    tags: tuple[str, ...] = ("deploy", "verdict")
    dashboard_uid: str | None = None


@dataclass(frozen=True)
class Config:
    prometheus: PrometheusSettings = field(default_factory=PrometheusSettings)
    store_url: str = "sqlite:///data/deploys.db"
    verification: VerificationSettings = field(default_factory=VerificationSettings)
    metrics: dict[str, MetricSpec] = field(default_factory=dict)
    services: dict[str, ServiceSpec] = field(default_factory=dict)
    dashboard_url: str = "http://127.0.0.1:8501"
    #: ``[dashboard] allow_actions``: the dashboard offers buttons that write (re-verify). Off by default.
    dashboard_allow_actions: bool = False
    #: ``[dashboard] trace_url``: where an exemplar's trace id opens (Jaeger, Tempo); None: no links.
    trace_url: TraceUrl | None = None
    source_path: str | None = None
    routes: tuple[NotifyRoute, ...] = ()
    grafana: GrafanaSettings | None = None
    slo: SLOSettings = field(default_factory=SLOSettings)
    canary: CanarySettings = field(default_factory=CanarySettings)

    def dry_run_for(self, service: str, metric: str) -> bool:
        """Whether ``metric`` is in dry-run for ``service`` (metric flag or service list)."""
        spec = self.services.get(service)
        listed = spec.dry_run if spec is not None else ()
        m = self.metrics.get(metric)
        return bool(m is not None and m.dry_run) or metric in listed or "*" in listed
    #: The ``[receiver]`` table as written (read by :class:`analyzers.server.settings.Settings`).
    receiver: Mapping[str, Any] = field(default_factory=dict)

    def slo_for(self, service: str) -> SLOSettings:
        spec = self.services.get(service)
        return spec.slo if spec is not None and spec.slo is not None else self.slo

    def metric(self, key: str) -> MetricSpec:
        try:
            return self.metrics[key]
        except KeyError:
            known = ", ".join(sorted(self.metrics)) or "(none)"
            raise ConfigError(
                f"unknown metric {key!r}: add [metrics.{key}] to the config or use one of: {known}"
            ) from None

    def guards_for(self, service: str) -> tuple[str, ...]:
        spec = self.services.get(service)
        if spec is not None and spec.guards is not None:
            return spec.guards
        return tuple(k for k, m in self.metrics.items() if m.guard)

    def with_prometheus_url(self, url: str) -> Config:
        return replace(self, prometheus=replace(self.prometheus, url=url))


HTTP_DURATION = "http_request_duration_seconds"

_BUCKET_RATE = HTTP_DURATION + '_bucket{service="$service"}[$window]'
DEFAULT_METRICS: dict[str, MetricSpec] = {
    m.key: m
    for m in (
        MetricSpec(
            key="error_ratio",
            query=('sum(rate(http_request_errors_total{service="$service"}[$window]))'
                   ' / sum(rate(http_requests_total{service="$service"}[$window]))'),
            unit="ratio", good="decrease", min_effect=0.005, min_effect_rel=0.25, guard=True, kind="ratio",
            events='http_request_errors_total{service="$service"}', exposure='http_requests_total{service="$service"}',
            description="Share of requests that failed (5xx).",
        ),
        MetricSpec(
            key="latency_p99", query="histogram_quantile(0.99, sum by (le) (rate(" + _BUCKET_RATE + ")))",
            unit="s", good="decrease", min_effect_rel=0.10, guard=True, kind="latency", histogram=HTTP_DURATION,
            description="99th percentile request latency.",
        ),
        MetricSpec(
            key="latency_shift", query="sum by (le) (increase(" + _BUCKET_RATE + "))",
            unit="s", good="decrease", min_effect_rel=0.15, guard=True, kind="latency", histogram=HTTP_DURATION,
            read_quantile=0.5,
            description="The typical request's latency: each minute's median read from its bucket counts "
                        "(log-probit), judged as a factor.",
        ),
        MetricSpec(
            key="latency_p50", query="histogram_quantile(0.5, sum by (le) (rate(" + _BUCKET_RATE + ")))",
            unit="s", good="decrease", min_effect_rel=0.10, kind="latency", histogram=HTTP_DURATION,
            description="Median request latency.",
        ),
        MetricSpec(
            key="request_rate", query='sum(rate(http_requests_total{service="$service"}[$window]))',
            unit="req/s", good="none", min_effect_rel=0.10, kind="rate", description="Requests per second.",
        ),
    )
}


def default_config() -> Config:
    """The embedded default: local Prometheus, SQLite store, the demo metric catalog."""
    return Config(metrics=dict(DEFAULT_METRICS))


def _env_secret(raw: dict[str, Any], key: str, section: str) -> str | None:
    name = raw.get(key)
    if not name:
        return None
    value = os.environ.get(str(name))
    if value is None:
        raise ConfigError(f"{section}.{key} names the environment variable {name!r}, which is not set: export it")
    return value


def _metric_from(key: str, raw: dict[str, Any]) -> MetricSpec:
    if "query" not in raw:
        raise ConfigError(f"[metrics.{key}] needs a 'query' (a PromQL template)")
    good = raw.get("good", "none")
    if good not in ("increase", "decrease", "none"):
        raise ConfigError(f"metrics.{key}.good must be 'increase', 'decrease' or 'none', got {good!r}")
    allowed = set(MetricSpec.__dataclass_fields__) - {"key"}
    unknown = set(raw) - allowed
    if unknown:
        raise ConfigError(f"[metrics.{key}] has unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}")
    q = raw.get("read_quantile")
    if q is not None:
        if not isinstance(q, (int, float)) or not 0 < float(q) < 1:
            raise ConfigError(f"metrics.{key}.read_quantile must be a number between 0 and 1 (0.5: the median), got {q!r}")
        if not raw.get("histogram"):
            raise ConfigError(f"metrics.{key}.read_quantile needs 'histogram' (the histogram's base name, "
                              "e.g. http_request_duration_seconds) and a 'query' of its bucket counts "
                              "(sum by (le) (increase(<histogram>_bucket{...}[$window])))")
        raw["read_quantile"] = float(q)
    return MetricSpec(key=key, **raw)


def _slo_from(raw: dict[str, Any], where: str) -> SLOSettings:
    threshold = parse_duration(raw.get("threshold", 0.25), key=f"{where}.threshold")
    objective = float(raw.get("objective", 0.995))
    if not 0 < objective < 1:
        raise ConfigError(f"{where}.objective must be between 0 and 1 (e.g. 0.995), got {objective}")
    if threshold <= 0:
        raise ConfigError(f"{where}.threshold must be a positive latency such as '250ms'")
    return SLOSettings(threshold_s=threshold, objective=objective)


def _route_from(i: int, raw: dict[str, Any]) -> NotifyRoute:
    where = f"notify.routes[{i}]"
    url = raw.get("url") or _env_secret(raw, "url_env", where)
    if not url:
        raise ConfigError(f"{where} needs 'url_env' (an environment variable holding the webhook URL) or 'url'")
    if not str(url).startswith(("http://", "https://")):
        raise ConfigError(f"{where}: the webhook URL must start with http:// or https://")
    fmt = raw.get("format", "slack")
    if fmt not in ("slack", "json"):
        raise ConfigError(f"{where}.format must be 'slack' or 'json', got {fmt!r}")
    verdicts = tuple(raw.get("verdicts", ("fail", "inconclusive")))
    bad = set(verdicts) - {"pass", "fail", "inconclusive"}
    if bad:
        raise ConfigError(f"{where}.verdicts may hold pass, fail, inconclusive; got {sorted(bad)}")
    return NotifyRoute(
        name=str(raw.get("name", f"route-{i}")),
        url=str(url),
        format=fmt,
        services=tuple(raw.get("services", ())),
        verdicts=verdicts,
        final_only=bool(raw.get("final_only", False)),
    )


LONG_WINDOW_S = 15 * 60.0  # docs/progressive-delivery.md "Matching the controller's step"


def long_window_warning(window_s: float) -> list[str]:
    """The warning for a ``[canary] window`` longer than LONG_WINDOW_S (logged at load; canary_warnings lists it)."""
    return [f'[canary] window = "{format_duration(window_s)}" is longer than {format_duration(LONG_WINDOW_S)}: the fail test '
            "may decide only after the controller moved the canary on; set it to the analysis per step (Argo Rollouts: "
            "count x interval; Flagger: interval x iterations)"] if window_s > LONG_WINDOW_S else []


def _canary_from(raw: dict[str, Any], metrics: dict[str, MetricSpec]) -> CanarySettings:
    kw: dict[str, Any] = {f"{k}_s": parse_duration(raw.pop(k), key=f"canary.{k}") for k in ("interval", "min_duration", "window") if k in raw}
    kw |= {k: float(raw.pop(k)) for k in ("tolerance", "pass_ratio", "min_requests", "alpha", "dispersion_prior") if k in raw}
    kw |= {k: str(raw.pop(k)) for k in ("label", "selector", "gate_token_env", "canary_match") if k in raw}
    checks.check_positive({f"canary.{k}": kw[f"{k}_s"] for k in ("interval", "window") if f"{k}_s" in kw})
    if kw.get("dispersion_prior", 1.0) < 1 or not 0 < kw.get("alpha", 0.01) < 1:
        raise ConfigError("canary.dispersion_prior must be >= 1 and canary.alpha between 0 and 1")
    if kw.get("tolerance", 1.05) < 1 or kw.get("pass_ratio", 2.0) <= kw.get("tolerance", 1.05):
        raise ConfigError("canary.tolerance must be >= 1 (a ratio) and canary.pass_ratio larger than it")
    if kw.get("window_s", 900.0) < kw.get("interval_s", 60.0):
        raise ConfigError('canary.window must be at least one canary.interval (e.g. window = "15m", interval = "1m")')
    weights = dict(raw.pop("weights", {}))
    if bad := {k: v for k, v in weights.items() if k not in metrics or not (isinstance(v, int | float) and v > 0)}:
        raise ConfigError(f"canary.weights must map known metrics to positive numbers, got {bad}")
    kw["weights"] = tuple((k, float(v)) for k, v in weights.items())
    kw |= {"metrics": tuple(raw.pop("metrics"))} if "metrics" in raw else {}
    if unknown := [m for m in kw.get("metrics") or () if m not in metrics]:
        raise ConfigError(f"canary.metrics names unknown metric(s) {unknown}")
    if raw:
        raise ConfigError(f"[canary] has unknown keys {sorted(raw)}; allowed: {sorted(k.removesuffix('_s') for k in CanarySettings.__dataclass_fields__)}")
    for warning in long_window_warning(kw.get("window_s", 0.0)):
        logging.getLogger(__name__).warning(warning)
    return CanarySettings(**kw)


def config_from_dict(raw: dict[str, Any], *, source_path: str | None = None, include_defaults: bool = True) -> Config:
    """Build a Config from parsed TOML; errors name the offending key."""
    base = default_config() if include_defaults else Config()
    checks.check_sections(raw)
    prom_raw = dict(raw.get("prometheus", {}))
    basic_user = prom_raw.pop("basic_auth_user", None)
    basic_pw = _env_secret(prom_raw, "basic_auth_password_env", "prometheus")
    prom_raw.pop("basic_auth_password_env", None)
    bearer = _env_secret(prom_raw, "bearer_token_env", "prometheus")
    prom_raw.pop("bearer_token_env", None)
    checks.check_prometheus_keys(prom_raw)
    if "timeout" in prom_raw:
        prom_raw["timeout_s"] = parse_duration(prom_raw.pop("timeout"), key="prometheus.timeout")
    if "scrape_interval" in prom_raw:
        prom_raw["scrape_interval_s"] = parse_duration(prom_raw.pop("scrape_interval"), key="prometheus.scrape_interval")
    prom = replace(base.prometheus, **prom_raw)
    if bearer:
        prom = replace(prom, bearer_token=bearer)
    if basic_user:
        prom = replace(prom, basic_auth=(str(basic_user), basic_pw or ""))

    ver_raw = dict(raw.get("verification", {}))
    ver_kw: dict[str, Any] = {}
    for k in ("window_before", "window_after", "history", "step", "observation", "overlap"):
        if k in ver_raw:
            ver_kw[f"{k}_s"] = parse_duration(ver_raw.pop(k), key=f"verification.{k}")
    if "alpha" in ver_raw:
        alpha = ver_raw.pop("alpha")
        if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 < alpha < 1:
            raise ConfigError(f"verification.alpha must be a number between 0 and 1 (e.g. 0.01), got {alpha!r}")
        ver_kw["alpha"] = float(alpha)
    if ver_raw:
        raise ConfigError(f"[verification] has unknown keys {sorted(ver_raw)}; allowed: {sorted(checks.VERIFICATION_KEYS)}")
    verification = replace(base.verification, **ver_kw)
    checks.check_positive({"verification.step": verification.step_s, "prometheus.timeout": prom.timeout_s,
                           "prometheus.scrape_interval": prom.scrape_interval_s})
    checks.check_windows(verification.window_before_s, verification.window_after_s, verification.step_s)

    metrics = dict(base.metrics)
    for key, mraw in (raw.get("metrics") or {}).items():
        if not isinstance(mraw, dict):
            raise ConfigError(f"metrics.{key} must be a table ([metrics.{key}] with a 'query'), got {mraw!r}")
        metrics[key] = _metric_from(key, dict(mraw))
        for name in ("query", "label_selector", "events", "exposure", "per_version"):  # every PromQL template
            if isinstance(text := getattr(metrics[key], name), str):
                checks.check_promql_brackets(text, where=f"metrics.{key}.{name}")

    services: dict[str, ServiceSpec] = {}
    for name, sraw in (raw.get("services") or {}).items():
        guards = sraw.get("guards")
        checks.check_name_lists(f"services.{name}", sraw, ("guards", "depends_on", "dry_run"))
        for g in guards or ():
            if g not in metrics:
                raise ConfigError(f"services.{name}.guards names unknown metric {g!r}")
        services[name] = ServiceSpec(
            name=name,
            environment=sraw.get("environment"),
            guards=tuple(guards) if guards is not None else None,
            depends_on=tuple(sraw.get("depends_on", ())),
            slo=_slo_from(sraw["slo"], f"services.{name}.slo") if "slo" in sraw else None,
            dry_run=tuple(sraw.get("dry_run", ())),
        )
    routes = tuple(_route_from(i, dict(r)) for i, r in enumerate((raw.get("notify") or {}).get("routes", [])))
    grafana = None
    graw = raw.get("grafana")
    if graw:
        if not graw.get("url"):
            raise ConfigError("[grafana] needs a 'url' (e.g. http://grafana:3000)")
        grafana = GrafanaSettings(
            url=str(graw["url"]).rstrip("/"),
            token=_env_secret(graw, "token_env", "grafana"),
            tags=tuple(graw.get("tags", ("deploy", "verdict"))),
            dashboard_uid=graw.get("dashboard_uid"),
        )
    store_url = (raw.get("store") or {}).get("url", base.store_url)
    dashboard_url = (raw.get("dashboard") or {}).get("url", base.dashboard_url)
    allow_actions = (raw.get("dashboard") or {}).get("allow_actions", base.dashboard_allow_actions)
    if not isinstance(allow_actions, bool):
        raise ConfigError(f"[dashboard] allow_actions must be true or false, got {allow_actions!r}")
    checks.check_url("dashboard.url", str(dashboard_url))
    return Config(
        prometheus=prom,
        store_url=store_url,
        verification=verification,
        metrics=metrics,
        services=services,
        dashboard_url=dashboard_url,
        dashboard_allow_actions=allow_actions,
        trace_url=TraceUrl(str(dash["trace_url"])) if (dash := raw.get("dashboard") or {}).get("trace_url") else None,
        source_path=source_path,
        routes=routes,
        grafana=grafana,
        slo=_slo_from(raw["slo"], "slo") if "slo" in raw else base.slo,
        canary=_canary_from(dict(raw.get("canary") or {}), metrics),
        receiver=dict(raw.get("receiver") or {}),
    )


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load ``path`` (or ``$ANALYZERS_CONFIG``), else the embedded default.

    ``$PROMETHEUS_URL`` and ``$DEPLOY_STORE_URL`` override the file, so one image serves
    every environment.
    """
    path = path or os.environ.get("ANALYZERS_CONFIG")
    if path:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"config file {p} does not exist: create it (see README 'Configuration') or unset ANALYZERS_CONFIG")
        try:
            raw = tomllib.loads(p.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {p} is not valid TOML: {exc}") from exc
        cfg = config_from_dict(raw, source_path=str(p))
    else:
        cfg = default_config()
    if os.environ.get("PROMETHEUS_URL"):
        cfg = cfg.with_prometheus_url(os.environ["PROMETHEUS_URL"])
    if os.environ.get("DEPLOY_STORE_URL"):
        cfg = replace(cfg, store_url=os.environ["DEPLOY_STORE_URL"])
    return cfg
