"""The launcher's warm-up: one run of the Latency page in this process before the port opens.

Importing the modules (:func:`dashboard.__main__.preload`) is not all a fresh process pays on its
first script run: Streamlit compiles and inspects on first use (its element machinery, the
``st.cache_data`` argument hashing, the page links, the component's registration), pandas builds
its string arrays' Arrow glue on the first frame of text, the percentile chart's payload code
runs for the first time, and Streamlit's post-run ``gc.collect(2)`` walks every object the imports
left (0.07-0.5 s, on the path of the run's last message). :func:`warm_up` pays all of that once,
in the launcher:

* the app (``dashboard/app.py``) runs once under Streamlit's ``AppTest`` on the Latency page,
  against a Prometheus URL where nothing listens and an empty SQLite store in a temporary
  directory: no network, nothing waited for, and the page's error paths (a banner) run as a
  visitor's would when Prometheus is down;
* the percentile chart's payload is built from a small synthetic series (the page above has no
  data to build it from);
* every ``st.cache_data``/``st.cache_resource`` entry made meanwhile is dropped (they were keyed on
  the warm-up's own configuration, so no visitor could have hit them, but nothing of it stays);
* ``inspect``'s module-file map is rebuilt (Streamlit's first element checks for a REPL with
  ``inspect.stack()``) and the heap is collected once and frozen (``gc.freeze``): the objects of
  the imports move to the permanent generation, which Streamlit's collection after every run no
  longer walks.

It must never keep the dashboard from starting: any failure is logged and the launcher goes on,
and the page run is bounded by :data:`TIMEOUT_S`.
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import logging
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

APP = Path(__file__).resolve().parent / "app.py"
#: Upper bound of the warm-up's page run (it takes about 0.3-0.6 s of CPU on the project's machine).
TIMEOUT_S = 10.0
#: What the warm-up's page run opens (a link's query string): a day of four percentiles.
QUERY = {"lat_range": "24h", "pct": ["p50", "p90", "p99", "p99.9"]}
log = logging.getLogger("dashboard.warmup")
#: Streamlit's warnings about running outside its server, which is what the warm-up does on purpose.
_EXPECTED = (("streamlit.runtime.scriptrunner_utils.script_run_context", "missing ScriptRunContext"),
             ("streamlit.runtime.caching.cache_data_api", "No runtime found"),
             ("streamlit.runtime.caching.cache_resource_api", "No runtime found"))


class _Drop(logging.Filter):
    """Drops records whose message contains ``text``; with ``once``, only the first, then detaches."""

    def __init__(self, logger: logging.Logger, text: str, once: bool = False) -> None:
        super().__init__()
        self.logger, self.text, self.once = logger, text, once

    def filter(self, record: logging.LogRecord) -> bool:
        if self.text not in record.getMessage():
            return True
        if self.once:
            self.logger.removeFilter(self)
        return False


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Streamlit's expected warnings (see :data:`_EXPECTED`) left out of the log inside the block."""
    filters = [_Drop(logging.getLogger(name), text) for name, text in _EXPECTED]
    for f in filters:
        f.logger.addFilter(f)
    try:
        yield
    finally:
        for f in filters:
            f.logger.removeFilter(f)


def closed_url() -> str:
    """A loopback URL where nothing listens: a port the kernel just handed out and took back."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def environment(**values: str | None) -> Iterator[None]:
    """``os.environ`` with ``values`` set (``None``: unset) inside the block, restored after it."""
    saved = {k: os.environ.get(k) for k in values}
    try:
        _set_environ(values)
        yield
    finally:
        _set_environ(saved)


def _set_environ(values: dict[str, str | None]) -> None:
    for k, v in values.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def run_page(timeout_s: float = TIMEOUT_S) -> None:
    """The app once on the Latency page, with an unreachable Prometheus and an empty store."""
    from streamlit.testing.v1 import AppTest

    from analyzers.events.store import open_store

    with tempfile.TemporaryDirectory(prefix="dashboard-warmup-") as tmp, environment(
        ANALYZERS_CONFIG=None, PROMETHEUS_URL=closed_url(), DEPLOY_STORE_URL=f"sqlite:///{Path(tmp) / 'warm-up.db'}",
    ):
        open_store(os.environ["DEPLOY_STORE_URL"]).close()  # the pages never create a store: an empty one here
        at = AppTest.from_file(str(APP), default_timeout=timeout_s)
        at.context = {"timezone": "UTC"}
        at.query_params.update(QUERY)
        at.switch_page("views/latency.py").run()
        if at.exception:
            raise RuntimeError(f"the Latency page raised: {at.exception[0].message}")


def build_chart() -> None:
    """The percentile chart's payload from a synthetic hour of one percentile (no query, no element)."""
    import numpy as np
    import pandas as pd

    from dashboard.components import common, percentile_chart

    end = datetime(2026, 1, 1, tzinfo=UTC)
    idx = pd.date_range(end - timedelta(hours=1), end, freq="1min")
    value = np.linspace(0.01, 0.02, len(idx))
    frame = pd.DataFrame({"value": value, "lower": value * 0.5, "upper": value * 2}, index=idx)
    zone = common.ViewerZone(ZoneInfo("UTC"), "UTC", from_browser=True)  # as a browser in UTC reports it
    percentile_chart.payload({"p99": frame}, zone, x_range=(idx[0].to_pydatetime(), end), step_s=60.0)
    pd.DataFrame({"text": ["a", "b"]})  # pandas' string dtype's first frame


def clear_caches() -> None:
    import streamlit as st

    st.cache_data.clear()
    st.cache_resource.clear()


def warm_up(timeout_s: float = TIMEOUT_S) -> float | None:
    """Warm the first script run's one-time costs (see the module's doc); the seconds it took, or
    ``None`` when a step failed (logged: the dashboard starts anyway, its first visitor pays the rest)."""
    start = time.perf_counter()
    ok = True
    with quiet():
        for name, step in (("page run", lambda: run_page(timeout_s)), ("chart payload", build_chart),
                           ("cache clearing", clear_caches)):
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - a warm-up never keeps the dashboard from starting
                ok = False
                log.warning("dashboard warm-up step %s failed (the dashboard starts anyway): %s: %s",
                            name, type(exc).__name__, exc)
    # The page run read Streamlit's configuration before the command line's flags (--server.port)
    # were known; Streamlit warns once when it re-reads it with them, which is expected here.
    config_log = logging.getLogger("streamlit.config")
    config_log.addFilter(_Drop(config_log, "An update to the [server] config option section", once=True))
    inspect.stack()
    gc.collect()
    gc.freeze()
    return time.perf_counter() - start if ok else None
