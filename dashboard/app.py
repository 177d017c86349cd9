"""Streamlit entrypoint: ``streamlit run dashboard/app.py``.

Pages (``st.navigation``): Deploys (default), Deploy detail (``/deploy?deploy=<id>``, also
opened by ``/?deploy=<id>``) and Latency. Configuration comes only from
``$ANALYZERS_CONFIG`` / ``$PROMETHEUS_URL`` / ``$DEPLOY_STORE_URL`` (see README): no page
lets a viewer choose where the server sends requests.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:  # `streamlit run dashboard/app.py` only puts dashboard/ on the path
    sys.path.insert(0, str(_ROOT))

_HERE = Path(__file__).resolve().parent
# Page scripts live in views/, not pages/: Streamlit auto-discovers a pages/ directory (the old
# multipage mode) and can run such a page without this entrypoint for a fresh session.

st.set_page_config(page_title="Deploy verification", page_icon="🚦", layout="wide")

deploys_page = st.Page(
    str(_HERE / "views" / "deploys.py"), title="Deploys", icon=":material/rocket_launch:", url_path="deploys", default=True
)
deploy_page = st.Page(str(_HERE / "views" / "deploy.py"), title="Deploy detail", icon=":material/fact_check:", url_path="deploy")
latency_page = st.Page(str(_HERE / "views" / "latency.py"), title="Latency", icon=":material/speed:", url_path="latency")
history_page = st.Page(str(_HERE / "views" / "history.py"), title="Service history", icon=":material/history:", url_path="history")

page = st.navigation([deploys_page, deploy_page, latency_page, history_page])
# Reports and chat messages link to `/deploy?deploy=<id>`; a bare `/?deploy=<id>` opens it too.
if page.title == deploys_page.title and "deploy" in st.query_params:
    st.switch_page(deploy_page, query_params={"deploy": st.query_params["deploy"]})
page.run()
