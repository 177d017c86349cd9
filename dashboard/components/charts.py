"""Plotly figures for the pages (the Latency page's in :mod:`dashboard.components.latency_charts`).
Pure: data in, ``go.Figure`` out, no Streamlit calls.

Conventions every chart follows:

* Times are drawn at their wall-clock time in the page's zone, and the axis title names the
  zone: real instants as numbers when the page follows the browser's zone (Plotly.js draws
  numbers in the browser's zone), wall-clock strings otherwise (:func:`browser_draws_zone`).
* Every axis carries its unit; latency is drawn in milliseconds, ratios in percent.
* Deploy markers (:func:`add_deploy_markers`) are vertical lines plus a row of hoverable,
  clickable points along the top whose ``customdata`` is the deploy id.
* Verdict colours come from :data:`VERDICT_COLORS`; releases use a diamond, deploys a
  circle, unverified deploys an open marker, unsigned ones get a cross on top.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analyzers.model import Deploy, DeployVerdict
from dashboard.components.common import VERDICT_COLORS, ViewerZone, fmt_time

FONT = "Source Sans Pro, sans-serif"
F32 = np.float32


# --------------------------------------------------------------------------- helpers


def local_times(values: Iterable[datetime] | pd.DatetimeIndex, zone: ViewerZone) -> pd.DatetimeIndex:
    """Aware timestamps to naive wall-clock times in the viewer's zone (what Plotly draws)."""
    idx = pd.DatetimeIndex(list(values) if not isinstance(values, pd.DatetimeIndex) else values)
    if idx.tz is None:
        idx = idx.tz_localize("UTC")
    return idx.tz_convert(zone.tz).tz_localize(None)


def browser_draws_zone(zone: ViewerZone) -> bool:
    """True when the page's zone *is* the browser's zone, by IANA name.

    Plotly.js reads a number on a date axis as an instant (ms since the epoch) and draws it at
    its wall-clock time in the *browser's* zone, DST included, for data, shapes and ranges
    alike; a string without an offset is drawn as written. So when the page follows the
    browser, real instants go as numbers (compact, base64 in transit, no date parsing in the
    browser); otherwise (the UTC switch, or only a fixed offset known) every time goes as a
    wall-clock string in the page's zone. Never a mix within one figure.
    """
    return zone.from_browser and isinstance(zone.tz, ZoneInfo)


_EPOCH = pd.Timestamp(0)
_MS = pd.Timedelta(milliseconds=1)


def plot_x(values: Iterable[datetime] | pd.DatetimeIndex, zone: ViewerZone) -> np.ndarray:
    """Times for a Plotly date axis, drawn at their wall-clock time in the page's zone
    (see :func:`browser_draws_zone`): epoch milliseconds (float64) or ``2026-12-06T19:30:00``."""
    idx = pd.DatetimeIndex(list(values) if not isinstance(values, pd.DatetimeIndex) else values)
    if idx.tz is None:
        idx = idx.tz_localize("UTC")
    if browser_draws_zone(zone):
        return ((idx.tz_convert("UTC").tz_localize(None) - _EPOCH) / _MS).to_numpy(dtype="float64")
    local = idx.tz_convert(zone.tz).tz_localize(None)
    return np.datetime_as_string(local.to_numpy(dtype="datetime64[s]"), unit="s")


def local_time(ts: datetime, zone: ViewerZone) -> float | str:
    """One time for a Plotly date axis (shape, annotation, range), in :func:`plot_x`'s form."""
    value = plot_x([ts], zone)[0]
    return float(value) if browser_draws_zone(zone) else str(value)


@dataclass(frozen=True)
class UnitScale:
    """How a unit is drawn: multiply values by ``factor``, label the axis ``label``."""

    factor: float
    label: str
    tickformat: str | None = None


def unit_scale(unit: str) -> UnitScale:
    """Display scale for a catalog unit (``s`` -> ms, ``ratio`` -> %)."""
    if unit == "s":
        return UnitScale(1000.0, "ms")
    if unit == "ratio":
        return UnitScale(100.0, "%")
    return UnitScale(1.0, unit or "value")


def verdict_state(verdict: DeployVerdict | None) -> str:
    """``pass`` / ``fail`` / ``inconclusive``, or ``unverified`` when no verdict is stored yet."""
    return verdict.overall if verdict is not None else "unverified"


