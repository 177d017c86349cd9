"""Change metrics of one service (deploy frequency, change failure rate, time to restore).

The Service history page's "Change metrics" section: the last 30 days as three numbers and
the last 8 weeks as a trend chart, computed by :mod:`analyzers.verify.dora` from the store
(definitions in docs/progressive-delivery.md). Week bounds are drawn in the viewer's zone.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from analyzers.verify.dora import ChangeMetrics, change_metrics, weekly_trend
from dashboard.components import charts, common

#: Weeks in the trend chart.
TREND_WEEKS = 8
#: New deploys and verdicts change the figures within this delay.
TTL_S = 15


@st.cache_data(ttl=TTL_S, show_spinner=False)
def load(store_url: str, service: str, now_min: int) -> tuple[ChangeMetrics | None, list[ChangeMetrics]]:
    """Last 30 days and the weekly trend, ``now`` rounded down to the minute (cache key)."""
    from analyzers.events.store import open_store

    now = datetime.fromtimestamp(now_min * 60, tz=UTC)
    store = open_store(store_url)
    try:
        since = now - timedelta(weeks=TREND_WEEKS)
        deploys = store.list_deploys(service=service, since=min(since, now - timedelta(days=30)), limit=100000)
        verdicts = store.latest_verdicts([d.deploy_id for d in deploys]) if deploys else {}
    finally:
        store.close()
    month = change_metrics(deploys, verdicts, start=now - timedelta(days=30), end=now).get(service)
    return month, weekly_trend(deploys, verdicts, end=now, weeks=TREND_WEEKS, service=service)


def _hours(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    return f"{seconds / 60:.0f} min" if seconds < 3600 else f"{seconds / 3600:.1f} h"


def trend_chart(trend: list[ChangeMetrics], zone: common.ViewerZone) -> go.Figure:
    """Deploys per week (bars) and change failure rate (line, right axis) by week start."""
    x = charts.plot_x([m.start for m in trend], zone)
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Bar(x=x, y=[m.deploys for m in trend], name="deploys per week",
                         hovertemplate="%{y} deploys<extra></extra>"), secondary_y=False)
    cfr = [None if m.change_failure_rate is None else 100 * m.change_failure_rate for m in trend]
    fig.add_trace(go.Scatter(x=x, y=cfr, name="change failure rate (%)", mode="lines+markers",
                             hovertemplate="%{y:.0f}% failed<extra></extra>"), secondary_y=True)
    fig.update_layout(height=300, margin={"l": 10, "r": 10, "t": 30, "b": 10},
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0})
    fig.update_xaxes(title_text=f"week starting ({zone.name})", type="date")
    fig.update_yaxes(title_text="deploys per week", secondary_y=False, rangemode="tozero")
    fig.update_yaxes(title_text="change failure rate (%)", secondary_y=True, range=[0, 100])
    return fig


def render(store_url: str, service: str, zone: common.ViewerZone, *, now: datetime | None = None) -> None:
    """The section: three numbers for the last 30 days, then the weekly trend."""
    st.subheader("Change metrics")
    now = now or datetime.now(UTC)
    try:
        month, trend = load(store_url, service, int(now.timestamp() // 60))
    except Exception as exc:  # noqa: BLE001 - the store may be down: say so, keep the page
        st.error(common.explain_error(exc, what="Loading the change metrics"), icon=":material/error:")
        return
    if month is None or month.deploys == 0:
        st.caption(f"No deploys of {service} in the last 30 days: nothing to measure yet.")
    else:
        cols = st.columns(3)
        cols[0].metric("Deploys per day (30 d)", f"{month.deploys_per_day:.2f}", help=f"{month.deploys} deploys in 30 days")
        cfr = month.change_failure_rate
        cols[1].metric("Change failure rate (30 d)", "n/a" if cfr is None else f"{100 * cfr:.0f}%",
                       help=f"{month.failures} of {month.deploys} failed (fail verdict) or were rolled back")
        cols[2].metric("Median time to restore (30 d)", _hours(month.median_restore_s),
                       help=f"{month.restored} restored (next pass or rollback), {month.open_failures} still open")
    st.plotly_chart(trend_chart(trend, zone), key="change_metrics_trend")
    st.caption("Failures: a fail verdict (canary or before/after) or a rollback. Restored: the next deploy that "
               "passed, or the rollback. Definitions: docs/progressive-delivery.md.")
