"""The Latency page's Plotly figures: percentile lines with their bucket bands, the bucket heatmap,
the SLO good ratio and the before/after CDFs. Pure: data in, ``go.Figure`` out, no Streamlit calls;
the conventions of :mod:`dashboard.components.charts` (zone, units, deploy markers) hold here too.

Series on the query's regular step go to Plotly as ``x0``/``dx`` (:func:`on_grid`) instead of one
x array per trace.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dashboard.components.charts import F32, FONT, apply_layout, local_time, plot_x
from dashboard.components.common import ViewerZone


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
        upper = (frame["upper"].astype(float) * 1000).replace([np.inf, -np.inf], np.nan).to_numpy(dtype=F32)
        lower = (frame["lower"].astype(float) * 1000).to_numpy(dtype=F32)
        fig.add_trace(go.Scatter(**xs, y=upper, mode="lines", line={"width": 0}, showlegend=False,
                                 hoverinfo="skip", legendgroup=label))
        fig.add_trace(go.Scatter(**xs, y=lower, mode="lines", line={"width": 0}, fill="tonexty",
                                 fillcolor=_alpha(color, 0.12), showlegend=False, legendgroup=label,
                                 hoverinfo="skip"))
        fig.add_trace(
            go.Scatter(
                **xs, y=(frame["value"].astype(float) * 1000).to_numpy(dtype=F32), mode="lines", name=label,
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
    return apply_layout(fig, zone=zone, y_title="latency (ms, log scale)", height=380)


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
    regular = on_grid(rates, step_s, zone)
    if regular is not None and step_s:
        rates = regular
        xs: dict[str, object] = dict(grid_x(regular.index, zone, step_s))
    else:
        xs = {"x": plot_x(rates.index, zone)}
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
    if x_range is not None:
        fig.update_xaxes(range=[local_time(x_range[0], zone), local_time(x_range[1], zone)])
    return apply_layout(fig, zone=zone, y_title="latency bucket (ms, log scale)", height=420)


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
    if x_range is not None:
        fig.update_xaxes(range=[local_time(x_range[0], zone), local_time(x_range[1], zone)])
    return apply_layout(fig, zone=zone, y_title=f"requests ≤ {threshold_s * 1000:g} ms (%)", height=300)


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


def _alpha(hex_color: str, a: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{a})"