def deploy_hover(deploy: Deploy, verdict: DeployVerdict | None, zone: ViewerZone) -> str:
    """Hover text: service, version, author, verdict, time. Plotly renders hover as HTML: escape."""
    import html

    parts = [
        f"<b>{html.escape(deploy.service)}</b> {html.escape(deploy.version)}"
        + (" (release)" if deploy.kind == "release" else ""),
        f"{html.escape(deploy.environment)} · {html.escape(deploy.status)}",
        f"author: {html.escape(deploy.author or '—')}",
        f"verdict: {verdict_state(verdict)}",
        fmt_time(deploy.started_at, zone),
    ]
    if deploy.kind == "release" and deploy.flag:
        parts.insert(1, f"flag {html.escape(deploy.flag)}: {html.escape(str(deploy.flag_from))} → "
                        f"{html.escape(str(deploy.flag_to))}")
    if not deploy.signed:
        parts.append("<b>UNSIGNED</b>: the event carried no valid signature")
    return "<br>".join(parts)


def _symbol(deploy: Deploy, verdict: DeployVerdict | None) -> str:
    base = "diamond" if deploy.kind == "release" else "circle"
    return base + ("-open" if verdict is None else "")


def apply_layout(fig: go.Figure, *, zone: ViewerZone, y_title: str, height: int = 360) -> go.Figure:
    """The layout every time chart shares: height, margins, font, legend on top, a date x axis named
    for the zone, and no tick-label overflow measuring."""
    fig.update_layout(
        height=height,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        font={"family": FONT},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
        hovermode="closest",
    )
    # ticklabeloverflow="allow": Plotly otherwise measures every tick label's box after drawing to
    # hide ones past the chart's edge, a large share of its draw time in the browser.
    fig.update_xaxes(title_text=f"time ({zone.name})", type="date", ticklabeloverflow="allow")
    fig.update_yaxes(title_text=y_title, ticklabeloverflow="allow")
    return fig


# --------------------------------------------------------------------------- deploy timeline


def deploy_timeline(
    deploys: Sequence[Deploy],
    verdicts: Mapping[str, DeployVerdict],
    zone: ViewerZone,
    *,
    start: datetime,
    end: datetime,
) -> go.Figure:
    """Deploys per service over time (y = service), one legend entry per verdict state.

    Points carry the deploy id in ``customdata`` so a click can open the deploy page.
    """
    fig = go.Figure()
    n_services = len({d.service for d in deploys})
    # Fleet scale: hundreds of services would make a chart thousands of pixels tall, slow to
    # draw and to read; rows and markers shrink as the service count grows.
    row_px, size = (48, 14) if n_services <= 15 else (26, 10) if n_services <= 40 else (13, 7)
    # One trace per (verdict state, symbol), the state's traces sharing one legend entry: a scalar
    # marker symbol instead of a per-point array, which Plotly validates point by point (~0.1 s
    # for 3,000 deploys on the server).
    groups: dict[tuple[str, str], list[Deploy]] = {}
    for d in deploys:
        v = verdicts.get(d.deploy_id)
        groups.setdefault((verdict_state(v), _symbol(d, v)), []).append(d)
    for state in ("fail", "inconclusive", "pass", "unverified"):
        first = True
        for symbol in ("circle", "circle-open", "diamond", "diamond-open"):
            rows = groups.get((state, symbol))
            if not rows:
                continue
            fig.add_trace(
                go.Scatter(
                    x=plot_x([d.started_at for d in rows], zone),
                    y=[d.service for d in rows],
                    mode="markers",
                    name=state,
                    legendgroup=state,
                    showlegend=first,
                    marker={
                        "color": VERDICT_COLORS[state],
                        "size": size,
                        "symbol": symbol,
                        "line": {"width": 2, "color": VERDICT_COLORS[state]},
                    },
                    customdata=[d.deploy_id for d in rows],
                    hovertext=[deploy_hover(d, verdicts.get(d.deploy_id), zone) for d in rows],
                    hoverinfo="text",
                )
            )
            first = False
    unsigned = [d for d in deploys if not d.signed]
    if unsigned:
        fig.add_trace(
            go.Scatter(
                x=plot_x([d.started_at for d in unsigned], zone),
                y=[d.service for d in unsigned],
                mode="markers",
                name="unsigned",
                marker={"symbol": "x-thin", "size": size + 4, "line": {"width": 2, "color": "#111111"}},
                customdata=[d.deploy_id for d in unsigned],
                hovertext=[deploy_hover(d, verdicts.get(d.deploy_id), zone) for d in unsigned],
                hoverinfo="text",
            )
        )
    services = sorted({d.service for d in deploys})
    fig.update_yaxes(type="category", categoryorder="array", categoryarray=services,
                     tickfont={"size": 12 if row_px >= 26 else 9})
    fig.update_xaxes(range=[local_time(start, zone), local_time(end, zone)])
    return apply_layout(fig, zone=zone, y_title="service", height=max(220, 80 + row_px * len(services)))


# --------------------------------------------------------------------------- deploy markers


