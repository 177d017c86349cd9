"""Streamlit dashboard: ``python -m dashboard`` (or ``streamlit run dashboard/app.py``).

Layout::

    __main__.py         launcher: imports the heavy modules, then runs app.py in Streamlit
    app.py              entrypoint: page config, sign-in gate, st.navigation, the UTC switch
    views/              one script per page (not ``pages/``: that name triggers Streamlit's
                        legacy automatic page discovery)
    components/common   time zone (browser or ?utc=true), URL-bound time ranges, error banners per panel
    components/blocks   plain-text banners for event text, help references checked against the docs
    components/access   optional OIDC sign-in ([auth] secrets), read-only unless allow_actions
    components/compare  the Latency page's before/after panel (the verdict's windows)
    components/charts   Plotly figures (pure: data in, figure out)
    data.py             cached loaders: the only code that reaches the store and Prometheus

No business logic lives here: queries are built and statistics computed by ``analyzers``.
"""
