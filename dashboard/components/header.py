"""The header the per-service drill-down pages (Latency, Errors) share.

Title, the viewer's zone, the configuration (a broken one stops the page with a banner that
says what to do) and the service picker in the sidebar, bound to the URL as ``?svc=``. One
place, so both pages pick, spell and remember the service the same way and a link from one
page opens the same service on the other.
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from analyzers.config import Config
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
