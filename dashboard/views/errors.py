"""Errors: "it's failing" — who is failing, since when, which version, and what explains it.

Three panels, each one Prometheus query through :mod:`analyzers.drilldown` (the same functions
scripts call), over the picked range:

- *Who is failing*: failed and all requests by any label, ranked by how much more of the errors
  a value holds than of the traffic, with each value's error ratio and its 95% interval;
- *Over time*: the error ratio and error rate of each value side by side (per version during a
  rollout);
- *What explains it*: BubbleUp over every label of the series, for the errors or for the slow
  tail, with the figures behind the ranking.

Every choice is bound to the URL (``svc``, ``err_range``, ``err_from``/``err_to``, ``err_by``, ``bu``); a link
from a deploy's page also carries ``deploy=<id>``, and the page links back to it.
"""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from analyzers.config import HTTP_DURATION
from analyzers.text import format_p, format_value
from dashboard import data
from dashboard.components import charts, common, header

PRESETS = ("1h", "6h", "24h", "7d")
DEFAULT_PRESET = "6h"
TARGET_POINTS = 600
#: Values drawn as separate lines at most (the rest are in the table): a chart of 200 pods reads as noise.
MAX_LINES = 12

esc = common.md_escape
page = header.service_page("Errors")
zone, config, config_key, scrape_s, service = page.zone, page.config, page.config_key, page.scrape_s, page.service
time_range = common.time_range_picker(PRESETS, default=DEFAULT_PRESET, zone=zone, key_prefix="err_",
                                      granularity_s=scrape_s)
header.share_link(time_range, "err_")
if not service:
    st.info("Pick a service in the sidebar.")
    st.stop()

