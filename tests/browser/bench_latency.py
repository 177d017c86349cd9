"""Speed of the Latency page in headless Chromium (issue 4), not part of the test run.

Usage (from the repository root)::

    .venv/bin/python -m tests.browser.bench_latency --prometheus-url URL --store-url sqlite:///...
    .venv/bin/python -m tests.browser.bench_latency            # builds the demo data itself (~1-2 min)

Measures, for one service with four percentiles, the heatmap, the breakdown, the
before/after comparison and the SLO panel:

* cold open (empty caches) of a shared link for the last 24 h and the last 7 d,
* warm open of the same link (answers cached for 60 s),
* a change of time range in the sidebar (24 h -> 6 h -> 24 h, the last one cached),
* Prometheus queries per render, counted from the server's own ``/metrics``.

"Rendered" means: Streamlit finished the script run and every Plotly chart of the page is
drawn. Figures depend on the machine's load; run it on an idle machine.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from analyzers.promserver import free_port  # noqa: E402

from .conftest import CHROME_FLAGS, CHROMEDRIVER, CHROMIUM  # noqa: E402

PANEL_CHARTS = 3  # percentiles, heatmap, SLO (the before/after CDF only shows with a deploy in range)


def query_counts(prom_url: str) -> dict[str, float]:
    text = requests.get(prom_url + "/metrics", timeout=10).text
    out: dict[str, float] = {}
    for handler in ("/api/v1/query_range", "/api/v1/query"):
        total = 0.0
        for m in re.finditer(r'^prometheus_http_requests_total\{[^}]*handler="' + re.escape(handler)
                             + r'"[^}]*\} ([0-9.e+]+)$', text, re.M):
            total += float(m.group(1))
        out[handler] = total
    return out


def build_demo(work: Path) -> tuple[str, str, Any]:
    from analyzers.events.schema import parse_event
    from analyzers.events.store import open_store
    from analyzers.promserver import PrometheusServer, backfill
    from analyzers.scenarios import demo_scenario

    scenario = demo_scenario()
    om = work / "demo.om"
    scenario.write_openmetrics(om)
    backfill(om, work / "tsdb")
    om.unlink()
    server = PrometheusServer(work / "tsdb").start()
    store_url = f"sqlite:///{work / 'deploys.db'}"
    store = open_store(store_url)
    for i, d in enumerate(scenario.deploys):
        store.record_event("generic", f"bench-{i}", d.event, parse_event(d.event).to_deploy(signed=True))
    store.close()
    return server.url, store_url, server


def rendered(driver: Any, charts: int) -> bool:
    from selenium.common.exceptions import StaleElementReferenceException

    try:
        return _rendered(driver, charts)
    except StaleElementReferenceException:  # Streamlit replaced the element mid-check
        return False


def _rendered(driver: Any, charts: int) -> bool:
    from selenium.webdriver.common.by import By

    if driver.find_elements(By.CSS_SELECTOR, '[data-testid="stStatusWidget"]'):
        return False
    drawn = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stPlotlyChart"] .js-plotly-plot .main-svg')
    return len({d.find_element(By.XPATH, "./ancestor::div[@data-testid='stPlotlyChart']").id for d in drawn}) >= charts


def timed(driver: Any, action: Any, charts: int = PANEL_CHARTS, settle_s: float = 0.4) -> float:
    """Seconds from ``action()`` until the page is rendered (and stays so for ``settle_s``)."""
    t0 = time.perf_counter()
    action()
    time.sleep(0.15)  # let Streamlit show its running state
    while True:
        if rendered(driver, charts):
            done = time.perf_counter()
            time.sleep(settle_s)
            if rendered(driver, charts):
                return done - t0
        if time.perf_counter() - t0 > 120:
            raise TimeoutError("page not rendered within 120 s")
        time.sleep(0.05)


def pick_range(driver: Any, label: str) -> None:
    from selenium.webdriver.common.by import By

    box = next(e for e in driver.find_elements(By.CSS_SELECTOR, '[data-testid="stSelectbox"]')
               if "Time range" in e.text)
    box.find_element(By.CSS_SELECTOR, "input, [role='combobox']").click()
    option = next(o for o in driver.find_elements(By.CSS_SELECTOR, "[role='option']") if o.text.strip() == label)
    option.click()


def start_dashboard(store_url: str, prom_url: str, log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``streamlit run dashboard/app.py`` on a free loopback port; returns once it is healthy."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "ANALYZERS_CONFIG"}
    env.update({"DEPLOY_STORE_URL": store_url, "PROMETHEUS_URL": prom_url})
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboard" / "app.py"), "--server.address",
             "127.0.0.1", "--server.port", str(port), "--server.fileWatcherType", "none"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            if requests.get(url + "/_stcore/health", timeout=1).text.strip() == "ok":
                break
        except requests.RequestException:
            time.sleep(0.25)
    return proc, url


def chrome() -> Any:
    """Headless Debian Chromium through Selenium, with the project's flags."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prometheus-url")
    ap.add_argument("--store-url")
    ap.add_argument("--service", default="checkout")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    server = None
    if args.prometheus_url and args.store_url:
        prom_url, store_url = args.prometheus_url, args.store_url
    else:
        print("building the demo data (3 days, 3 services) ...", flush=True)
        prom_url, store_url, server = build_demo(work)
    proc, url = start_dashboard(store_url, prom_url, work / "streamlit.log")
    driver = None
    try:
        driver = chrome()
        pct = "&".join(f"pct={p}" for p in ("p50", "p90", "p99", "p99.9"))
        results: list[tuple[str, float, str]] = []

        def link(rng: str) -> str:
            return f"{url}/latency?svc={args.service}&lat_range={rng}&{pct}"

        driver.get(url + "/deploys")  # warm the Streamlit session machinery and imports
        time.sleep(3)
        # Baseline: the Deploys page (one chart, store only) shows what any page load costs here.
        results.append(("open Deploys page (baseline)", timed(driver, lambda: driver.get(url + "/deploys?range=7d"),
                                                             charts=1), "store only"))
        for rng in ("24h", "7d"):
            before = query_counts(prom_url)
            cold = timed(driver, lambda r=rng: driver.get(link(r)))
            after = query_counts(prom_url)
            n = {k: int(after[k] - before[k]) for k in after}
            results.append((f"cold open {rng}", cold, f"{n['/api/v1/query_range']} range + {n['/api/v1/query']} instant queries"))
            before = query_counts(prom_url)
            warm = timed(driver, lambda r=rng: driver.get(link(r)))
            after = query_counts(prom_url)
            n = {k: int(after[k] - before[k]) for k in after}
            results.append((f"warm open {rng}", warm, f"{n['/api/v1/query_range']} range + {n['/api/v1/query']} instant queries"))
        driver.get(link("24h"))
        timed(driver, lambda: None)
        results.append(("range 24h -> 6h (uncached)", timed(driver, lambda: pick_range(driver, "6h")), ""))
        results.append(("range 6h -> 24h (cached)", timed(driver, lambda: pick_range(driver, "24h")), ""))
        driver.save_screenshot(str(work / "latency-24h.png"))
        print(f"\nLatency page, service {args.service}, 4 percentiles + heatmap + breakdown + before/after + SLO")
        for name, secs, note in results:
            print(f"  {name:<28} {secs:6.2f} s   {note}")
        print(f"screenshot: {work / 'latency-24h.png'}")
    finally:
        if driver is not None:
            driver.quit()
        proc.terminate()
        proc.wait(timeout=15)
        if server is not None:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
