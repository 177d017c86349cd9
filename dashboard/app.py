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

st.set_page_config(page_title="Deploy verification", page_icon="🚦", layout="wide")

# A bare `/?deploy=<id>` link (as reports and chat messages build it) opens the deploy page;
# `/deploy?deploy=<id>` works too (the default page keeps its own path as well).
_wants_deploy = "deploy" in st.query_params

deploys_page = st.Page(
    str(_HERE / "pages" / "deploys.py"), title="Deploys", icon=":material/rocket_launch:", url_path="deploys", default=not _wants_deploy
)
deploy_page = st.Page(
    str(_HERE / "pages" / "deploy.py"), title="Deploy detail", icon=":material/fact_check:", url_path="deploy", default=_wants_deploy
)
latency_page = st.Page(str(_HERE / "pages" / "latency.py"), title="Latency", icon=":material/speed:", url_path="latency")

st.navigation([deploys_page, deploy_page, latency_page]).run()