tr = time_range
step = max(scrape_s, int(math.ceil(tr.seconds / TARGET_POINTS / 60.0)) * 60)
tr = common.TimeRange(tr.start // step * step, tr.end // step * step, tr.label)
st.caption(
    f"{common.md_code(service)} · {common.fmt_time(tr.start_dt, zone)} → {common.fmt_time(tr.end_dt, zone)} · "
    f"{zone.note()} Error ratios in %, differences in percentage points (pp)."
)
came_from = common.query_value("deploy")  # opened from a deploy's page: one click back to its evidence
if came_from:
    st.page_link("views/deploy.py", label="Back to the deploy this view was opened from", icon=":material/arrow_back:",
                 query_params={"deploy": came_from, **({"utc": "true"} if zone.chosen else {})})

labels: tuple[str, ...] | None = None
# The first query of the page: a slow Prometheus mid-incident left the page blank under its caption for
# up to prometheus.timeout; the spinner says what is awaited, how long it has waited and the limit.
with common.panel("Labels"), st.spinner(
        f"Asking Prometheus which labels {common.md_code(service)}'s requests carry (it gives up after "
        f"{common.fmt_duration(config.prometheus.timeout_s)}, `prometheus.timeout`)…", show_time=True):
    labels = data.load_error_labels(config_key, config, service, tr.start, tr.end)
if labels is None:  # Prometheus unreachable or the config incomplete: the banner above says what to do
    st.stop()
if not labels:
    st.info(f"No request series for {common.md_code(service)} in this range: check the service name and that Prometheus "
            "scrapes it (the error metric's `exposure` counter in the config).")
    st.stop()
default_label = "version" if "version" in labels else labels[0]
if st.session_state.get("err_by") not in labels:
    st.session_state["err_by"] = default_label
label = st.sidebar.selectbox("Break down by", labels, index=None, key="err_by", bind="query-params",
                             help="Any label of the service's request counter.") or default_label


def pct(x: float) -> str:
    return format_value(x, "ratio")


def p_text(p: float) -> str:
    text = format_p(p)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


# --------------------------------------------------------------------------- who is failing

st.subheader(f"Who is failing? By {common.md_code(label)}")
with common.panel("Who is failing"), st.spinner("Counting errors…"):
    bd = data.load_error_breakdown(config_key, config, service, label, tr.start, tr.end)
    for w in bd.warnings:
        common.plain_warning(f"Prometheus warning: {w}")
    if bd.requests <= 0:
        st.info("No requests counted in this range.")
    else:
        st.markdown(
            f"**{pct(bd.ratio)}** of {bd.requests:,.0f} requests failed ({bd.errors:,.0f} errors) over the range. "
            f"Ranked by how much more of the errors a value holds than of the traffic."
        )
        rows = [
            {
                label: r.value or "(none)",
                "error ratio": pct(r.ratio),
                "95% interval": f"{pct(r.ratio_ci[0])} – {pct(r.ratio_ci[1])}",
                "errors/s": f"{r.error_rate:.3g}",
                "errors": f"{r.errors:,.0f}",
                "requests": f"{r.requests:,.0f}",
                "share of errors": pct(r.error_share),
                "share of traffic": pct(r.traffic_share),
                "excess": f"{r.excess * 100:+.1f} pp",
            }
            for r in bd.rows
        ]
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
        st.caption("The interval assumes independent requests (Wilson score, 95%). PromQL:")
    common.show_query(bd.query)


# --------------------------------------------------------------------------- over time

def _lines(frame: pd.DataFrame, scale: float, y_title: str, deploys: list, verdicts: dict) -> go.Figure:
    fig = go.Figure()
    order = frame.sum().sort_values(ascending=False).index[:MAX_LINES] if not frame.empty else []
    for col in order:
        s = frame[col]
        fig.add_trace(go.Scatter(x=charts.plot_x(s.index, zone), y=s.to_numpy() * scale, mode="lines",
                                 name=str(col) or "(none)", connectgaps=False))
    charts.add_deploy_markers(fig, deploys, verdicts, zone)
    fig.update_xaxes(title_text=f"time ({zone.name})", type="date",
                     range=[charts.local_time(tr.start_dt, zone), charts.local_time(tr.end_dt, zone)])
    fig.update_yaxes(title_text=y_title, rangemode="tozero")
    fig.update_layout(height=320, margin={"l": 10, "r": 10, "t": 30, "b": 10}, legend={"orientation": "h"})
    return fig


st.subheader(f"Error ratio and rate by {common.md_code(label)} over time")
with common.panel("Error series"), st.spinner("Querying the counters…"):
    es = data.load_error_series(config_key, config, service, label, tr.start, tr.end, step)
    try:
        found = data.load_deploys(config.store_url, tr.start, tr.end, None)
        deploys, verdicts = [d for d in found.deploys if d.service == service], found.verdicts
    except Exception as exc:  # noqa: BLE001 - a store failure only loses the markers
        st.warning(common.explain_error(exc, what="Deploy markers"), icon=":material/error:")
        deploys, verdicts = [], {}
    if es.ratio.empty:
        st.info("No request series in this range.")
    else:
        if es.ratio.shape[1] > MAX_LINES:
            st.caption(f"{es.ratio.shape[1]} values: the {MAX_LINES} with the most errors are drawn.")
        for frame, scale, title, key in ((es.ratio, 100.0, "error ratio (%)", "err_ratio"),
                                         (es.error_rate, 1.0, "errors per second (errors/s)", "err_rate")):
            event = st.plotly_chart(_lines(frame, scale, title, deploys, verdicts), key=key, on_select="rerun",
                                    selection_mode="points")
            picked = common.clicked_deploy(event)  # a deploy marker opens that deploy's evidence, as on Latency
            if picked:
                st.switch_page("views/deploy.py", query_params={"deploy": picked})
        st.caption(f"Rate window {es.window}, step {step} s. A gap means no requests (not 0% errors). PromQL:")
    common.show_query(es.query)


# --------------------------------------------------------------------------- BubbleUp

st.subheader("What explains it? (BubbleUp)")
# No format_func: a bound widget writes its *formatted* value into the URL.
kinds = {"errors": "errors", "slow": "slow"}
kind = st.radio("Explain the", list(kinds), horizontal=True, key="bu", bind="query-params",
                help="errors: the failed requests; slow: the requests above the bucket holding the p99.")
histogram = next((m.histogram for m in config.metrics.values() if m.histogram), None) or HTTP_DURATION
with common.panel("BubbleUp"), st.spinner("Comparing every label…"):
    bu = data.load_bubbleup(config_key, config, service, kind or "errors", labels, tr.start, tr.end, histogram)
    for w in bu.warnings:
        common.plain_warning(f"Prometheus warning: {w}")
    what = "failed" if bu.kind == "errors" else f"slower than {format_value(bu.threshold_s, 's')}"
    if bu.n_bad <= 0:
        st.info(f"No requests {what} in this range: nothing to explain.")
    else:
        best = bu.explanation
        if best is not None and best.top is not None:
            t = best.top
            st.markdown(
                f"{common.md_code(best.label)} = {common.md_code(t.value or '(none)')} holds **{pct(t.bad_share)}** of the requests "
                f"{what} but {pct(t.good_share)} of the others ({t.difference * 100:+.1f} pp). "
                f"{common.md_code(best.label)} separates them most: divergence {best.divergence:.2f} "
                f"(sampling alone: {best.noise:.2f}), {p_text(best.p_adjusted)} (Holm)."
            )
        else:
            st.markdown(f"**Nothing stands out**: the requests {what} are spread over every label's values about as "
                        "the other requests are (no label's divergence beyond sampling reaches 0.10).")
        rows = [
            {
                "label": c.label,
                "top value": (c.top.value or "(none)") if c.top else "",
                f"share of {bu.kind}": pct(c.top.bad_share) if c.top else "",
                "share of the rest": pct(c.top.good_share) if c.top else "",
                "difference": f"{c.top.difference * 100:+.1f} pp" if c.top else "",
                "divergence": f"{c.divergence:.3f}",
                "by chance": f"{c.noise:.3f}",
                "p (Holm)": format_p(c.p_adjusted),
                "stands out": "yes" if c.stands_out else "no",
            }
            for c in bu.labels
        ]
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
        st.caption(f"{bu.n_bad:,.0f} requests {what}, {bu.n_good:,.0f} others. Divergence: total variation "
                   "distance between the label's values in the two sets (0 = no difference, 1 = the label alone "
                   "tells them apart); labels are ranked by it less what sampling alone gives. The p-value assumes "
                   "independent requests and never ranks. " + " ".join(f"Skipped {common.md_code(s)}." for s in bu.skipped))
    for q in bu.queries:
        common.show_query(q)
