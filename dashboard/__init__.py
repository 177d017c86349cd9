"""Streamlit dashboard: ``streamlit run dashboard/app.py``.

Layout::

    app.py              entrypoint: page config and st.navigation (Deploys, Deploy detail, Latency)
    views/              one script per page (not ``pages/``: that name triggers Streamlit's
                        legacy automatic page discovery)
    components/common   time zone, URL-bound time ranges, safe text, error banners per panel
    components/charts   Plotly figures (pure: data in, figure out)
    data.py             cached loaders: the only code that reaches the store and Prometheus

No business logic lives here: queries are built and statistics computed by ``analyzers``.
"""
