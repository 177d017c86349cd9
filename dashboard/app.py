"""Streamlit entrypoint: ``python -m dashboard`` (imports first, see ``dashboard/__main__.py``)
or ``streamlit run dashboard/app.py``.

Pages (``st.navigation``): Deploys (at ``/`` and ``/deploys``), Deploy detail
(``/deploy?deploy=<id>``, also opened by ``/?deploy=<id>``), Latency, Errors and Service history.
Configuration comes only from ``$ANALYZERS_CONFIG`` / ``$PROMETHEUS_URL`` /
``$DEPLOY_STORE_URL`` (see README): no page lets a viewer choose where the server sends
requests. With ``[auth]`` in ``.streamlit/secrets.toml`` every page asks for sign-in first
(:mod:`dashboard.components.access`).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard.components import access, common

_HERE = Path(__file__).resolve().parent
# Page scripts live in views/, not pages/: Streamlit auto-discovers a pages/ directory (the old
# multipage mode) and can run such a page without this entrypoint for a fresh session.

st.set_page_config(page_title="Deploy verification", page_icon="🚦", layout="wide")

_DEPLOYS = str(_HERE / "views" / "deploys.py")
# Streamlit serves the default page only at "/": a second page on the same script answers
# "/deploys" (the path links and people type) instead of "Page not found".
home_page = st.Page(_DEPLOYS, title="Deploys", icon=":material/rocket_launch:", url_path="home", default=True)
deploys_page = st.Page(_DEPLOYS, title="Deploys", icon=":material/rocket_launch:", url_path="deploys")
deploy_page = st.Page(str(_HERE / "views" / "deploy.py"), title="Deploy detail", icon=":material/fact_check:", url_path="deploy")
latency_page = st.Page(str(_HERE / "views" / "latency.py"), title="Latency", icon=":material/speed:", url_path="latency")
errors_page = st.Page(str(_HERE / "views" / "errors.py"), title="Errors", icon=":material/error:", url_path="errors")
history_page = st.Page(str(_HERE / "views" / "history.py"), title="Service history", icon=":material/history:", url_path="history")

page = st.navigation([home_page, deploys_page, deploy_page, latency_page, errors_page, history_page], position="hidden")
if not access.signed_in_or_prompt():
    st.stop()
for link in (deploys_page, deploy_page, latency_page, errors_page, history_page):
    st.sidebar.page_link(link)
common.zone_switch()
access.sign_out_button()
# Reports and chat messages link to `/deploy?deploy=<id>`; a bare `/?deploy=<id>` opens it too.
if page.url_path in ("", deploys_page.url_path) and "deploy" in st.query_params:
    st.switch_page(deploy_page, query_params={"deploy": st.query_params["deploy"]})
page.run()
