"""The header the per-service drill-down pages (Latency, Errors) share.

Title, the viewer's zone, the configuration (a broken one stops the page with a banner that
says what to do) and the service picker in the sidebar, bound to the URL as ``?svc=``. One
place, so both pages pick, spell and remember the service the same way and a link from one
page opens the same service on the other. :func:`drilldown_links` are the Deploy page's way in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

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
        # No widget default (index=None) and the first service seeded instead: a bound widget drops
        # its parameter from the URL when it equals the default, and a default that depends on which
        # services exist would make shared links drift.
        if st.session_state.get("svc") not in services:
            st.session_state["svc"] = services[0]
        service = st.sidebar.selectbox("Service", services, index=None, key="svc", bind="query-params") or ""
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
