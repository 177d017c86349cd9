"""The Latency page's Plotly figures: the bucket heatmap, the SLO good ratio and the before/after
CDFs (the percentile chart, the page's opening view, is drawn by uPlot:
:mod:`dashboard.components.percentile_chart`). Pure: data in, ``go.Figure`` out, no Streamlit
calls; the conventions of :mod:`dashboard.components.charts` (zone, units, deploy markers) hold
here too.

Series on the query's regular step go to Plotly as ``x0``/``dx`` (:func:`on_grid`, :func:`time_x`)
instead of one x array per trace; :func:`time_layout` is the layout every time chart here shares.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dashboard.components.charts import F32, FONT, apply_layout, local_time, plot_x
from dashboard.components.common import ViewerZone, fmt_time


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


def time_x(frame: pd.DataFrame, step_s: float | None, zone: ViewerZone) -> tuple[pd.DataFrame, dict[str, object]]:
    """A time-indexed frame and the x arguments of its traces: on its step grid as ``x0``/``dx``
    (:func:`on_grid`, missing steps as NaN rows), or as it is with one x per point (:func:`plot_x`)."""
    regular = on_grid(frame, step_s, zone)
    if regular is not None and step_s:
        return regular, dict(grid_x(regular.index, zone, step_s))
    return frame, {"x": plot_x(frame.index, zone)}


def time_layout(fig: go.Figure, zone: ViewerZone, x_range: tuple[datetime, datetime] | None, *, y_title: str,
                height: int) -> go.Figure:
    """:func:`charts.apply_layout` with the x axis spanning ``x_range`` (when given) in the page's zone."""
    if x_range is not None:
        fig.update_xaxes(range=[local_time(x_range[0], zone), local_time(x_range[1], zone)])
    return apply_layout(fig, zone=zone, y_title=y_title, height=height)


def heatmap_chart(
    rates: pd.DataFrame, edges: Sequence[float], zone: ViewerZone, *, x_range: tuple[datetime, datetime] | None = None,
    step_s: float | None = None,
) -> go.Figure:
    """Per-bucket request rate over time on a log latency axis.

    ``rates``: index time, one column per bucket (in ``edges`` order), values in req/s.
    ``edges``: ``len(columns) + 1`` bucket bounds in seconds (finite, positive), drawn in ms.
    With ``step_s`` the times go as ``x0``/``dx`` (:func:`on_grid`).
    """
    rates, xs = time_x(rates, step_s, zone)
    z = rates.to_numpy(dtype=float).T
    z = np.where(z > 0, z, np.nan).astype(F32)  # float32: half the bytes, 7 digits (3 shown)
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
    return time_layout(fig, zone, x_range, y_title="latency bucket (ms, log scale)", height=420)


def good_ratio_chart(
    good_ratio: pd.Series, *, objective: float, threshold_s: float, zone: ViewerZone,
    x_range: tuple[datetime, datetime] | None = None, step_s: float | None = None,
) -> go.Figure:
    """Share of requests at most the SLO threshold over time (percent), with the objective line.
    With ``step_s`` the times go as ``x0``/``dx`` (:func:`on_grid`)."""
    frame, xs = time_x(good_ratio.to_frame("ratio"), step_s, zone)
    ratio = frame["ratio"]
    fig = go.Figure(
        go.Scatter(
            **xs, y=(ratio.astype(float) * 100).to_numpy(dtype=F32), mode="lines", name="good ratio",
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
    return time_layout(fig, zone, x_range, y_title=f"requests ≤ {threshold_s * 1000:g} ms (%)", height=300)


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
    fig.update_layout(height=320, margin={"l": 10, "r": 10, "t": 30, "b": 10}, font={"family": FONT},
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0})
    return fig


def latest_values(quantiles: Mapping[str, pd.DataFrame], zone: ViewerZone, band: str = "bucket") -> str | None:
    """The latest value of each percentile as one line of Markdown, under the percentile chart:
    ``Latest at 2026-11-27 14:05 CET: p50 **12.3 ms** (bucket 10–25 ms) · p99 ...``; a percentile
    whose latest point is older than the others' names its own time. None when no percentile has
    a value.

    A line of text, not one ``st.metric`` card per percentile: the cards made a first-time visitor's
    browser fetch and run Streamlit's metric chunks (number formatting, themes) after the chart's
    message had arrived, on the path to the drawn page; the line shows the same values, their unit,
    time and ``band`` (what the bounds are: the bucket, or the instances of a summary) as plain text.
    """
    latest = []
    for label, frame in quantiles.items():
        valid = frame["value"].dropna()
        if len(valid):
            at = valid.index[-1]
            latest.append((label, at, frame.loc[at]))
    if not latest:
        return None
    newest = max(at for _, at, _ in latest)
    parts = []
    for label, at, row in latest:
        when = "" if at == newest else f" at {fmt_time(at.to_pydatetime(), zone)}"
        parts.append(f"{label} **{row['value'] * 1000:.1f} ms** ({band} {row['lower'] * 1000:g}–"
                     f"{row['upper'] * 1000:g} ms{when})")
    return f"Latest at {fmt_time(newest.to_pydatetime(), zone)}: " + " · ".join(parts)
