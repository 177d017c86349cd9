"""Plotly figures for the pages. Pure: data in, ``go.Figure`` out, no Streamlit calls.

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

_FONT = "Source Sans Pro, sans-serif"
_F32 = np.float32


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


def on_grid(frame: pd.DataFrame, step_s: float | None, zone: ViewerZone) -> pd.DataFrame | None:
    """``frame`` reindexed onto the regular grid of ``step_s`` from its first to its last time (a
    missing step becomes a NaN row, drawn as a gap), or None when it cannot go as ``x0``/``dx``:
    its times are not on one grid, or the page's zone changes its UTC offset inside the range.

    A regular series goes to Plotly as ``x0``/``dx`` instead of one x array per trace: a percentile
    chart of 4 percentiles otherwise sends 12 copies of the same times, half its bytes. Plotly
    turns ``x0`` into wall-clock time once and adds ``dx`` from there, so across a DST change
    every later point would be drawn an hour off: such a range keeps its x arrays.
    """
    idx = frame.index
    if not step_s or len(idx) < 2 or not isinstance(idx, pd.DatetimeIndex) or idx.tz is None:
        return None
    grid = pd.date_range(idx[0], idx[-1], freq=pd.Timedelta(seconds=float(step_s)))
    if len(grid) > 4 * len(idx) + 16 or not idx.isin(grid).all():
        return None
    offsets = grid.tz_convert(zone.tz).tz_localize(None) - grid.tz_convert("UTC").tz_localize(None)
    if offsets.nunique() != 1:
        return None
    return frame.reindex(grid)


def grid_x(index: pd.DatetimeIndex, zone: ViewerZone, step_s: float) -> dict[str, float | str]:
    """``x0``/``dx`` of a regular time grid from :func:`on_grid` (first time in :func:`local_time`'s
    form, step in ms)."""
    return {"x0": local_time(index[0].to_pydatetime(), zone), "dx": float(step_s) * 1000.0}


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


def _layout(fig: go.Figure, *, zone: ViewerZone, y_title: str, height: int = 360) -> go.Figure:
    fig.update_layout(
        height=height,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        font={"family": _FONT},
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
    return _layout(fig, zone=zone, y_title="service", height=max(220, 80 + row_px * len(services)))


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
    return _layout(fig, zone=zone, y_title=f"{metric} ({scale.label})", height=320)


# --------------------------------------------------------------------------- latency


def percentile_chart(
    quantiles: Mapping[str, pd.DataFrame], zone: ViewerZone, *, x_range: tuple[datetime, datetime] | None = None,
    band: str = "bucket", step_s: float | None = None,
) -> go.Figure:
    """Percentile lines (seconds in, ms drawn) with the bucket bounds holding each as a band.

    ``quantiles`` maps a label (``p99``) to a frame indexed by time with columns ``value``,
    ``lower``, ``upper`` in seconds. The band is the histogram bucket the quantile falls in:
    any wiggle inside it is interpolation, not signal. ``band`` names what the band is in the
    hover text ("instances" for a summary: lowest to highest instance). With ``step_s`` (the
    query's step) the times go as ``x0``/``dx`` (:func:`on_grid`), missing steps as gaps.
    """
    palette = ["#1f77b4", "#2ca02c", "#ff7f0e", "#d62728", "#9467bd"]
    fig = go.Figure()
    for i, (label, frame) in enumerate(quantiles.items()):
        color = palette[i % len(palette)]
        regular = on_grid(frame, step_s, zone)
        if regular is not None and step_s:
            frame = regular
            xs: dict[str, object] = dict(grid_x(regular.index, zone, step_s))
        else:
            xs = {"x": plot_x(frame.index, zone)}
        # Values go as float32 (7 significant digits, far finer than the 0.1 ms shown): half the
        # bytes of float64 for the 3 arrays per percentile (12 at four percentiles over 24 h).
        upper = (frame["upper"].astype(float) * 1000).replace([np.inf, -np.inf], np.nan).to_numpy(dtype=_F32)
        lower = (frame["lower"].astype(float) * 1000).to_numpy(dtype=_F32)
        fig.add_trace(go.Scatter(**xs, y=upper, mode="lines", line={"width": 0}, showlegend=False,
                                 hoverinfo="skip", legendgroup=label))
        fig.add_trace(go.Scatter(**xs, y=lower, mode="lines", line={"width": 0}, fill="tonexty",
                                 fillcolor=_alpha(color, 0.12), showlegend=False, legendgroup=label,
                                 hoverinfo="skip"))
        fig.add_trace(
            go.Scatter(
                **xs, y=(frame["value"].astype(float) * 1000).to_numpy(dtype=_F32), mode="lines", name=label,
                line={"color": color, "width": 1.6}, legendgroup=label,
                customdata=np.stack([lower, upper], axis=-1),
                hovertemplate=(
                    f"{label} %{{y:.1f}} ms<br>{band} %{{customdata[0]:.1f}}–%{{customdata[1]:.1f}} ms"
                    "<extra></extra>"
                ),
            )
        )
    fig.update_yaxes(type="log")
    if x_range is not None:
        fig.update_xaxes(range=[local_time(x_range[0], zone), local_time(x_range[1], zone)])
    return _layout(fig, zone=zone, y_title="latency (ms, log scale)", height=380)


def skeleton_chart(zone: ViewerZone, *, x_range: tuple[datetime, datetime], y_title: str, text: str,
                   height: int = 380) -> go.Figure:
    """An empty chart with the real one's axes and a line of text, drawn while the data is fetched.

    Besides telling the viewer what is coming, it makes a browser that has not loaded Plotly's
    JavaScript yet (a first visit: ~4.7 MB to fetch and compile) start on it while the server
    is still querying, instead of after the real figure arrives.
    """
    fig = go.Figure()
    fig.update_layout(annotations=[{"text": text, "showarrow": False, "xref": "paper", "yref": "paper",
                                    "x": 0.5, "y": 0.5, "font": {"size": 14, "color": "#8c8c8c"}}])
    fig.update_xaxes(range=[local_time(x_range[0], zone), local_time(x_range[1], zone)])
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False)
    return _layout(fig, zone=zone, y_title=y_title, height=height)


def heatmap_chart(
    rates: pd.DataFrame, edges: Sequence[float], zone: ViewerZone, *, x_range: tuple[datetime, datetime] | None = None,
    step_s: float | None = None,
) -> go.Figure:
    """Per-bucket request rate over time on a log latency axis.

    ``rates``: index time, one column per bucket (in ``edges`` order), values in req/s.
    ``edges``: ``len(columns) + 1`` bucket bounds in seconds (finite, positive), drawn in ms.
    With ``step_s`` the times go as ``x0``/``dx`` (:func:`on_grid`).
    """
    regular = on_grid(rates, step_s, zone)
    if regular is not None and step_s:
        rates = regular
        xs: dict[str, object] = dict(grid_x(regular.index, zone, step_s))
    else:
        xs = {"x": plot_x(rates.index, zone)}
    z = rates.to_numpy(dtype=float).T
    z = np.where(z > 0, z, np.nan).astype(_F32)  # float32: half the bytes, 7 digits (3 shown)
    fig = go.Figure(
        go.Heatmap(
            **xs,
            y=[e * 1000 for e in edges],
            z=z,
            colorscale="Viridis",
            # Horizontal colour bar under the plot: keeps the time axis aligned with the charts above.
            colorbar={"title": {"text": "req/s", "side": "right"}, "orientation": "h", "y": -0.32,
                      "yanchor": "top", "thickness": 10, "len": 0.5, "x": 1, "xanchor": "right"},
            hovertemplate="%{x}<br>bucket up to %{y:.4g} ms<br>%{z:.3g} req/s<extra></extra>",
            zsmooth=False,
        )
    )
    fig.update_yaxes(type="log")
    if x_range is not None:
        fig.update_xaxes(range=[local_time(x_range[0], zone), local_time(x_range[1], zone)])
    return _layout(fig, zone=zone, y_title="latency bucket (ms, log scale)", height=420)


def good_ratio_chart(
    good_ratio: pd.Series, *, objective: float, threshold_s: float, zone: ViewerZone,
    x_range: tuple[datetime, datetime] | None = None, step_s: float | None = None,
) -> go.Figure:
    """Share of requests at most the SLO threshold over time (percent), with the objective line.
    With ``step_s`` the times go as ``x0``/``dx`` (:func:`on_grid`)."""
    regular = on_grid(good_ratio.to_frame("ratio"), step_s, zone)
    if regular is not None and step_s:
        ratio = regular["ratio"]
        xs: dict[str, object] = dict(grid_x(regular.index, zone, step_s))
    else:
        ratio = good_ratio
        xs = {"x": plot_x(good_ratio.index, zone)}
    fig = go.Figure(
        go.Scatter(
            **xs, y=(ratio.astype(float) * 100).to_numpy(dtype=_F32), mode="lines", name="good ratio",
            hovertemplate="%{y:.2f} %<extra>good ratio</extra>",
        )
    )
    # The objective as a plain shape and label in one layout update (what add_hline draws, without
    # its ~40 ms of validation on the server).
    y = objective * 100
    fig.update_layout(
        shapes=[{"type": "line", "xref": "x domain", "yref": "y", "x0": 0, "x1": 1, "y0": y, "y1": y,
                 "line": {"dash": "dash", "color": "#d62728"}}],
        annotations=[{"text": f"objective {objective * 100:g} %", "showarrow": False, "xref": "x domain",
                      "x": 1, "xanchor": "right", "yref": "y", "y": y, "yanchor": "bottom"}],
    )
    if x_range is not None:
        fig.update_xaxes(range=[local_time(x_range[0], zone), local_time(x_range[1], zone)])
    return _layout(fig, zone=zone, y_title=f"requests ≤ {threshold_s * 1000:g} ms (%)", height=300)


def cdf_overlay_chart(les: Sequence[float], cumulative: Mapping[str, np.ndarray]) -> go.Figure:
    """Bucket CDFs of several windows on one log latency axis (share of requests <= each ``le``).

    ``cumulative`` maps a window name to its cumulative bucket counts aligned with ``les``
    (seconds, ``inf`` last); shares are counts over the ``+Inf`` bucket.
    """
    colors = ["#8c8c8c", "#1f77b4", "#ff7f0e"]
    finite = [i for i, x in enumerate(les) if np.isfinite(x)]
    fig = go.Figure()
    for k, (name, counts) in enumerate(cumulative.items()):
        total = float(counts[-1]) or float("nan")
        fig.add_trace(go.Scatter(
            x=[les[i] * 1000 for i in finite], y=[float(counts[i]) / total for i in finite], name=name,
            mode="lines+markers", line={"color": colors[k % len(colors)]},
            hovertemplate="≤ %{x:g} ms: %{y:.2%}<extra>" + name + "</extra>",
        ))
    fig.update_xaxes(type="log", title_text="latency bucket bound le (ms, log scale)", ticklabeloverflow="allow")
    fig.update_yaxes(title_text="share of requests ≤ le (%)", tickformat=".0%", range=[0, 1.02],
                     ticklabeloverflow="allow")
    fig.update_layout(height=320, margin={"l": 10, "r": 10, "t": 30, "b": 10}, font={"family": _FONT},
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0})
    return fig


def _alpha(hex_color: str, a: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{a})"
