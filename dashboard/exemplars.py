"""Exemplars on the Latency page's percentile and heatmap charts, and the table of their traces.

The data comes from :func:`dashboard.data.load_exemplars` (one ``query_exemplars`` call,
:mod:`analyzers.drilldown.exemplars`); this module only draws. Trace ids come from the scraped
services, so they are shown as plain text (hover text HTML-escaped) and links are built only
from the operator's ``[dashboard] trace_url`` template, whose host the id cannot change.
"""

from __future__ import annotations

import html

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from analyzers.config import Config
from analyzers.drilldown.exemplars import Exemplars
from analyzers.errors import AnalyzerError
from analyzers.text import format_value
from dashboard import data
from dashboard.components import charts, common
from dashboard.components.common import ViewerZone


def load(config_key: str, config: Config, histogram: str, service: str, start: int, end: int) -> Exemplars | None:
    """The exemplars of the range, or None (with a caption saying why) when they could not be read:
    a back end without the exemplars API must not take the percentile chart down."""
    try:
        return data.load_exemplars(config_key, config, histogram, service, start, end)
    except AnalyzerError as exc:
        st.caption(f"Exemplars not shown: {common.md_escape(str(exc))}")
        return None


def add_markers(fig: go.Figure, ex: Exemplars | None, zone: ViewerZone) -> None:
    """One marker per exemplar, at its time and latency (ms, the charts' unit). No ``customdata``:
    a click on an exemplar must not be taken for a click on a deploy marker."""
    if ex is None or not ex.points:
        return
    hover = [
        f"{html.escape(common.fmt_time(p.time.to_pydatetime(), zone, seconds=True))}<br>"
        f"{html.escape(format_value(p.value, 's'))} · trace {html.escape(p.trace_id or 'none')}"
        for p in ex.points
    ]
    fig.add_trace(go.Scatter(
        x=charts.plot_x([p.time for p in ex.points], zone), y=[p.value * 1000 for p in ex.points],
        mode="markers", name="exemplars", hovertext=hover, hoverinfo="text",
        marker={"symbol": "diamond", "size": 8, "color": "#ff7f0e", "line": {"width": 1, "color": "#333333"}},
    ))


def table(ex: Exemplars | None, zone: ViewerZone) -> None:
    """The exemplars as rows (slowest first) with a link to each trace when a template is set."""
    if ex is None:
        return
    with st.expander(f"Exemplars: {len(ex.points)} traced requests" if ex.points else "Exemplars: none"):
        st.caption(ex.note)
        if not ex.points:
            return
        rows = sorted(ex.points, key=lambda p: -p.value)
        frame = pd.DataFrame({
            f"time ({zone.name})": [common.fmt_time(p.time.to_pydatetime(), zone, seconds=True) for p in rows],
            "latency": [format_value(p.value, "s") for p in rows],
            "bucket (le, s)": [p.le for p in rows],
            "trace id": [p.trace_id or "" for p in rows],
            "trace": [p.url for p in rows],
        })
        st.dataframe(frame, hide_index=True, width="stretch", key="exemplar_table", column_config={
            "trace": st.column_config.LinkColumn("trace", display_text="open trace"),
        })
