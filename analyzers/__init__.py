"""Deploy verification from Prometheus metrics.

The stable public API is the names in ``__all__`` below (docs/api.md). Everything else, modules
included, is private and may change between releases::

    from analyzers import verify_series, changepoints
    result = verify_series(series, deploy_at, expect="decrease")
    result.to_dict()["status"]  # "shifted" | "unchanged" | "inconclusive"

Names are imported on first use, so ``import analyzers`` stays cheap (no numpy, scipy or
pandas until a name that needs them is touched).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from analyzers.config import Config, load_config
    from analyzers.delivery.reports import render_html, render_json, render_markdown
    from analyzers.errors import (
        AnalyzerError,
        ConfigError,
        EventError,
        NotEnoughData,
        PrometheusError,
        PrometheusQueryError,
        PrometheusUnreachable,
        SignatureError,
        StoreError,
        StoreUnavailable,
    )
    from analyzers.events.schema import parse_event
    from analyzers.events.store import open_store
    from analyzers.model import Deploy, DeployVerdict, MetricVerdict
    from analyzers.prometheus.client import PrometheusClient
    from analyzers.stats import SeriesResult, adjust_pvalues, changepoints, verify_series
    from analyzers.verify.deploy import verify_deploy

__version__ = "0.1.0"

#: public name -> the private module that defines it
_EXPORTS: dict[str, str] = {
    # statistics core (no IO)
    "verify_series": "analyzers.stats",
    "changepoints": "analyzers.stats",
    "adjust_pvalues": "analyzers.stats",
    "SeriesResult": "analyzers.stats",
    # deploys, verdicts and verification
    "Deploy": "analyzers.model",
    "DeployVerdict": "analyzers.model",
    "MetricVerdict": "analyzers.model",
    "verify_deploy": "analyzers.verify.deploy",
    # configuration, Prometheus, events, store
    "Config": "analyzers.config",
    "load_config": "analyzers.config",
    "PrometheusClient": "analyzers.prometheus.client",
    "parse_event": "analyzers.events.schema",
    "open_store": "analyzers.events.store",
    # reports
    "render_markdown": "analyzers.delivery.reports",
    "render_json": "analyzers.delivery.reports",
    "render_html": "analyzers.delivery.reports",
    # errors (catch AnalyzerError for all of them)
    "AnalyzerError": "analyzers.errors",
    "ConfigError": "analyzers.errors",
    "PrometheusError": "analyzers.errors",
    "PrometheusUnreachable": "analyzers.errors",
    "PrometheusQueryError": "analyzers.errors",
    "StoreError": "analyzers.errors",
    "StoreUnavailable": "analyzers.errors",
    "EventError": "analyzers.errors",
    "SignatureError": "analyzers.errors",
    "NotEnoughData": "analyzers.errors",
}

__all__ = [
    "verify_series", "changepoints", "adjust_pvalues", "SeriesResult",
    "Deploy", "DeployVerdict", "MetricVerdict", "verify_deploy",
    "Config", "load_config", "PrometheusClient", "parse_event", "open_store",
    "render_markdown", "render_json", "render_html",
    "AnalyzerError", "ConfigError", "PrometheusError", "PrometheusUnreachable", "PrometheusQueryError",
    "StoreError", "StoreUnavailable", "EventError", "SignatureError", "NotEnoughData",
    "__version__",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'analyzers' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
