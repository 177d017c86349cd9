"""Launcher: ``python -m dashboard [streamlit run options]``.

Same as ``streamlit run dashboard/app.py [options]`` (which keeps working), except that the heavy
modules every page needs (pandas, SciPy, Plotly, the ``analyzers`` pipelines and the dashboard's
own components) are imported *before* the server opens its port. A plain ``streamlit run`` answers
``/_stcore/health`` at once and makes the first visitor of a just-started process wait for those
imports (about 1.4 s of CPU); here the health check answers only once they are done, so whoever
waits for it (the demo, docker-compose, a load balancer) hands visitors a ready process.

Then it warms what a fresh process still pays on its first script run (:mod:`dashboard.warmup`:
one run of the Latency page under Streamlit's ``AppTest`` with no network, and a frozen heap), so
the first visitor of a just-started process waits no longer than the next one. A failed warm-up
is logged and the dashboard starts anyway.

Streamlit runs in this same process (``streamlit.web.cli``, as ``python -m streamlit`` does), so
the modules imported here are the ones the page scripts get from ``sys.modules``.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys
import time
from pathlib import Path

APP = Path(__file__).resolve().parent / "app.py"

#: The preload's hand-kept list, imported before the server starts, in this order, then
#: :func:`own_modules` (found by walking the package, no list): the third-party libraries, modules
#: of Streamlit's own that it imports lazily on its first script run, and the ``analyzers`` modules
#: the dashboard imports inside functions (the dashboard's own modules import the rest). A page
#: script imports nothing heavy that is not preloaded (a test checks).
PRELOAD_LIST = (
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
)
#: Modules of the ``dashboard`` package that are not imported as modules: the launcher itself and
#: its warm-up, and the scripts Streamlit runs (importing one would run a page).
NOT_PRELOADED = ("dashboard.__main__", "dashboard.warmup", "dashboard.app")
SCRIPT_PACKAGES = ("dashboard.views",)


def own_modules() -> tuple[str, ...]:
    """The dashboard's own modules (``dashboard.data``, ``dashboard.components.*``, ...), found by
    walking the package, so a new component is preloaded without a list to keep."""
    import dashboard

    found = [m.name for m in pkgutil.walk_packages(dashboard.__path__, "dashboard.")]
    return tuple(sorted(name for name in found if name not in NOT_PRELOADED and name not in SCRIPT_PACKAGES
                        and not name.startswith(tuple(p + "." for p in SCRIPT_PACKAGES))))


def preloaded() -> tuple[str, ...]:
    """Every module the launcher imports: :data:`PRELOAD_LIST`, then :func:`own_modules`."""
    return (*PRELOAD_LIST, *own_modules())


def preload(modules: tuple[str, ...] | None = None) -> float:
    """Import ``modules`` (default: :func:`preloaded`) and warm Plotly's figure validators (loaded
    lazily on the first figure otherwise); returns the seconds it took."""
    start = time.perf_counter()
    # Decorating a function with st.cache_data outside a running server only checks its options
    # (the cache itself is made on first use, by the server's runtime) but logs a warning per
    # function: not worth an operator's attention (the warm-up's filter, :func:`dashboard.warmup.quiet`).
    from dashboard.warmup import quiet

    with quiet():
        for name in modules if modules is not None else preloaded():
            importlib.import_module(name)
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
    modules = preloaded()  # the package walked once per start
    took = preload(modules)
    print(f"dashboard: imported {len(modules)} modules in {took:.2f} s", flush=True)
    try:
        from dashboard import warmup

        warmed = warmup.warm_up()
    except Exception as exc:  # noqa: BLE001 - the warm-up only saves the first visitor time
        print(f"dashboard: warm-up failed ({type(exc).__name__}: {exc}); starting Streamlit anyway", flush=True)
    else:
        print(f"dashboard: warmed in {warmed:.2f} s; starting Streamlit" if warmed is not None
              else "dashboard: warm-up incomplete (see the warning above); starting Streamlit anyway", flush=True)
    from streamlit.web import cli

    cli.main(["run", str(APP), *args], prog_name="streamlit")


if __name__ == "__main__":
    main()
