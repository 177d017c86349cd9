"""Launcher: ``python -m dashboard [streamlit run options]``.

Same as ``streamlit run dashboard/app.py [options]`` (which keeps working), except that the heavy
modules every page needs (pandas, SciPy, Plotly, the ``analyzers`` pipelines and the dashboard's
own components) are imported *before* the server opens its port. A plain ``streamlit run`` answers
``/_stcore/health`` at once and makes the first visitor of a just-started process wait for those
imports (about 1.4 s of CPU); here the health check answers only once they are done, so whoever
waits for it (the demo, docker-compose, a load balancer) hands visitors a ready process.

Streamlit runs in this same process (``streamlit.web.cli``, as ``python -m streamlit`` does), so
the modules imported here are the ones the page scripts get from ``sys.modules``.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import sys
import time
from pathlib import Path

APP = Path(__file__).resolve().parent / "app.py"

#: Imported before the server starts, in this order: third-party libraries first, then the
#: dashboard modules (which import the ``analyzers`` layers they use). A page script imports
#: nothing heavy that is not here.
PRELOAD = (
    "numpy",
    "pandas",
    "scipy.stats",
    "plotly.graph_objects",
    "plotly.subplots",
    "plotly.io",
    "streamlit",
    # what Streamlit itself imports on its first script run: the emoji table that checks
    # set_page_config's page_icon (0.3 s), the Material icon names of the page links, script magic,
    # and the Arrow/narwhals glue of st.dataframe
    "streamlit.emojis",
    "streamlit.material_icon_names",
    "streamlit.runtime.scriptrunner.magic_funcs",
    "pyarrow.pandas_compat",
    "narwhals._interchange.dataframe",
    "netrc",  # requests reads ~/.netrc on its first request (the Prometheus client)
    "analyzers.stats",
    "analyzers.prometheus",
    "analyzers.prometheus.client",
    "analyzers.events.store",
    "analyzers.events.store.sqlite",
    "analyzers.events.combined",
    "analyzers.drilldown",
    "analyzers.drilldown.exemplars",
    "analyzers.verify.deploy",
    "analyzers.verify.dora",
    "analyzers.verify.fetch",
    "analyzers.verify.plan",
    "analyzers.delivery.reports",
    "dashboard.data",
    "dashboard.exemplars",
    "dashboard.components.access",
    "dashboard.components.blocks",
    "dashboard.components.change_metrics",
    "dashboard.components.charts",
    "dashboard.components.common",
    "dashboard.components.compare",
    "dashboard.components.figures",
    "dashboard.components.header",
    "dashboard.components.latency_charts",
    "dashboard.components.percentile_chart",
)


class _NoRuntimeWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "No runtime found" not in record.getMessage()


def preload(modules: tuple[str, ...] = PRELOAD) -> float:
    """Import ``modules`` and warm Plotly's figure validators (loaded lazily on the first figure
    otherwise); returns the seconds it took."""
    start = time.perf_counter()
    # Decorating a function with st.cache_data outside a running server only checks its options
    # (the cache itself is made on first use, by the server's runtime) but logs a warning per
    # function: not worth an operator's attention.
    quiet = logging.getLogger("streamlit.runtime.caching.cache_data_api")
    no_runtime = _NoRuntimeWarning()
    quiet.addFilter(no_runtime)
    try:
        for name in modules:
            importlib.import_module(name)
    finally:
        quiet.removeFilter(no_runtime)
    import plotly.graph_objects as go

    # Plotly builds each trace type's property validators on first use: a Deploy page's first
    # chart would pay for it. One throwaway figure of the trace types the pages draw.
    fig = go.Figure([go.Scatter(x=[0, 1], y=[0, 1]), go.Bar(x=[0], y=[1])])
    fig.update_layout(xaxis={"type": "date"}, shapes=[{"type": "line", "x0": 0, "x1": 1, "y0": 0, "y1": 1}])
    fig.to_json()
    # Streamlit's first element of the process checks whether it runs in a REPL with
    # inspect.stack(), which maps every loaded module's file to its real path (thousands of
    # lstat calls: 0.2-0.4 s with the modules above loaded). inspect caches that map, so
    # building it here leaves the first page only the modules it imports itself.
    inspect.stack()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    """Preload, then hand ``argv`` (``streamlit run`` options) to Streamlit's own command line."""
    args = list(sys.argv[1:] if argv is None else argv)
    took = preload()
    print(f"dashboard: imported {len(PRELOAD)} modules in {took:.2f} s; starting Streamlit", flush=True)
    from streamlit.web import cli

    cli.main(["run", str(APP), *args], prog_name="streamlit")


if __name__ == "__main__":
    main()
