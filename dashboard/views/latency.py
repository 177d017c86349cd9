"""Latency: "it's slow" — how slow, since when, for whom, and did a deploy do it?

Percentiles and the bucket heatmap come from one ``query_range`` of the request-duration
histogram's bucket increases (``sum by (le)``, rate window >= 4 scrape intervals and >= the
step, step chosen so a series keeps ~1-1.5k points); percentiles are computed from those
buckets with Prometheus's interpolation, and the bucket holding each is drawn as a band so
nobody reads interpolation error as signal. Every choice is bound to the URL.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from analyzers.config import HTTP_DURATION
from analyzers.drilldown.exemplars import Exemplars
from analyzers.errors import ConfigError
from analyzers.model import Deploy
from analyzers.text import format_duration
from dashboard import data, exemplars
from dashboard.components import charts, common, compare, figures, header, latency_charts, percentile_chart

DEPLOY_PAGE = "views/deploy.py"
#: Points per series: about the chart's width in pixels on a wide screen (more points than pixels
#: cost bytes and drawing time and show nothing more). 24 h -> a 2 min step, 7 d -> 15 min.
TARGET_POINTS = 1000
PRESETS = ("1h", "6h", "24h", "7d")
DEFAULT_PRESET = "6h"
REFRESH_S = 60
#: Session key: the empty "loading" chart was shown in this session (see panels()).
SKELETON_SHOWN = "_lat_skeleton_shown"
#: The panels below the percentile chart, one tab each, bound to the URL as ``?panel=<label>``. Only
#: the open tab's code runs, so the page's first paint is the percentile chart and the light first
#: tab; a heavy panel is queried and drawn when it is opened. Labels are URL values: keep them.
QUERY_TAB, HEATMAP_TAB, BREAKDOWN_TAB, COMPARE_TAB, SLO_TAB = (
    "Query & exemplars", "Bucket heatmap", "Who is slow?", "Before / after", "SLO")
TABS = (QUERY_TAB, HEATMAP_TAB, BREAKDOWN_TAB, COMPARE_TAB, SLO_TAB)
BREAKDOWN_LABELS = ("endpoint", "version", "pod")
OBJECTIVES = (0.99, 0.995, 0.999)
NEEDS_BUCKETS = ("{what} needs histogram buckets (classic `_bucket` series with `le`, or a native histogram); "
                 "this service exposes {source} under this name, so there is nothing to break down by bucket here.")
#: SLO thresholds offered for a native histogram (seconds), besides the configured one: its
#: exponential bucket bounds are not round numbers, so the ratio is interpolated inside a bucket.
NATIVE_THRESHOLDS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.25, 0.3, 0.5, 0.75, 1.0, 2.0, 2.5, 5.0, 10.0)

esc = common.md_escape
page = header.service_page("Latency")
zone, config, config_key, scrape_s, service = page.zone, page.config, page.config_key, page.scrape_s, page.service
histograms = sorted({m.histogram for m in config.metrics.values() if m.histogram} | {HTTP_DURATION})
histogram = (
    st.sidebar.selectbox("Histogram", histograms, key="hist", bind="query-params")
    if len(histograms) > 1 else histograms[0]
)
percentiles = st.sidebar.multiselect(
    "Percentiles", list(data.PERCENTILES), default=["p50", "p90", "p99"], key="pct", bind="query-params"
)


def default_preset() -> str:
    """The smallest preset that holds the deploy in the URL (``?deploy=``), else this service's latest
    deploy, with half an hour of data before it: the page opens on a deploy, not on an empty hour."""
    anchor = None
    try:
        wanted = common.query_value("deploy")
        if wanted:
            detail = data.load_deploy(config.store_url, wanted, 3600)
            anchor = detail.deploy.started_at if detail is not None else None
        if anchor is None and service:
            latest = data.load_service_history(config.store_url, service, 1)
            anchor = latest.deploys[0].started_at if latest.deploys else None
    except Exception:  # noqa: BLE001 - no store: the markers panel says so; open on the shortest preset
        anchor = None
    if anchor is None:
        return DEFAULT_PRESET
    age = common.floor_now(60) - anchor.timestamp() + 1800
    fits = [p for p in PRESETS if common.preset_seconds(p) >= max(age, common.preset_seconds(DEFAULT_PRESET))]
    return fits[0] if fits else PRESETS[-1]


time_range = common.time_range_picker(PRESETS, default=default_preset(), zone=zone, key_prefix="lat_",
                                      granularity_s=scrape_s)
live = st.sidebar.toggle(
    f"Auto-refresh every {REFRESH_S} s", key="live", bind="query-params",
    help="Re-query the last minutes while you watch (preset ranges only).",
)
header.share_link(time_range, "lat_")

st.caption(
    f"{common.md_code(service) if service else 'no service'} · {esc(histogram)} · {zone.note()} Latency in milliseconds; bands show "
    "the histogram bucket each percentile falls in (interpolation error can be anywhere inside)."
)
if not service:
    st.info("Pick a service in the sidebar.")
    st.stop()
if not percentiles:
    st.info("Pick at least one percentile in the sidebar.")


# --------------------------------------------------------------------------- helpers


def choose_step(seconds: int) -> int:
    """Step so a series has ~1-1.5k points, never finer than the scrape interval."""
    from analyzers.prometheus.client import choose_step as _choose

    return int(_choose(float(seconds), None, min_step_s=float(scrape_s), target_points=TARGET_POINTS))


def current_range() -> common.TimeRange:
    """The picked range with "now" recomputed (auto-refresh re-runs only the panels)."""
    if time_range.label == "custom":
        return time_range
    end = common.floor_now(scrape_s)
    return common.TimeRange(end - common.preset_seconds(time_range.label), end, time_range.label)


def deploys_in(tr: common.TimeRange) -> tuple[list[Deploy], dict]:
    """This service's deploys in the range (for markers); a store failure only loses the markers."""
    try:
        found = data.load_deploys(config.store_url, tr.start, tr.end, None)
    except Exception as exc:  # noqa: BLE001
        st.warning(common.explain_error(exc, what="Deploy markers"), icon=":material/error:")
        return [], {}
    return [d for d in found.deploys if d.service == service], found.verdicts


