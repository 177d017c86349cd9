"""History: the last N deploys of one service with their verdicts and effect sizes.

Answers "has this service been getting slower release by release?" and "which release
moved the error ratio?" at a glance. The service and N are in the URL.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from analyzers.model import MetricVerdict
from analyzers.text import format_delta, format_relative
from dashboard import data
from dashboard.components import change_metrics, common

zone = common.viewer_zone()
st.title("Service history")
st.caption(f"{zone.note()} Effects are the shift at each deploy in the metric's unit (a ratio's in percentage "
           "points, pp), then the relative change of the before level in %.")


def effect_cell(mv: MetricVerdict) -> str:
    """``regressed: +3.93 pp (+747.0%)``: the outcome, the shift with its unit, the relative change;
    a canary-only result: ``regressed (canary): x8.24`` (canary's rate over the baseline's)."""
    r = mv.result or {}
    if mv.role == "canary":
        from analyzers.text import format_number

        ratio = r.get("ratio")
        return f"{mv.outcome} (canary): " + ("n/a" if ratio is None else f"x{format_number(ratio, 3)}")
    out = f"{mv.outcome}: {format_delta(r.get('effect'), mv.unit)}"
    if r.get("effect_rel") is not None:
        out += f" ({format_relative(r['effect_rel'])})"
    return out


try:
    config = data.get_config()
except Exception as exc:  # noqa: BLE001 - a broken config file gets a banner, not a traceback
    st.error(common.explain_error(exc, what="Loading the configuration"), icon=":material/error:")
    st.stop()

stored: list[str] | None = None
with common.panel("Listing services"):
    stored = data.load_services(config.store_url)
if stored is None:  # the store is down: the banner above says so; never "no deploys stored yet"
    st.stop()
services = sorted(set(config.services) | set(stored))
if not services:
    st.info(f"No deploys stored yet: send deploy events to the receiver (see {common.doc_ref('send_events')}).")
    st.stop()
service = common.url_selectbox("Service", services, key="hist_svc", container=st.sidebar)
limit = st.sidebar.selectbox("Last N deploys", (10, 20, 50, 100), index=1, key="hist_n", bind="query-params")

history: data.DeployList | None = None
with common.panel("Loading the history"), st.spinner("Loading deploys…"):
    history = data.load_service_history(config.store_url, service, int(limit))
if history is None:
    st.stop()
if not history.deploys:
    common.banner("info", common.plain_html(f"No deploys of {service} stored yet."))
    st.stop()

metric_keys: list[str] = []
for v in history.verdicts.values():
    for m in v.metrics:
        if m.metric not in metric_keys:
            metric_keys.append(m.metric)

rows: list[dict[str, Any]] = []
for d in history.deploys:
    latest = history.verdicts.get(d.deploy_id)
    row: dict[str, Any] = {
        f"started ({zone.name})": common.fmt_time(d.started_at, zone),
        "version": d.version,
        "kind": d.kind,
        "verdict": latest.overall if latest else "not verified",
        "open": common.deploy_link(d.deploy_id),
    }
    # a verdict with a canary check holds each metric twice: the before/after one carries the effect
    by_metric: dict[str, MetricVerdict] = {}
    for mv in latest.metrics if latest else ():
        if mv.metric not in by_metric or by_metric[mv.metric].role == "canary":
            by_metric[mv.metric] = mv
    for key in metric_keys:
        found = by_metric.get(key)
        row[key] = effect_cell(found) if found is not None else ""
    rows.append(row)

counts = pd.Series([r["verdict"] for r in rows]).value_counts()
cols = st.columns(4)
for col, name in zip(cols, ("pass", "fail", "inconclusive", "not verified"), strict=True):
    col.metric(name.capitalize(), int(counts.get(name, 0)))
st.dataframe(
    pd.DataFrame(rows),
    hide_index=True,
    height="content",
    key="history_table",
    column_config={"open": st.column_config.LinkColumn("deploy page", display_text="open", pinned=True)},
)
if history.truncated:
    st.caption(f"Showing the newest {limit} deploys; raise N in the sidebar for more.")

change_metrics.render(config.store_url, service, zone)
