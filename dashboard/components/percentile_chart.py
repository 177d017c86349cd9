"""The Latency page's opening chart (percentiles with their bucket bands, deploy markers, exemplars),
drawn in the browser by uPlot through a Streamlit component (``st.components.v2``), not Plotly or
Vega-Lite.

Why uPlot: the opening view is what a first-time visitor waits for, and Streamlit fetches a chart
library's JavaScript when the first chart of that kind appears (Plotly 4.7 MB, Vega about 0.8 MB
plus an expression interpreter walking every per-point tooltip). uPlot is 51 kB, vendored in
``dashboard/components/uplot/`` (MIT, its LICENSE beside it) and sent inline with the component
(no iframe, no extra request); it draws on a canvas. The lower panels, opened later, keep Plotly.

The data goes as JSON (:func:`payload`); the script is ``uplot/percentile_chart.js``.

* **One clock.** uPlot draws a time axis in the *browser's* zone. When the page's zone is the
  browser's (:func:`charts.browser_draws_zone`) times go as real instants (epoch ms, scale
  ``"local"``); otherwise (the UTC switch, a fixed offset) as the wall-clock time in the page's zone
  written as if it were UTC, drawn as UTC (scale ``"utc"``, uPlot's ``tzDate``). Each point is
  converted on its own, so a range across a DST change is drawn right; the axis title names the zone.
* **Units.** Latency in milliseconds on a log axis; the band is the bucket (or, for a summary, the
  span of instances) holding each percentile. Hover: the legend shows each line's value and band at
  the cursor's time.
* **Deploy markers.** A line per deploy in its verdict's colour (releases dotted) with a triangle on
  top; hovering it names the deploy, a click opens it (:func:`draw` returns its id).
* **Event text is data, not markup.** Versions, authors and trace ids travel as JSON strings and the
  script writes them with ``textContent`` or on the canvas, never as HTML.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from analyzers.drilldown.exemplars import Exemplars
from analyzers.model import Deploy, DeployVerdict
from analyzers.text import format_value
from dashboard.components.charts import browser_draws_zone, verdict_state
from dashboard.components.common import VERDICT_COLORS, ViewerZone, fmt_time

ASSETS = Path(__file__).with_name("uplot")
PALETTE = ("#1f77b4", "#2ca02c", "#ff7f0e", "#d62728", "#9467bd")
HEIGHT = 380
Y_TITLE = "latency (ms, log scale)"
#: Significant digits sent per latency value (float32's: far finer than the 0.1 ms shown).
DIGITS = 7
_EPOCH = pd.Timestamp(0)
_MS = pd.Timedelta(milliseconds=1)

# uPlot (an IIFE defining `uPlot`) and the chart's module, one inline script: Streamlit sends it with
# the element and imports it in the page; nothing is fetched. The CSS gets a comment line so
# Streamlit reads it as inline content, not as a file path.
_JS = (ASSETS / "uPlot.iife.min.js").read_text(encoding="utf-8") + "\n" + (
    ASSETS / "percentile_chart.js").read_text(encoding="utf-8")
_CSS = "/* uPlot 1.6.32 (MIT) and the chart's tooltip */\n" + (ASSETS / "uPlot.min.css").read_text(encoding="utf-8") + """
.percentile-chart { position: relative; width: 100%; }
.percentile-chart .u-legend { font-size: 13px; }
.percentile-chart .pc-tip { position: absolute; z-index: 10; pointer-events: none; background: #ffffff;
  border: 1px solid #c8ccd2; border-radius: 4px; padding: 4px 8px; font-size: 12px; max-width: 320px;
  white-space: nowrap; box-shadow: 0 1px 4px rgba(0, 0, 0, 0.15); }
