"""The Latency page's opening chart (percentiles with their bucket bands, deploy markers, exemplars)
as a Vega-Lite spec for ``st.vega_lite_chart``, not a Plotly figure.

Why not Plotly: the opening view is what a first-time visitor waits for, and Streamlit loads a
chart library's JavaScript when the first chart of that kind appears. Plotly's chunk is 4.7 MB
(seconds of parsing and compiling on a first visit); Vega's (vega-embed with Vega and Vega-Lite)
is under 1 MB. The lower panels, opened later, keep Plotly. Pure: data in, spec dict out.

The same conventions as :mod:`dashboard.components.charts` hold:

* **One clock.** Vega draws a time scale (``"type": "time"``) in the *browser's* zone and a
  ``"utc"`` scale as UTC. When the page's zone is the browser's (:func:`charts.browser_draws_zone`)
  times go as real instants (epoch ms) on a time scale; otherwise (the UTC switch, a fixed offset)
  as the wall-clock time in the page's zone written as if it were UTC, on a utc scale. Each point
  is converted on its own, so a range across a DST change is drawn right; the axis title names
  the zone.
* **Units.** Latency in milliseconds on a log axis; the band is the bucket (or, for a summary, the
  span of instances) holding each percentile.
* **Deploy markers.** A rule per deploy in its verdict's colour (releases dotted) and a clickable
  triangle on top whose selection (:data:`DEPLOY_SELECTION`, field ``deploy_id``) opens the deploy.
* **Event text is data, not markup.** Hover texts are fields of the datasets; Vega's tooltip
  handler escapes them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from analyzers.drilldown.exemplars import Exemplars
from analyzers.model import Deploy, DeployVerdict
from analyzers.text import format_value
from dashboard.components.charts import F32, FONT, browser_draws_zone, verdict_state
from dashboard.components.common import VERDICT_COLORS, ViewerZone, fmt_time

#: The selection parameter of the deploy markers: ``event["selection"][DEPLOY_SELECTION]``.
DEPLOY_SELECTION = "deploy"
PALETTE = ("#1f77b4", "#2ca02c", "#ff7f0e", "#d62728", "#9467bd")
HEIGHT = 380
Y_TITLE = "latency (ms, log scale)"
_EPOCH = pd.Timestamp(0)
_MS = pd.Timedelta(milliseconds=1)


def time_scale(zone: ViewerZone) -> str:
    """``"time"`` (Vega draws instants in the browser's zone: the page's) or ``"utc"`` (wall-clock
    times of the page's zone, written as UTC)."""
    return "time" if browser_draws_zone(zone) else "utc"


def vega_ms(values: Sequence[datetime] | pd.DatetimeIndex, zone: ViewerZone) -> np.ndarray:
    """Times for :func:`time_scale`'s scale, in ms: the instant, or its wall-clock time in the page's
    zone as if UTC (offset by offset, so DST is followed)."""
    idx = pd.DatetimeIndex(values)
    if idx.tz is None:
        idx = idx.tz_localize("UTC")
    idx = idx.tz_convert("UTC") if browser_draws_zone(zone) else idx.tz_convert(zone.tz)
    return ((idx.tz_localize(None) - _EPOCH) / _MS).to_numpy(dtype="float64")


def _time_axis(zone: ViewerZone, x_range: tuple[datetime, datetime]) -> dict[str, Any]:
    return {
        "field": "t", "type": "temporal", "title": f"time ({zone.name})",
        "scale": {"type": time_scale(zone), "domain": [_datetime(x) for x in vega_ms(list(x_range), zone)],
                  "nice": False},
        # 24-hour clock; the date where a day starts (Vega's multi-format, per time unit).
        "axis": {"format": {"year": "%Y", "month": "%b %d", "week": "%b %d", "date": "%b %d", "hours": "%H:%M",
                            "minutes": "%H:%M", "seconds": "%H:%M:%S", "milliseconds": "%H:%M:%S"},
                 "labelOverlap": True, "grid": True,
                 # over days, one tick a day (its date); shorter ranges tick on hours, the date at midnight
                 **({"tickCount": {"interval": "day", "step": 1}}
                    if (x_range[1] - x_range[0]).total_seconds() > 2 * 86400 else {})},
    }


def _datetime(ms: float) -> dict[str, Any]:
    """A time of :func:`vega_ms` as a Vega-Lite DateTime object (what a scale domain takes): its UTC
    fields with ``utc: true``, which names the same instant on either scale type."""
    ts = pd.Timestamp(float(ms), unit="ms")
    return {"utc": True, "year": ts.year, "month": ts.month, "date": ts.day, "hours": ts.hour,
            "minutes": ts.minute, "seconds": ts.second, "milliseconds": ts.microsecond // 1000}


def _tooltip_time(zone: ViewerZone) -> dict[str, Any]:
    return {"field": "t", "type": "temporal", "title": f"time ({zone.name})", "format": "%Y-%m-%d %H:%M:%S",
            "formatType": time_scale(zone)}


def _frame(frame: pd.DataFrame, step_s: float | None) -> pd.DataFrame:
    """``frame`` on its regular step grid (a step Prometheus did not answer becomes a NaN row, drawn as
    a gap, not bridged), or as it is when its times are not on one grid."""
    idx = frame.index
    if not step_s or len(idx) < 2 or not isinstance(idx, pd.DatetimeIndex):
        return frame
    grid = pd.date_range(idx[0], idx[-1], freq=pd.Timedelta(seconds=float(step_s)))
    if len(grid) > 4 * len(idx) + 16 or not idx.isin(grid).all():
        return frame
    return frame.reindex(grid)


def latency_rows(quantiles: Mapping[str, pd.DataFrame], zone: ViewerZone, step_s: float | None) -> pd.DataFrame:
    """One row per (time, percentile): ``t`` (ms, :func:`vega_ms`), ``p`` (label), ``v``, ``lo``, ``hi``
    (ms, float32: 7 significant digits, far finer than the 0.1 ms shown). A bound that a log axis
    cannot draw (0, +Inf) is missing."""
    parts = []
    for label, frame in quantiles.items():
        f = _frame(frame, step_s)
        ms = f[["value", "lower", "upper"]].astype(float) * 1000
        ms = ms.where(np.isfinite(ms) & (ms > 0))
        parts.append(pd.DataFrame({
            "t": vega_ms(pd.DatetimeIndex(f.index), zone), "p": label,
            "v": ms["value"].to_numpy(dtype=F32), "lo": ms["lower"].to_numpy(dtype=F32),
            "hi": ms["upper"].to_numpy(dtype=F32),
        }))
    rows = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        {"t": np.array([], dtype="float64"), "p": [], "v": np.array([], dtype=F32),
         "lo": np.array([], dtype=F32), "hi": np.array([], dtype=F32)})
    rows["p"] = pd.Categorical(rows["p"], categories=list(quantiles))
    return rows


def deploy_rows(deploys: Sequence[Deploy], verdicts: Mapping[str, DeployVerdict], zone: ViewerZone) -> pd.DataFrame:
    """One row per deploy marker: time, id (what a click selects), colour, and its hover fields."""
    states = [verdict_state(verdicts.get(d.deploy_id)) for d in deploys]
    return pd.DataFrame({
        "t": vega_ms([d.started_at for d in deploys], zone),
        "deploy_id": [d.deploy_id for d in deploys],
        "color": [VERDICT_COLORS[s] for s in states],
        "fill": [VERDICT_COLORS[s] if d.deploy_id in verdicts else "#ffffff" for d, s in zip(deploys, states, strict=True)],
        "release": [d.kind == "release" for d in deploys],
        "deploy": [f"{d.service} {d.version}" + (" (release)" if d.kind == "release" else "") for d in deploys],
        "where": [f"{d.environment} · {d.status}" for d in deploys],
        "flag": [f"{d.flag}: {d.flag_from} → {d.flag_to}" if d.kind == "release" and d.flag else "—" for d in deploys],
        "author": [d.author or "—" for d in deploys],
        "verdict": states,
        "started": [fmt_time(d.started_at, zone) for d in deploys],
        "signed": ["yes" if d.signed else "UNSIGNED: the event carried no valid signature" for d in deploys],
    })


def exemplar_rows(ex: Exemplars | None, zone: ViewerZone) -> pd.DataFrame:
    """One row per exemplar (a traced request): time, latency in ms, and its hover fields."""
    points = ex.points if ex is not None else []
    return pd.DataFrame({
        "t": vega_ms([p.time for p in points], zone),
        "ms": np.array([p.value * 1000 for p in points], dtype="float64"),
        "when": [fmt_time(p.time.to_pydatetime(), zone, seconds=True) for p in points],
        "latency": [format_value(p.value, "s") for p in points],
        "trace": [p.trace_id or "none" for p in points],
    })


def _deploy_layers() -> list[dict[str, Any]]:
    tooltip = [{"field": f, "title": t} for f, t in (
        ("deploy", "deploy"), ("where", "environment · status"), ("flag", "flag"), ("author", "author"),
        ("verdict", "verdict"), ("started", "started"), ("signed", "signed"))]
    return [
        {"name": "deploy_lines", "data": {"name": "deploys"},
         "mark": {"type": "rule", "strokeWidth": 1.5},
         "encoding": {"x": {"field": "t", "type": "temporal"},
                      "color": {"field": "color", "type": "nominal", "scale": None, "legend": None},
                      "strokeDash": {"condition": {"test": "datum.release", "value": [2, 2]}, "value": [6, 4]}}},
        {"name": "deploy_marks", "data": {"name": "deploys"},
         "params": [{"name": DEPLOY_SELECTION, "select": {"type": "point", "fields": ["deploy_id"], "on": "click"}}],
         "mark": {"type": "point", "shape": "triangle-down", "size": 140, "filled": True, "strokeWidth": 2,
                  "cursor": "pointer"},
         "encoding": {"x": {"field": "t", "type": "temporal"}, "y": {"value": 6},
                      "stroke": {"field": "color", "type": "nominal", "scale": None, "legend": None},
                      "fill": {"field": "fill", "type": "nominal", "scale": None, "legend": None},
                      "tooltip": tooltip}},
    ]


def percentile_spec(
    quantiles: Mapping[str, pd.DataFrame], zone: ViewerZone, *, x_range: tuple[datetime, datetime],
    band: str = "bucket", step_s: float | None = None, deploys: Sequence[Deploy] = (),
    verdicts: Mapping[str, DeployVerdict] | None = None, exemplars: Exemplars | None = None,
) -> dict[str, Any]:
    """Percentile lines (seconds in, ms drawn) with the bucket bounds holding each as a band, the
    deploy markers and the exemplars, on the range ``x_range`` (drawn whole, data or not).

    ``quantiles`` maps a label (``p99``) to a frame indexed by time with columns ``value``, ``lower``,
    ``upper`` in seconds; ``band`` names what the band is in the hover text ("instances" for a
    summary). Datasets (``spec["datasets"]``): ``latency`` (:func:`latency_rows`), ``deploys``
    (:func:`deploy_rows`), ``exemplars`` (:func:`exemplar_rows`).
    """
    labels = list(quantiles)
    colors = [PALETTE[i % len(PALETTE)] for i in range(len(labels))]
    color = {"field": "p", "type": "nominal", "title": None, "sort": labels,
             "scale": {"domain": labels, "range": colors}, "legend": {"orient": "top", "direction": "horizontal", "symbolType": "stroke", "symbolOpacity": 1,
                                   "symbolStrokeWidth": 2.5}}
    y = {"type": "quantitative", "title": Y_TITLE, "scale": {"type": "log"}, "axis": {"grid": True}}
    tooltip = [{"field": "p", "title": "percentile"},
               {"field": "v", "type": "quantitative", "title": "latency (ms)", "format": ".1f"},
               {"field": "lo", "type": "quantitative", "title": f"{band} from (ms)", "format": ".1f"},
               {"field": "hi", "type": "quantitative", "title": f"{band} to (ms)", "format": ".1f"},
               _tooltip_time(zone)]
    layers: list[dict[str, Any]] = [
        {"name": "bands", "data": {"name": "latency"},
         "mark": {"type": "area", "opacity": 0.12, "invalid": "break-paths-filter-domains"},
         "encoding": {"y": {**y, "field": "lo"}, "y2": {"field": "hi"}, "color": color}},
        {"name": "lines", "data": {"name": "latency"},
         "mark": {"type": "line", "strokeWidth": 1.6, "invalid": "break-paths-filter-domains"},
         "encoding": {"y": {**y, "field": "v"}, "color": color}},
        # Hover targets: an invisible point per value carrying its tooltip (value, bucket, time). A
        # line is one path, whose tooltip would be its first point's; a "nearest" selection would
        # add a Voronoi diagram over every point (~1 s of browser CPU on a first visit, measured).
        {"name": "hover", "data": {"name": "latency"},
         "mark": {"type": "point", "filled": True, "size": 50, "opacity": 0, "invalid": "filter"},
         "encoding": {"y": {**y, "field": "v"}, "color": color, "tooltip": tooltip}},
    ]
    if exemplars is not None and exemplars.points:
        layers.append({
            "name": "exemplars", "data": {"name": "exemplars"},
            "mark": {"type": "point", "shape": "diamond", "filled": True, "size": 70, "fill": "#ff7f0e",
                     "stroke": "#333333", "strokeWidth": 1, "opacity": 1},
            "encoding": {"y": {**y, "field": "ms"},
                         "tooltip": [{"field": "when", "title": "exemplar at"}, {"field": "latency", "title": "latency"},
                                     {"field": "trace", "title": "trace"}]}})
    datasets: dict[str, pd.DataFrame] = {"latency": latency_rows(quantiles, zone, step_s)}
    if exemplars is not None and exemplars.points:
        datasets["exemplars"] = exemplar_rows(exemplars, zone)
    # Always there (no rows when no deploy is in range), so the chart always has its selection.
    layers += _deploy_layers()
    datasets["deploys"] = deploy_rows(deploys, verdicts or {}, zone)
    return {
        "height": HEIGHT,
        "config": {"font": FONT},
        # Canvas: thousands of points drawn without a DOM node each (Streamlit picks SVG below 2,000).
        "usermeta": {"embedOptions": {"renderer": "canvas"}},
        "encoding": {"x": _time_axis(zone, x_range)},
        "layer": layers,
        "datasets": datasets,
    }


def skeleton_spec(zone: ViewerZone, *, x_range: tuple[datetime, datetime], text: str) -> dict[str, Any]:
    """An empty chart with the percentile chart's axes and a line of text, drawn while Prometheus
    answers: it tells the viewer what is coming, and a browser that has not loaded Vega's
    JavaScript yet (a first visit) starts on it during the query instead of after it."""
    return {
        "height": HEIGHT,
        "config": {"font": FONT},
        "datasets": {"empty": pd.DataFrame({"t": np.array([], dtype="float64"), "v": np.array([], dtype="float64")})},
        "layer": [
            {"data": {"name": "empty"}, "mark": "point",
             "encoding": {"x": _time_axis(zone, x_range),
                          "y": {"field": "v", "type": "quantitative", "title": Y_TITLE,
                                "scale": {"type": "log", "domain": [1, 1000]}, "axis": {"labels": False}}}},
            {"data": {"values": [{}]},
             "mark": {"type": "text", "fontSize": 14, "color": "#8c8c8c", "text": text,
                      "x": {"expr": "width / 2"}, "y": {"expr": "height / 2"}}},
        ],
    }
