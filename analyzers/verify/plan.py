"""What one deploy's verification checks and over which window: its metrics (declared
expectations first, then the service's guards), their PromQL (catalog templates rendered with
escaped labels, :mod:`analyzers.prometheus.promql`), the analysis window, and the other deploys
close enough in time to share the blame.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from analyzers.config import Config, MetricSpec
from analyzers.model import Deploy
from analyzers.text import format_duration

#: The direction that hurts, by a metric's good direction.
BAD_DIRECTION = {"decrease": "increase", "increase": "decrease"}


@dataclass(frozen=True)
class MetricPlan:
    """One metric to check on one deploy."""

    spec: MetricSpec
    role: str  # "expectation" | "guard"
    expect: str  # increase | decrease | unchanged | any
    min_effect: float | None


def plan_metrics(deploy: Deploy, config: Config) -> list[MetricPlan]:
    """Declared expectations first, then the service's guard metrics not already declared."""
    plans: list[MetricPlan] = []
    seen: set[str] = set()
    for exp in deploy.expectations:
        spec = config.metric(exp.metric)
        plans.append(MetricPlan(spec, "expectation", exp.expect, exp.min_effect))
        seen.add(exp.metric)
    for key in config.guards_for(deploy.service):
        if key in seen:
            continue
        spec = config.metric(key)
        plans.append(MetricPlan(spec, "guard", BAD_DIRECTION.get(spec.good, "any"), None))
        seen.add(key)
    return plans


def rate_window(config: Config, step_s: float) -> str:
    """Rate window: at least 4 scrape intervals and at least the step (field-notes.md)."""
    return format_duration(max(4 * config.prometheus.scrape_interval_s, step_s))


def metric_query(config: Config, metric_key: str, deploy: Deploy, *, step_s: float | None = None) -> str:
    """The catalog template of ``metric_key`` rendered for ``deploy`` with escaped labels."""
    from analyzers.prometheus.promql import render

    spec = config.metric(metric_key)
    step = step_s if step_s is not None else config.verification.step_s
    return render(
        spec.query,
        window=rate_window(config, step),
        service=deploy.service,
        environment=deploy.environment,
        version=deploy.version,
    )


def analysis_window(deploy: Deploy, config: Config, now: datetime) -> tuple[datetime, datetime]:
    """[start, end] fetched for a deploy: ``history_s`` before the analysis window (for the
    seasonal baselines, which are judged on the day before the window against earlier days),
    the window before the deploy, then the after-window."""
    v = config.verification
    start = deploy.started_at - timedelta(seconds=v.history_s + v.window_before_s)
    end = min(now, deploy.started_at + timedelta(seconds=v.window_after_s + ramp_s(deploy, config)))
    if end <= deploy.started_at:
        end = deploy.started_at
    return start, end


def ramp_s(deploy: Deploy, config: Config) -> float:
    """How long the rollout may take to ramp in: its own duration if reported, else 30 minutes."""
    if deploy.finished_at is not None:
        d = (deploy.finished_at - deploy.started_at).total_seconds()
        return float(min(max(d, 0.0), 3600.0)) if d > 0 else 1800.0
    return 1800.0


def find_overlaps(deploy: Deploy, others: Iterable[Deploy], config: Config) -> list[Deploy]:
    """Other deploys close enough in time, on the same or a dependent service, to confound.

    Dependencies come from ``services.<name>.depends_on`` (either direction); unrelated
    services deploying at the same time are not blamed (at fleet scale every deploy has
    some), so declare the dependencies that matter.
    """
    window = timedelta(seconds=config.verification.overlap_s)
    related = {deploy.service}
    spec = config.services.get(deploy.service)
    if spec is not None:
        related.update(spec.depends_on)
    for name, s in config.services.items():
        if deploy.service in s.depends_on:
            related.add(name)
    out = []
    for o in others:
        if o.deploy_id == deploy.deploy_id:
            continue
        if abs(o.started_at - deploy.started_at) <= window and o.service in related:
            out.append(o)
    return sorted(out, key=lambda d: d.started_at)


def nearby_deploys(store: Any, deploy: Deploy, config: Config) -> list[Deploy]:
    """Deploys stored within the overlap window of ``deploy``: the candidates for ``others``."""
    window = timedelta(seconds=config.verification.overlap_s)
    return list(store.list_deploys(since=deploy.started_at - window, until=deploy.started_at + window, limit=1000))
