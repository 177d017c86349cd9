"""The header the per-service drill-down pages (Latency, Errors) share.

Title, the viewer's zone, the configuration (a broken one stops the page with a banner that
says what to do) and the service picker in the sidebar, always in the URL as ``?svc=``. One
place, so both pages pick, spell and remember the service the same way and a link from one
page opens the same service on the other. :func:`drilldown_links` are the Deploy page's way in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import streamlit as st

from analyzers.config import Config
from analyzers.model import Deploy
from dashboard import data
from dashboard.components import common


@dataclass(frozen=True)
class ServicePage:
    """What a service page needs from its header."""

    zone: common.ViewerZone
    config: Config
    #: Cache key standing for the whole configuration (:func:`dashboard.data.fingerprint`).
    config_key: str
    #: Prometheus scrape interval (s): the finest step and range granularity worth asking for.
    scrape_s: int
    #: The picked service ("" when none is known and none typed yet).
    service: str


def known_services(config: Config) -> list[str]:
    """Services named in the configuration or with a stored deploy, sorted; a store failure only
    narrows the options (the page's own panels show the store banner if it matters)."""
    names = set(config.services)
    try:
        names |= set(data.load_services(config.store_url))
    except Exception:  # noqa: BLE001 - the options only
        pass
    return sorted(names)


def service_page(title: str) -> ServicePage:
    """Draw the page title and the sidebar's service picker; stop the page on a broken config."""
    zone = common.viewer_zone()
    st.title(title)
    try:
        config = data.get_config()
    except Exception as exc:  # noqa: BLE001 - a broken config file gets a banner, not a traceback
        st.error(common.explain_error(exc, what="Loading the configuration"), icon=":material/error:")
        st.stop()
    services = known_services(config)
    if services:
        service = common.url_selectbox("Service", services, key="svc", container=st.sidebar)
    else:
        service = st.sidebar.text_input(
            "Service", key="svc", bind="query-params",
            help="The value of the `service` label; no deploys are stored yet to list the services.",
        ).strip()
    return ServicePage(zone, config, data.fingerprint(config), int(config.prometheus.scrape_interval_s), service)


def drilldown_links(deploy: Deploy, zone: common.ViewerZone) -> None:
    """The Deploy page's links into the drill-downs, on the six hours around the deploy (kept in the
    URL in UTC, so a pasted link means the same instants anywhere) and in the viewer's UTC choice:
    the Latency page's before/after of this deploy, and the Errors page by version ("errors are
    up"), which links back to the deploy."""
    around_from = common.url_time(deploy.started_at - timedelta(hours=3))
    around_to = common.url_time(min(deploy.started_at + timedelta(hours=3), datetime.now(UTC)))
    utc = {common.UTC_PARAM: "true"} if zone.chosen else {}
    st.page_link(
        "views/latency.py",
        label="Latency around this deploy (percentiles, before/after)",
        icon=":material/speed:",
        query_params={
            "svc": deploy.service, "lat_range": "custom", "lat_from": around_from, "lat_to": around_to,
            "deploy": deploy.deploy_id,
            "panel": "Before / after",  # the Latency page's tab comparing this deploy's verdict windows
            **utc,
        },
    )
    st.page_link(
        "views/errors.py",
        label="Errors around this deploy (who is failing, by version)",
        icon=":material/error:",
        query_params={"svc": deploy.service, "err_range": "custom", "err_from": around_from, "err_to": around_to,
                      "err_by": "version", "deploy": deploy.deploy_id, **utc},
    )


def fixed_time_link(tr: common.TimeRange, key_prefix: str) -> str:
    """This page's URL with its range pinned: ``{prefix}range=custom`` and the range's start and end in
    UTC minutes, every other parameter kept (the service, the breakdown, the open tab, ``utc``) except
    ``live`` (auto-refresh moves the range). A preset such as "last 6h" is relative to the opener's
    clock; this link opens the same instants for anyone, in any zone, at any later time."""
    own = {f"{key_prefix}range", f"{key_prefix}from", f"{key_prefix}to", "live"}
    pairs = [(k, v) for k in st.query_params if k not in own for v in st.query_params.get_all(k)]
    pairs += [(f"{key_prefix}range", "custom"), (f"{key_prefix}from", common.url_time(tr.start_dt)),
              (f"{key_prefix}to", common.url_time(tr.end_dt + timedelta(seconds=59)))]
    try:
        base = (st.context.url or "").split("?", 1)[0]
    except Exception:  # noqa: BLE001 - outside a browser session (tests, the warm-up): a relative link
        base = ""
    return f"{base}?{urlencode(pairs)}"


def share_link(tr: common.TimeRange, key_prefix: str) -> None:
    """The sidebar's "link with these exact times" for the incident channel (copy button included)."""
    with st.sidebar.expander("Link with these exact times", icon=":material/link:"):
        st.code(fixed_time_link(tr, key_prefix), language=None, wrap_lines=True)
        st.caption("A preset range (last 6h) moves with the clock of whoever opens it; this link keeps these "
                   "instants (UTC in the link) and shows them in each viewer's zone.")
