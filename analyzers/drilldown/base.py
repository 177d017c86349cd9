"""What every drill-down pipeline takes: something that answers PromQL.

:class:`analyzers.prometheus.client.PrometheusClient` is one; the dashboard passes a thin
wrapper whose calls go through its query cache, so the pipelines stay free of Streamlit and
the CLI, reports and dashboard compute the same figures with the same code.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from analyzers.prometheus.results import Exemplar, QueryResult

__all__ = ["Querier"]


class Querier(Protocol):
    """The query side of :class:`analyzers.prometheus.client.PrometheusClient`."""

    def query_range(self, query: str, start: datetime, end: datetime, step_s: float | None = None) -> QueryResult: ...

    def query(self, query: str, at: datetime) -> QueryResult: ...

    def query_exemplars(self, query: str, start: datetime, end: datetime) -> tuple[Exemplar, ...]: ...