"""
_component = st.components.v2.component("percentile_chart", js=_JS, css=_CSS, isolate_styles=False)


def time_scale(zone: ViewerZone) -> str:
    """``"local"`` (instants, drawn in the browser's zone: the page's) or ``"utc"`` (wall-clock
    times of the page's zone, written and drawn as UTC)."""
    return "local" if browser_draws_zone(zone) else "utc"


def chart_ms(values: Sequence[datetime] | pd.DatetimeIndex, zone: ViewerZone) -> np.ndarray:
    """Times for :func:`time_scale`'s scale, in ms: the instant, or its wall-clock time in the page's
    zone as if UTC (offset by offset, so DST is followed)."""
    idx = pd.DatetimeIndex(values)
    if idx.tz is None:
        idx = idx.tz_localize("UTC")
    idx = idx.tz_convert("UTC") if browser_draws_zone(zone) else idx.tz_convert(zone.tz)
    return ((idx.tz_localize(None) - _EPOCH) / _MS).to_numpy(dtype="float64")


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


def latency_columns(quantiles: Mapping[str, pd.DataFrame], zone: ViewerZone, step_s: float | None
                    ) -> tuple[np.ndarray, dict[str, list[np.ndarray]]]:
    """The lines on one shared time column, as uPlot takes them: ``t`` (ms, :func:`chart_ms`) and, per
    percentile in order, ``v``, ``lo``, ``hi`` (ms, float64; NaN where Prometheus gave no answer for
    that step, drawn as a gap, or where a bound cannot be drawn on a log axis: 0, +Inf)."""
    frames = [_frame(frame, step_s) for frame in quantiles.values()]
    idx = pd.DatetimeIndex([]) if not frames else pd.DatetimeIndex(frames[0].index)
    for f in frames[1:]:
        if not idx.equals(f.index):
            idx = idx.union(pd.DatetimeIndex(f.index))
    cols: dict[str, list[np.ndarray]] = {"v": [], "lo": [], "hi": []}
    for f in frames:
        ms = f.reindex(idx)[["value", "lower", "upper"]].to_numpy(dtype="float64") * 1000
        ms[~(np.isfinite(ms) & (ms > 0))] = np.nan
        for k, col in zip(("v", "lo", "hi"), ms.T, strict=True):
            cols[k].append(col)
    return chart_ms(idx, zone), cols


def deploy_rows(deploys: Sequence[Deploy], verdicts: Mapping[str, DeployVerdict], zone: ViewerZone
                ) -> dict[str, list[Any]]:
    """The deploy markers as the chart's JSON columns: ``t`` (ms, :func:`chart_ms`), ``deploy_id``
    (what a click selects), ``color``, ``fill`` (white until a verdict exists), ``release`` and
    ``hover`` (per marker, its ``[title, text]`` lines: :data:`DEPLOY_HOVER`)."""
    states = [verdict_state(verdicts.get(d.deploy_id)) for d in deploys]
    colors = [VERDICT_COLORS[s] for s in states]
    releases = [d.kind == "release" for d in deploys]
    hover = []
    for d, state, release in zip(deploys, states, releases, strict=True):
        fields = {
            "deploy": f"{d.service} {d.version}" + (" (release)" if release else ""),
            "where": f"{d.environment} · {d.status}",
            "flag": f"{d.flag}: {d.flag_from} → {d.flag_to}" if release and d.flag else "—",
            "author": d.author or "—",
            "verdict": state,
            "started": fmt_time(d.started_at, zone),
            "signed": "yes" if d.signed else "UNSIGNED: the event carried no valid signature",
        }
        hover.append([[title, fields[key]] for key, title in DEPLOY_HOVER])
    return {
        "t": _times(chart_ms([d.started_at for d in deploys], zone)),
        "deploy_id": [d.deploy_id for d in deploys],
        "color": colors,
        "fill": [c if d.deploy_id in verdicts else "#ffffff" for d, c in zip(deploys, colors, strict=True)],
        "release": releases,
        "hover": hover,
    }


def exemplar_rows(ex: Exemplars | None, zone: ViewerZone) -> dict[str, list[Any]]:
    """The exemplars (traced requests) as the chart's JSON columns: ``t`` (ms), ``ms`` (latency),
    ``trace`` and ``hover`` (its "exemplar at", "latency" and "trace" lines)."""
    points = ex.points if ex is not None else []
    traces = [p.trace_id or "none" for p in points]
    return {
        "t": _times(chart_ms([p.time for p in points], zone)),
        "ms": _num([p.value * 1000 for p in points]),
        "trace": traces,
        "hover": [[["exemplar at", fmt_time(p.time.to_pydatetime(), zone, seconds=True)],
                   ["latency", format_value(p.value, "s")], ["trace", trace]]
                  for p, trace in zip(points, traces, strict=True)],
    }


DEPLOY_HOVER = (("deploy", "deploy"), ("where", "environment · status"), ("flag", "flag"), ("author", "author"),
                ("verdict", "verdict"), ("started", "started"), ("signed", "signed"))


def _num(values: Any) -> list[float | None]:
    """Numbers for JSON: DIGITS significant digits, a missing value as null (a gap). An integer
    divided (or multiplied) by an exact power of ten is the double nearest the rounded decimal, so
    JSON writes it short."""
    v = np.asarray(values, dtype="float64")
    ok = np.isfinite(v) & (v != 0)
    k = np.zeros(v.shape, dtype="int64")
    k[ok] = DIGITS - 1 - np.floor(np.log10(np.abs(v[ok]))).astype("int64")
    k = np.clip(k, -22, 22)
    up, down = 10.0 ** np.clip(k, 0, None), 10.0 ** np.clip(-k, 0, None)
    with np.errstate(invalid="ignore", over="ignore"):
        r = np.where(k >= 0, np.round(v * up) / up, np.round(v / down) * down)
    r[~np.isfinite(v)] = np.nan
    return [None if x != x else x for x in r.tolist()]


def _times(values: Any) -> list[float]:
    """Times for JSON: ms as they are (13 digits: never rounded like the values)."""
    return [float(x) for x in np.asarray(values, dtype="float64")]


def _time_axis(zone: ViewerZone, x_range: tuple[datetime, datetime]) -> dict[str, Any]:
    return {"title": f"time ({zone.name})", "scale": time_scale(zone),
            "range": _times(chart_ms(list(x_range), zone))}


def payload(
    quantiles: Mapping[str, pd.DataFrame], zone: ViewerZone, *, x_range: tuple[datetime, datetime],
    band: str = "bucket", step_s: float | None = None, deploys: Sequence[Deploy] = (),
    verdicts: Mapping[str, DeployVerdict] | None = None, exemplars: Exemplars | None = None,
) -> dict[str, Any]:
    """Percentile lines (seconds in, ms drawn) with the bucket bounds holding each as a band, the
    deploy markers and the exemplars, on the range ``x_range`` (drawn whole, data or not), as the
    JSON the chart's script reads.

    ``quantiles`` maps a label (``p99``) to a frame indexed by time with columns ``value``, ``lower``,
    ``upper`` in seconds; ``band`` names what the band is in the hover text ("instances" for a
    summary). Keys: ``x`` (``title`` naming the zone, ``scale`` of :func:`time_scale`, ``range`` in
    ms), ``y`` (``title``, ``scale``), ``labels`` and ``colors`` (one per line), ``t`` (ms, shared by
    every line), ``v``/``lo``/``hi`` (one list of ms per line, :func:`latency_columns`; null = no
    answer for that step: a gap),
    ``deploys`` and ``exemplars`` (columns of :func:`deploy_rows`/:func:`exemplar_rows` with their
    ``hover`` lines).
    """
    labels = list(quantiles)
    t, lines = latency_columns(quantiles, zone, step_s)
    cols = {k: [_num(c) for c in v] for k, v in lines.items()}
    return {
        "height": HEIGHT, "band": band, "message": "",
        "x": _time_axis(zone, x_range),
        "y": {"title": Y_TITLE, "scale": "log"},
        "labels": labels, "colors": [PALETTE[i % len(PALETTE)] for i in range(len(labels))],
        "t": _times(t), **cols,
        "deploys": deploy_rows(deploys, verdicts or {}, zone),
        "exemplars": exemplar_rows(exemplars, zone),
    }


def skeleton(zone: ViewerZone, *, x_range: tuple[datetime, datetime], text: str) -> dict[str, Any]:
    """An empty chart with the percentile chart's axes and a line of text, drawn while Prometheus
    answers: it tells the viewer what is coming, in the place the chart will be."""
    return {
        "height": HEIGHT, "band": "bucket", "message": text,
        "x": _time_axis(zone, x_range),
        "y": {"title": Y_TITLE, "scale": "log", "range": [1, 1000], "labels": False},
        "labels": [], "colors": [], "t": [], "v": [], "lo": [], "hi": [],
        "deploys": {"t": [], "deploy_id": [], "color": [], "fill": [], "release": [], "hover": []},
        "exemplars": {"t": [], "ms": [], "trace": [], "hover": []},
    }


def draw(data: dict[str, Any], key: str) -> str | None:
    """Draw the chart; the id of the deploy whose marker was just clicked, if any."""
    result = _component(data=data, key=key, on_deploy_change=lambda: None)
    picked = getattr(result, "deploy", None) if result is not None else None
    return picked if isinstance(picked, str) and picked else None