def add_deploy_markers(
    fig: go.Figure,
    deploys: Sequence[Deploy],
    verdicts: Mapping[str, DeployVerdict],
    zone: ViewerZone,
    *,
    highlight: str | None = None,
) -> go.Figure:
    """Vertical lines at each deploy plus hoverable, clickable points along the top edge.

    The points live on a hidden secondary y axis (0..1) so they stay at the top whatever
    the data's scale; their ``customdata`` is the deploy id.
    """
    if not deploys:
        return fig
    # One layout update for every line (what fig.add_vline draws, without its ~15 ms per call).
    xs = plot_x([d.started_at for d in deploys], zone)
    lines = [
        {
            "type": "line", "xref": "x", "yref": "y domain", "x0": x, "x1": x, "y0": 0, "y1": 1,
            "line": {
                "color": VERDICT_COLORS[verdict_state(verdicts.get(d.deploy_id))],
                "width": 3 if d.deploy_id == highlight else 1.5,
                "dash": "dot" if d.kind == "release" else "dash",
            },
        }
        for d, x in zip(deploys, xs.tolist(), strict=True)
    ]
    fig.update_layout(shapes=[*fig.layout.shapes, *lines])
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=[0.97] * len(deploys),
            yaxis="y2",
            mode="markers",
            name="deploys",
            marker={
                "size": 12,
                "color": [VERDICT_COLORS[verdict_state(verdicts.get(d.deploy_id))] for d in deploys],
                "symbol": [
                    "triangle-down" + ("-open" if verdicts.get(d.deploy_id) is None else "") for d in deploys
                ],
            },
            customdata=[d.deploy_id for d in deploys],
            hovertext=[deploy_hover(d, verdicts.get(d.deploy_id), zone) for d in deploys],
            hoverinfo="text",
            showlegend=True,
        )
    )
    fig.update_layout(yaxis2={"overlaying": "y", "range": [0, 1], "visible": False, "fixedrange": True})
    return fig


# --------------------------------------------------------------------------- metric around a deploy


def metric_chart(
    series: pd.Series,
    *,
    metric: str,
    unit: str,
    zone: ViewerZone,
    deploy_at: datetime,
    before: tuple[datetime, datetime] | None = None,
    after: tuple[datetime, datetime] | None = None,
    change_at: datetime | None = None,
) -> go.Figure:
    """One metric around a deploy: the series, the deploy line, the compared windows shaded,
    and the detected change point (dashed)."""
    scale = unit_scale(unit)
    s = series.astype(float) * scale.factor
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=plot_x(s.index, zone),
            y=s.to_numpy(),
            mode="lines",
            name=metric,
            line={"width": 1.5, "color": "#1f77b4"},
            connectgaps=False,
            hovertemplate=f"%{{y:.4g}} {scale.label}<extra>{metric}</extra>",
        )
    )
    # Shapes and labels as plain dicts in one layout update: what add_vrect/add_vline/add_annotation
    # draw, without their ~25 ms each of validation on the server.
    shapes: list[dict[str, object]] = []
    notes: list[dict[str, object]] = []
    for window, color, opacity, name in ((before, "#8c8c8c", 0.15, "before"), (after, "#1f77b4", 0.12, "after")):
        if window is None:
            continue
        x0, x1 = local_time(window[0], zone), local_time(window[1], zone)
        shapes.append({"type": "rect", "xref": "x", "yref": "y domain", "x0": x0, "x1": x1, "y0": 0, "y1": 1,
                       "fillcolor": color, "opacity": opacity, "line": {"width": 0}})
        notes.append({"text": name, "showarrow": False, "x": x0, "xref": "x", "y": 1, "yref": "y domain",
                      "xanchor": "left", "yanchor": "top"})
    x_deploy = local_time(deploy_at, zone)
    shapes.append({"type": "line", "xref": "x", "yref": "y domain", "x0": x_deploy, "x1": x_deploy, "y0": 0, "y1": 1,
                   "line": {"color": "#111111", "width": 2}})
    notes.append({"text": "deploy", "showarrow": False, "x": x_deploy, "y": 1.0, "yref": "paper",
                  "yanchor": "bottom", "font": {"size": 11}})
    if change_at is not None:
        x_change = local_time(change_at, zone)
        shapes.append({"type": "line", "xref": "x", "yref": "y domain", "x0": x_change, "x1": x_change, "y0": 0,
                       "y1": 1, "line": {"color": "#d62728", "width": 2, "dash": "dash"}})
        notes.append({"text": "change point", "showarrow": False, "x": x_change, "y": 0.9, "yref": "paper",
                      "xanchor": "left", "font": {"size": 11, "color": "#d62728"}})
    fig.update_layout(shapes=shapes, annotations=notes)
    return apply_layout(fig, zone=zone, y_title=f"{metric} ({scale.label})", height=320)