def show_chart(fig: go.Figure, key: str) -> None:
    """Draw a chart; a click on a deploy marker opens that deploy's page."""
    event = st.plotly_chart(fig, key=key, on_select="rerun", selection_mode="points")
    picked = common.clicked_deploy(event)
    if picked:
        st.switch_page(DEPLOY_PAGE, query_params={"deploy": picked})


def show_percentiles(data: dict[str, Any], key: str) -> None:
    """Draw the percentile chart (uPlot); a click on a deploy marker opens that deploy's page."""
    picked = percentile_chart.draw(data, key)
    if picked:
        st.switch_page(DEPLOY_PAGE, query_params={"deploy": picked})


def bucket_edges(les: tuple[float, ...]) -> list[float]:
    """Drawing edges for buckets on a log axis: (0, le0] starts one ratio below le0, +Inf ends one above."""
    finite = [x for x in les if np.isfinite(x)]
    if len(finite) < 2:
        return [*finite, finite[-1] * 2] if finite else []
    lo = finite[0] * finite[0] / finite[1]
    hi = finite[-1] * finite[-1] / finite[-2]
    return [lo, *finite, *([hi] if len(finite) < len(les) else [])]


# --------------------------------------------------------------------------- panels


def panels() -> None:
    tr = current_range()
    step = choose_step(tr.seconds)
    # Align to the step: the same (start, end, step) for every rerun within one step, so reruns
    # and other viewers hit the cache, and Prometheus gets aligned queries.
    tr = common.TimeRange(tr.start // step * step, tr.end // step * step, tr.label)
    start, end = tr.start, tr.end
    st.caption(
        f"{common.fmt_time(tr.start_dt, zone)} → {common.fmt_time(tr.end_dt, zone)} · step {format_duration(step)}"
    )
    lat: data.LatencyData | None = None
    ex = None  # exemplars: drawn on the percentile and heatmap charts
    st.subheader("Percentiles over time")
    skeleton = st.empty()
    if not st.session_state.get(SKELETON_SHOWN):
        # The session's first run (a page just opened): an empty chart while the store and Prometheus
        # answer, in the place the chart will be. Not on reruns: it would blink.
        st.session_state[SKELETON_SHOWN] = True
        with skeleton:
            percentile_chart.draw(percentile_chart.skeleton(zone, x_range=(tr.start_dt, tr.end_dt),
                                                            text="Querying the histogram…"), "percentiles_skeleton")
    deploys, verdicts = deploys_in(tr)
    markers = figures.markers_key(deploys, verdicts)
    # The chart's place, then the tabs below it, sent before Prometheus is asked: the browser draws the
    # tab bar while the query runs, and once it answers only the chart, the latest values and the open
    # tab's content are left to draw (a first visit's browser is the slower side: docs/benchmarks.md).
    top = st.container()
    tabs = panel_tabs()
    with top, common.panel("Percentiles"), st.spinner("Querying the histogram…"):
        lat = data.load_latency(config_key, config, histogram, service, start, end, step, tuple(percentiles))
        for w in lat.warnings:
            st.warning(f"Prometheus warning: {esc(w)}")
        band = "instances" if lat.source == "summary" else "bucket"
        if lat.source == "summary":
            st.caption(
                f"From a **summary** ({lat.instances} instances): each instance computes its own quantiles and "
                "they cannot be combined across instances, so the line is the highest instance's value (an upper "
                "bound of the service-wide percentile, which lies between the instances' lowest and highest) and "
                "the band spans the lowest to the highest instance."
            )
            if lat.missing:
                st.info(f"{', '.join(lat.missing)} not exported by this summary (it only has the quantiles its "
                        "clients were configured with).")
        elif lat.source == "native histogram":
            st.caption("From a **native histogram**: exponential buckets, so the bands are narrow.")
        if not lat.source:
            st.info(
                f"No {esc(histogram)}\\_bucket series, native histogram or summary {esc(histogram)} for service "
                f"{common.md_code(service)} in this range. Check the service name and that Prometheus scrapes it."
            )
        elif percentiles and lat.quantiles:
            first_q = next(iter(lat.quantiles.values()))["value"]
            stale = common.stale_note(first_q, end, step, zone)
            if stale:
                st.warning(stale, icon=":material/schedule:")
            ex = exemplars.load(config_key, config, histogram, service, start, end)

            def percentile_data(lat: data.LatencyData = lat, ex: Exemplars | None = ex) -> dict[str, Any]:
                return percentile_chart.payload(lat.quantiles, zone, x_range=(tr.start_dt, tr.end_dt),
                                                       band=band, step_s=step, deploys=deploys, verdicts=verdicts,
                                                       exemplars=ex)

            show_percentiles(figures.cached(percentile_data, "percentiles", lat.quantiles, band, tr, step, zone,
                                     markers, ex), "percentiles")
            latest = latency_charts.latest_values(lat.quantiles, zone, band)
            if latest:
                st.markdown(latest)
    skeleton.empty()
    lower_panels(lat, ex, tr, step, deploys, verdicts, markers, tabs)


def panel_tabs() -> dict[str, Any]:
    """The tabs of the panels below the percentile chart, by label (the open one is in the URL)."""
    return dict(zip(TABS, st.tabs(TABS, key="panel", on_change="rerun", bind="query-params"), strict=True))


def lower_panels(lat: data.LatencyData | None, ex: Exemplars | None, tr: common.TimeRange, step: int,
                 deploys: list[Deploy], verdicts: dict, markers: tuple, tabs: dict[str, Any]) -> None:
    """The panels below the percentile chart, one tab each; only the open one runs (queries and draws)."""
    # Breakdown, before/after and burn rates query the classic `_bucket` series by `le`, or the
    # native histogram's samples (its buckets travel inside each sample); a summary has no buckets.
    native = lat is not None and lat.source == "native histogram"
    summary = lat is not None and lat.source == "summary"
    if tabs[QUERY_TAB].open:
        with tabs[QUERY_TAB], common.panel("Query"):
            if lat is None:
                st.info("No query answered: see the error above.")
            else:
                exemplars.table(ex, zone)
                st.caption(f"Rate window {lat.window}, step {step} s. PromQL:")
                common.show_query(lat.query)
    if tabs[HEATMAP_TAB].open:
        with tabs[HEATMAP_TAB], common.panel("Heatmap"):
            heatmap(lat, ex, tr, step, deploys, verdicts, markers)
    if tabs[BREAKDOWN_TAB].open:
        with tabs[BREAKDOWN_TAB], common.panel("Breakdown"):
            if summary:
                st.info(NEEDS_BUCKETS.format(what="The breakdown", source="a summary"))
            else:
                breakdown(tr, native)
    if tabs[COMPARE_TAB].open:
        with tabs[COMPARE_TAB], common.panel("Before/after"):
            if summary:
                st.info(NEEDS_BUCKETS.format(what="The before/after comparison", source="a summary"))
            else:
                compare.before_after(compare.Scope(config, config_key, histogram, service, zone, scrape_s),
                                     deploys, verdicts, tr, native)
    if tabs[SLO_TAB].open:
        with tabs[SLO_TAB], common.panel("SLO"):
            if summary:
                st.info(NEEDS_BUCKETS.format(what="The SLO view", source="a summary"))
            elif native and lat is not None:
                native_slo(lat, tr.start, tr.end, deploys, verdicts)
            else:
                slo(lat, tr.start, tr.end, step, deploys, verdicts)


def heatmap(lat: data.LatencyData | None, ex: Exemplars | None, tr: common.TimeRange, step: int,
            deploys: list[Deploy], verdicts: dict, markers: tuple) -> None:
    if lat is None:
        st.info("No bucket data: see the error above.")
    elif lat.source == "summary":
        st.info(NEEDS_BUCKETS.format(what="The heatmap", source="a summary"))
    elif not lat.cumulative.empty:
        def heatmap_figure(lat: data.LatencyData = lat, ex: Exemplars | None = ex) -> go.Figure:
            from analyzers.stats import buckets

            rates = pd.DataFrame(buckets.bucket_increments(lat.cumulative)) / lat.window_s
            edges = bucket_edges(lat.les)
            rates = rates.iloc[:, : len(edges) - 1]
            fig = latency_charts.heatmap_chart(rates, edges, zone, x_range=(tr.start_dt, tr.end_dt), step_s=step)
            charts.add_deploy_markers(fig, deploys, verdicts, zone)
            exemplars.add_markers(fig, ex, zone)
            return fig

        show_chart(figures.cached(heatmap_figure, "heatmap", lat.cumulative, lat.les, lat.window_s, tr, step,
                                  zone, markers, ex), "heatmap")
        st.caption(f"Requests per second in each bucket (averaged over {lat.window}).")


def breakdown(tr: common.TimeRange, native: bool = False) -> None:
    c1, c2 = st.columns(2)
    label = c1.selectbox(
        "Break down by", BREAKDOWN_LABELS, key="by", bind="query-params", persist_state="page", accept_new_options=True,
        help="endpoint, version or pod, or type any other label of the histogram.",
    ).strip()
    quantile = c2.selectbox("Slow means above", list(data.PERCENTILES), index=2, key="tail", bind="query-params",
                            persist_state="page")
    with st.spinner("Ranking contributors…"):
        try:
            bd = data.load_breakdown(config_key, config, histogram, service, label, quantile, tr.start, tr.end,
                                     native=native)
        except ConfigError as exc:  # the typed label, refused before any query ran: not the config file's fault
            st.error(f"Breakdown: cannot break down by {common.md_code(label)}: {common.md_code(str(exc).rstrip('.'), max_len=500)}. Pick endpoint, version or "
                     "pod, or type another label of the histogram.", icon=":material/error:")
            return
    if bd is None:
        st.info("No requests in this range.")
        return
    for w in bd.warnings:
        st.warning(f"Prometheus warning: {esc(w)}")
    st.markdown(
        f"Service-wide {quantile} over the range: **{bd.overall.value * 1000:.1f} ms** "
        f"(bucket {bd.overall.lower * 1000:g}–{bd.overall.upper * 1000:g} ms). Slow = slower than "
        f"**{bd.threshold_le * 1000:g} ms** (the bound of that bucket). Ranked by how much more of the slow "
        "requests a value holds than of all requests: the top row is the first suspect."
    )
    if native:
        st.caption("From the **native histogram**: one histogram per value, added up for the service-wide "
                   "percentile; the threshold is a bound of its exponential buckets, so the counts are exact "
                   "(a value whose client uses coarser buckets is split linearly inside the one holding it).")
    st.dataframe(
        pd.DataFrame(
            [
                {
                    label: r.value or "(none)",
                    "share of slow requests": r.slow_share,
                    "share of all requests": r.total_share,
                    "excess (pp)": r.excess * 100,
                    "its requests that were slow": r.slow_ratio,
                    "requests": int(round(r.total)),
                }
                for r in bd.rows
            ]
        ),
        hide_index=True,
        column_config={
            "share of slow requests": st.column_config.ProgressColumn(format="percent", min_value=0, max_value=1),
            "share of all requests": st.column_config.NumberColumn(format="percent"),
            "excess (pp)": st.column_config.NumberColumn(format="%+.1f pp"),
            "its requests that were slow": st.column_config.NumberColumn(format="percent"),
        },
    )
    common.show_query(bd.query)


def slo(lat: data.LatencyData | None, start: int, end: int, step: int, deploys: list[Deploy],
        verdicts: dict) -> None:
    finite = [le for le in (lat.les if lat else ()) if np.isfinite(le) and le > 0]
    if lat is None or not finite:
        st.info("No bucket bounds known for this histogram in the range.")
        return
    c1, c2 = st.columns(2)
    slo_cfg = config.slo_for(service)
    default = min(range(len(finite)), key=lambda i: abs(finite[i] - slo_cfg.threshold_s))
    threshold = c1.selectbox("Threshold (a bucket bound, seconds)", finite, index=default, key="slo_le",
                             bind="query-params", persist_state="page")
    objectives = sorted(set(OBJECTIVES) | {slo_cfg.objective})
    objective = c2.selectbox("Objective", objectives, index=objectives.index(slo_cfg.objective), key="slo_obj",
                             bind="query-params", persist_state="page",
                             help="Share of requests that must be at most the threshold (default from [slo] in the config).")
    with st.spinner("Querying the burn rates…"):
        burn = data.load_burn_rates(config_key, config, histogram, service, float(threshold), float(objective), end)
    for w in burn.warnings:
        st.warning(f"Prometheus warning: {esc(w)}")
    good_ratio = (lat.cumulative[float(threshold)] / lat.cumulative[float("inf")]).replace(
        [np.inf, -np.inf], np.nan)
    good_now = good_ratio.dropna()
    _slo_metrics(good_now, burn, f"Share of requests at most {threshold * 1000:g} ms over the last {lat.window}.",
                 "Error-budget burn over the last long/short window")
    _slo_chart(good_ratio, float(objective), float(threshold), start, end, deploys, verdicts, burn, lat.step)


def native_slo(lat: data.LatencyData, start: int, end: int, deploys: list[Deploy], verdicts: dict) -> None:
    """SLO for a native histogram: the threshold is any latency; the good ratio is interpolated
    inside the exponential bucket holding it (Prometheus 2.x's ``histogram_fraction``), and the
    panel says how wide that bucket is and between which ratios the truth lies."""
    from analyzers.stats import buckets

    if lat.cumulative.empty:
        st.info("No native histogram samples for this service in the range.")
        return
    c1, c2 = st.columns(2)
    slo_cfg = config.slo_for(service)
    thresholds = sorted(set(NATIVE_THRESHOLDS) | {float(slo_cfg.threshold_s)})
    threshold = c1.selectbox("Threshold (seconds)", thresholds, index=thresholds.index(float(slo_cfg.threshold_s)),
                             key="slo_le", bind="query-params", persist_state="page",
                             help="Any latency: a native histogram's bucket bounds are not round numbers, so the "
                                  "share at or below it is interpolated inside the bucket holding it.")
    objectives = sorted(set(OBJECTIVES) | {slo_cfg.objective})
    objective = c2.selectbox("Objective", objectives, index=objectives.index(slo_cfg.objective), key="slo_obj",
                             bind="query-params", persist_state="page",
                             help="Share of requests that must be at most the threshold (default from [slo] in the config).")
    with st.spinner("Querying the burn rates…"):
        burn = data.load_burn_rates(config_key, config, histogram, service, float(threshold), float(objective), end,
                                    native=True)
    for w in burn.warnings:
        st.warning(f"Prometheus warning: {esc(w)}")
    frac = buckets.native_fraction_at_or_below(lat.cumulative, float(threshold))
    good_now = frac.ratio.dropna()
    _slo_metrics(good_now, burn,
                 f"Share of requests at most {threshold * 1000:g} ms over the last {lat.window}, interpolated "
                 "inside the bucket holding the threshold.",
                 "Error-budget burn over the last long/short window (histogram_fraction, interpolated like the "
                 "good ratio)")
    if frac.lower == frac.upper:
        st.caption(f"From the **native histogram**: {threshold * 1000:g} ms is a bucket bound, so the good ratio "
                   "is exact (no interpolation).")
    elif np.isfinite(frac.lower) and np.isfinite(frac.upper):
        lo_now = frac.ratio_lower.dropna()
        hi_now = frac.ratio_upper.dropna()
        span = (f" (the latest true ratio lies between {lo_now.iloc[-1] * 100:.2f} % and "
                f"{hi_now.iloc[-1] * 100:.2f} %)") if len(lo_now) and len(hi_now) else ""
        st.caption(
            f"From the **native histogram**: the good ratio and the burn rates are **interpolated** within the "
            f"bucket {frac.lower * 1000:.4g}–{frac.upper * 1000:.4g} ms holding the threshold (a bucket of width "
            f"{frac.width * 1000:.3g} ms), assuming its requests spread evenly, as Prometheus's histogram_fraction "
            f"does{span}."
        )
    else:
        st.caption(f"From the **native histogram**: {threshold * 1000:g} ms lies outside every bucket seen in the "
                   "range, so the ratio is 0 or 1 exactly.")
    _slo_chart(frac.ratio, float(objective), float(threshold), start, end, deploys, verdicts, burn, lat.step)


def _slo_metrics(good_now: pd.Series, burn: data.BurnRates, good_help: str, burn_help: str) -> None:
    """The latest good ratio and one burn-rate pair per alert window, side by side."""
    cols = st.columns(len(burn.rates) + 1)
    cols[0].metric("Good ratio (latest)", f"{good_now.iloc[-1] * 100:.2f} %" if len(good_now) else "n/a",
                   help=good_help)
    for col, (long, short, factor, long_rate, short_rate) in zip(cols[1:], burn.rates, strict=True):
        firing = long_rate > factor and short_rate > factor
        col.metric(
            f"Burn rate {long} / {short}",
            f"{_rate(long_rate)} / {_rate(short_rate)}",
            delta=f"alert: both above {factor:g}×" if firing else f"alert at {factor:g}× on both",
            delta_color="inverse" if firing else "off",
            delta_arrow="off",
            help=f"{burn_help}: 1× spends the budget exactly over the SLO period. n/a: no requests in that window.",
        )


def _slo_chart(ratio: pd.Series, objective: float, threshold: float, start: int, end: int, deploys: list[Deploy],
               verdicts: dict, burn: data.BurnRates, step: int) -> None:
    """The good ratio over the range against the objective, with deploy markers, and the PromQL."""
    if len(ratio.dropna()):
        def slo_figure() -> go.Figure:
            fig = latency_charts.good_ratio_chart(ratio, objective=objective, threshold_s=threshold,
                                          zone=zone, x_range=(data.to_dt(start), data.to_dt(end)), step_s=step)
            charts.add_deploy_markers(fig, deploys, verdicts, zone)
            return fig

        show_chart(figures.cached(slo_figure, "slo", ratio, objective, threshold, start, end, step, zone,
                                  figures.markers_key(deploys, verdicts)), "slo_chart")
    with st.expander("Burn-rate PromQL"):
        for q in burn.queries:
            common.show_query(q)


def _rate(x: float) -> str:
    return "n/a" if x != x else f"{x:.2f}×"


run: Callable[[], None] = panels
if live and time_range.label != "custom":
    run = st.fragment(run_every=REFRESH_S)(panels)
run()
