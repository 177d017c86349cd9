"""A real dashboard started as the demo and the image start it (``python -m dashboard``, Streamlit
with the heavy imports done before the port opens) on loopback and a headless Chromium driving it.

The dashboard reads a real SQLite store (deploys of the ``prom`` fixture's scenario, one of
them verified by the real verifier) and the real Prometheus of the ``prom`` fixture.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from analyzers.demo.promserver import free_port, stop_process, wait_until_up
from analyzers.events.schema import parse_event
from analyzers.events.store import open_store

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROME_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
    "--window-size=1400,1800",
)


@dataclass(frozen=True)
class Dashboard:
    url: str
    store_url: str
    regression_id: str
    log: Path


def _fill_store(url: str, prom: Any) -> str:
    """Every scenario deploy through the store API; the regression verified for real."""
    from analyzers.config import default_config
    from analyzers.prometheus.client import PrometheusClient
    from analyzers.verify.deploy import verify_deploy

    config = default_config().with_prometheus_url(prom.url)
    store = open_store(url)
    try:
        deploys = []
        for i, sd in enumerate(prom.scenario.deploys):
            deploy = parse_event(sd.event).to_deploy(signed=True)
            store.record_event("generic", f"browser-{i}", sd.event, deploy)
            deploys.append((sd, deploy))
        regression = next(d for sd, d in deploys if sd.case == "regression")
        verdict = verify_deploy(regression, config, PrometheusClient(config.prometheus),
                                others=[d for _, d in deploys], now=datetime.now(UTC))
        store.save_verdict(verdict)
    finally:
        store.close()
    return regression.deploy_id


@contextmanager
def running_dashboard(work: Path, store_url: str, prom_url: str) -> Iterator[tuple[str, Path]]:
    """This checkout's dashboard (not an installed one) on a free loopback port, reading
    ``store_url`` and the Prometheus at ``prom_url``: yields its URL and its log file, and stops it."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "ANALYZERS_CONFIG"}
    env.update({"DEPLOY_STORE_URL": store_url, "PROMETHEUS_URL": prom_url, "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": str(ROOT)})
    log = work / "streamlit.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dashboard",
             "--server.address", "127.0.0.1", "--server.port", str(port), "--server.fileWatcherType", "none"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        why = wait_until_up(url + "/_stcore/health", proc=proc, timeout_s=60, interval_s=0.3)
        if why is not None:
            raise RuntimeError(f"streamlit {why}:\n{log.read_text()[-3000:]}")
        yield url, log
    finally:
        stop_process(proc)


@pytest.fixture(scope="module")
def dashboard(prom: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    work = tmp_path_factory.mktemp("dashboard")
    store_url = f"sqlite:///{work / 'deploys.db'}"
    regression_id = _fill_store(store_url, prom)
    with running_dashboard(work, store_url, prom.url) as (url, log):
        yield Dashboard(url, store_url, regression_id, log)


def new_chrome(page_load_timeout_s: float = 60.0) -> Any:
    """Headless Debian Chromium through Selenium with the project's flags and a fresh profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(page_load_timeout_s)
    return driver


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not shutil.which(path):
            pytest.fail(f"{path} is missing: install Debian's chromium and chromium-driver (make test does)")
    driver = new_chrome()
    try:
        yield driver
    finally:
        driver.quit()
