"""Deploys: the timeline of deploys per service coloured by verdict, and the table below it.

Filters (service, environment, time range) sit in the sidebar and are bound to the URL,
so a copied link reopens the same view. Clicking a point or a row opens the deploy page.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import data
from dashboard.components import charts, common

DEPLOY_PAGE = "views/deploy.py"
ALL_ENVIRONMENTS = "(all)"
VERDICT_STATES = ("fail", "inconclusive", "pass", "unverified")
#: Up to this many rows the grid is as tall as its rows (every row visible without scrolling).
FULL_HEIGHT_ROWS = 250

zone = common.viewer_zone()
st.title("Deploys")
st.caption(
    f"{zone.note()} Colours: pass green, fail red, inconclusive amber, not yet verified open grey. "
    "Diamonds are releases (feature flags), circles deploys; a cross marks an unsigned event."
)

try:
    config = data.get_config()
except Exception as exc:  # noqa: BLE001 - a broken config file gets a banner, not a traceback
    st.error(common.explain_error(exc, what="Loading the configuration"), icon=":material/error:")
    st.stop()

time_range = common.time_range_picker(("24h", "3d", "7d", "30d"), default="7d", zone=zone)

environments: list[str] = []
with common.panel("Listing environments"):
    environments = data.load_environments(config.store_url, time_range.start, time_range.end)
env_options = [ALL_ENVIRONMENTS, *sorted(set(environments) | {s.environment for s in config.services.values()
                                                              if s.environment})]
environment = st.sidebar.selectbox("Environment", env_options, key="env", bind="query-params")
env_filter = None if environment == ALL_ENVIRONMENTS else environment

deploy_list: data.DeployList | None = None
with common.panel("Loading deploys"), st.spinner("Loading deploys…"):
    deploy_list = data.load_deploys(config.store_url, time_range.start, time_range.end, env_filter)

service_options = sorted(set(config.services) | ({d.service for d in deploy_list.deploys} if deploy_list else set()))
services = st.sidebar.multiselect(
    "Services", service_options, key="service", bind="query-params", placeholder="All services"
)

if deploy_list is None:
    st.stop()

verdict_filter = st.sidebar.multiselect(
    "Verdict", VERDICT_STATES, key="verdict", bind="query-params", placeholder="All verdicts",
    help="Show only deploys with these verdicts (unverified: no verdict stored yet).",
)
verdicts = deploy_list.verdicts
deploys = [
    d for d in deploy_list.deploys
    if (not services or d.service in services)
    and (not verdict_filter or charts.verdict_state(verdicts.get(d.deploy_id)) in verdict_filter)
]
if deploy_list.truncated:
    st.warning("Only the newest deploys of this range are shown: narrow the time range or the filters.")

states = [charts.verdict_state(verdicts.get(d.deploy_id)) for d in deploys]
c1, c2, c3, c4, c5 = st.columns(5)
c1.metric("Deploys", len(deploys))
c2.metric("Failed", states.count("fail"))
c3.metric("Inconclusive", states.count("inconclusive"))
c4.metric("Passed", states.count("pass"))
c5.metric("Not verified yet", states.count("unverified"))

if not deploys:
    st.info(
        f"No deploys between {common.fmt_time(time_range.start_dt, zone)} and "
        f"{common.fmt_time(time_range.end_dt, zone)} for these filters. Widen the time range, or send "
        f"deploy events to the receiver (see {common.doc_ref('send_events')})."
    )
    st.stop()

with common.panel("Drawing the timeline"):
    fig = charts.deploy_timeline(deploys, verdicts, zone, start=time_range.start_dt, end=time_range.end_dt)
    event = st.plotly_chart(fig, key="timeline", on_select="rerun", selection_mode="points")
    picked = common.clicked_deploy(event)
    if picked:
        st.switch_page(DEPLOY_PAGE, query_params={"deploy": picked})

rows = []
for d in deploys:
    v = verdicts.get(d.deploy_id)
    rows.append(
        {
            "open": common.deploy_link(d.deploy_id),
            "service": d.service,
            "environment": d.environment,
            "version": d.version,
            "kind": d.kind,
            "status": d.status,
            f"started at ({zone.name})": common.fmt_time(d.started_at, zone),
            "verdict": charts.verdict_state(v),
            "reason": common.localize_times(v.reason, zone) if v else "not verified yet",
            "signed": "yes" if d.signed else "NO",
        }
    )
table = pd.DataFrame(rows)
st.subheader(f"All {len(table)} deploys in range")
selection = st.dataframe(
    table,
    hide_index=True,
    # Every row shown (no inner scrolling hiding the 11th), the link first so it is never cut off.
    height="content" if len(table) <= FULL_HEIGHT_ROWS else "auto",
    key="deploy_table",
    on_select="rerun",
    selection_mode="single-row",
    column_config={
        "open": st.column_config.LinkColumn("open", display_text="details", help="Open the deploy page",
                                            width="small", pinned=True),
        "reason": st.column_config.TextColumn("reason", width="large"),
    },
)
chosen = getattr(getattr(selection, "selection", None), "rows", None) or []
if chosen:
    st.switch_page(DEPLOY_PAGE, query_params={"deploy": deploys[chosen[0]].deploy_id})
