"""Exemplars on the latency panels: single requests, each with a link to its trace.

A service instrumented with exemplars (client_python: ``histogram.observe(v, exemplar={"trace_id":
...})``, exposed in the OpenMetrics format) attaches to each bucket the last request it counted
there; Prometheus started with ``--enable-feature=exemplar-storage`` keeps them in memory and
serves them at ``/api/v1/query_exemplars``. :func:`latency_exemplars` reads them for one service's
histogram and links each trace id through the operator's ``[dashboard] trace_url`` template
(:class:`analyzers.model.TraceUrl`: the host is fixed by the config, the id percent-encoded).

Exemplars are a sample, not a census: the slowest are kept first when there are more than
``limit`` (the tail is what one opens a trace for), and an empty answer says why it may be empty
instead of "no slow requests".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd

from analyzers.drilldown.base import Querier
from analyzers.model import TraceUrl
from analyzers.prometheus.promql import histogram_base, matchers

__all__ = ["NO_EXEMPLARS", "ExemplarPoint", "Exemplars", "latency_exemplars"]

#: What an empty answer can mean, and what to do.
NO_EXEMPLARS = (
    "No exemplars for this service in this range. Prometheus keeps them only when started with "
    "--enable-feature=exemplar-storage (in memory: they are lost on restart and the oldest are dropped "
    "first), and only when the service exposes them in the OpenMetrics format (client_python: "
    'histogram.observe(value, exemplar={"trace_id": ...})).'
)


@dataclass(frozen=True)
class ExemplarPoint:
    """One request: when (UTC), how long (seconds), its trace id and link (None without a template
    or for an id that cannot be linked), and the bucket bound it was counted under."""

    time: pd.Timestamp
    value: float
    trace_id: str | None
    url: str | None
    le: str
    labels: dict[str, str]


@dataclass(frozen=True)
class Exemplars:
    points: tuple[ExemplarPoint, ...]  # oldest first
    total: int  # how many the server returned (points may hold fewer: the slowest ``limit``)
    query: str
    linked: bool  # a trace URL template is configured

    @property
    def note(self) -> str:
        if not self.total:
            return NO_EXEMPLARS
        shown = f"{len(self.points)} of {self.total} exemplars (the slowest)" if len(self.points) < self.total \
            else f"{self.total} exemplars"
        link = "" if self.linked else " Set [dashboard] trace_url in the config to link them to traces."
        return f"{shown}: single requests with their trace ids.{link}"


def latency_exemplars(
    client: Querier, histogram: str, service: str, start: int, end: int, trace_url: TraceUrl | None,
    *, limit: int = 300,
) -> Exemplars:
    """Exemplars of ``<histogram>_bucket{service=...}`` in ``[start, end]`` (Unix s), one query."""
    query = f"{histogram_base(histogram)}_bucket{{{matchers(service=service)}}}"
    found = client.query_exemplars(query, datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC))
    chosen = sorted(found, key=lambda e: -e.value)[: max(limit, 0)]
    points = tuple(
        ExemplarPoint(
            time=e.time, value=e.value, trace_id=e.trace_id,
            url=trace_url.url(e.trace_id) if trace_url is not None and e.trace_id else None,
            le=e.series_labels.get("le", ""), labels=dict(e.labels),
        )
        for e in sorted(chosen, key=lambda e: e.time)
    )
    return Exemplars(points, len(found), query, trace_url is not None)
