"""``python -m analyzers demo``: the whole product on seeded demo data, on this machine.

Steps: find (or apt-install) Prometheus; generate the demo scenario and backfill it with
promtool (once: a second run reuses ``.demo/``); start Prometheus, the webhook receiver and the
dashboard on 127.0.0.1 (a server already answering on its port is reused, not restarted);
send the demo deploy events through the real receiver, signed; verify every deploy and store
the verdicts; print the URLs. Ctrl-C stops what this run started.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from analyzers.errors import AnalyzerError

ROOT = Path(__file__).resolve().parents[2]


def _say(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def _up(url: str, timeout: float = 1.0) -> bool:
    try:
        return requests.get(url, timeout=timeout).status_code == 200
    except requests.RequestException:
        return False


def _wait(url: str, what: str, proc: subprocess.Popen[Any] | None, timeout: float = 60.0, log: Path | None = None) -> None:
    from analyzers.demo.promserver import wait_until_up

    why = wait_until_up(url, proc=proc, timeout_s=timeout, interval_s=0.3)
    if why is None:
        return
    tail = ""
    if log is not None and log.exists():
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
    raise AnalyzerError(f"{what} did not become ready at {url} ({why}); its log ends with:\n{tail}\n"
                        "Fix the cause above or pick another port.")


def _secret(data: Path) -> str:
    path = data / "webhook-secret"
    if path.exists():
        return path.read_text().strip()
    value = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    path.write_text(value + "\n")
    path.chmod(0o600)
    return value


def _prepare_data(data: Path, seed: int, fresh: bool, scenario_name: str = "demo") -> list[dict[str, Any]]:
    """Generate + backfill once; returns the scenario deploys (event, truth, expected_overall)."""
    from analyzers.demo.promserver import backfill
    from analyzers.demo.scenarios import demo_scenario, small_scenario

    marker = data / "scenario.json"
    tsdb = data / "tsdb"
    if marker.exists() and tsdb.exists() and not fresh:
        saved = json.loads(marker.read_text())
        if saved.get("seed") == seed and saved.get("scenario", "demo") == scenario_name:
            _say(f"reusing demo data in {data} (generated {saved.get('generated_at')}; --fresh to regenerate)")
            return list(saved["deploys"])
    if tsdb.exists():
        import shutil

        shutil.rmtree(tsdb)
    _say(f"generating the {scenario_name} scenario's metrics (seeded) ...")
    t0 = time.monotonic()
    scenario = demo_scenario(seed=seed) if scenario_name == "demo" else small_scenario(seed=seed)
    om = data / "demo.om"
    n = scenario.write_openmetrics(om)
    _say(f"wrote {n:,} samples in {time.monotonic() - t0:.0f} s; backfilling with promtool ...")
    t0 = time.monotonic()
    tsdb.mkdir(parents=True, exist_ok=True)
    backfill(om, tsdb)
    om.unlink(missing_ok=True)
    _say(f"backfill done in {time.monotonic() - t0:.0f} s")
    deploys = [
        {"event": d.event, "truth": dict(d.truth), "expected_overall": d.expected_overall} for d in scenario.deploys
    ]
    marker.write_text(
        json.dumps({"seed": seed, "scenario": scenario_name, "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "deploys": deploys}, indent=2)
    )
    return deploys


def run_demo(
    *,
    prometheus_port: int = 9090,
    receiver_port: int = 8000,
    dashboard_port: int = 8501,
    data_dir: str = ".demo",
    seed: int = 7,
    fresh: bool = False,
    block: bool = True,
    scenario: str = "demo",
) -> int:
    from analyzers.demo.promserver import PrometheusServer, ensure_installed

    data = Path(data_dir).resolve()
    data.mkdir(parents=True, exist_ok=True)
    started: list[Callable[[], None]] = []
    pids: list[int] = []

    def stop_all() -> None:
        for stop in reversed(started):
            try:
                stop()
            except Exception:  # noqa: BLE001 - best effort on shutdown
                pass
        started.clear()

    try:
        ensure_installed()
        deploys = _prepare_data(data, seed, fresh, scenario)

        prom_url = f"http://127.0.0.1:{prometheus_port}"
        if _up(prom_url + "/-/ready"):
            _say(f"Prometheus already answering at {prom_url}; reusing it")
            _check_has_demo_data(prom_url, deploys)
        else:
            _say(f"starting Prometheus at {prom_url} ...")
            server = PrometheusServer(data / "tsdb", port=prometheus_port, retention="30d").start()
            started.append(server.stop)
            if server.pid is not None:
                pids.append(server.pid)

        store_url = f"sqlite:///{data / 'deploys.db'}"
        secret = _secret(data)
        config_path = _write_demo_config(data, prom_url, store_url, dashboard_port)
        env = dict(
            os.environ, DEPLOY_WEBHOOK_SECRET=secret, PROMETHEUS_URL=prom_url, DEPLOY_STORE_URL=store_url,
            ANALYZERS_CONFIG=str(config_path),
            ANALYZERS_WORKER="1",  # new events you send are verified on their own
        )
        receiver_url = f"http://127.0.0.1:{receiver_port}"
        serve = [sys.executable, "-m", "analyzers", "serve", "--host", "127.0.0.1", "--port", str(receiver_port),
                 "--store", store_url]
        _reuse_or_start("the webhook receiver", receiver_url, "/healthz", serve, env, data / "receiver.log",
                        started, pids)

        from analyzers.events.send import send_event

        _say(f"sending {len(deploys)} signed deploy events to {receiver_url}/webhooks/deploys ...")
        for d in deploys:
            resp = send_event(receiver_url + "/webhooks/deploys", d["event"], secret)
            if resp.status_code >= 300:
                raise AnalyzerError(
                    f"the receiver refused demo event {d['event'].get('deploy_id')}: {resp.status_code} {resp.text[:300]}"
                )

        _verify_all(store_url, prom_url, deploys, config_path)

        dash_url = f"http://127.0.0.1:{dashboard_port}"
        streamlit = [
            sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboard" / "app.py"),
            "--server.address", "127.0.0.1", "--server.port", str(dashboard_port),
            "--server.headless", "true", "--browser.gatherUsageStats", "false",
        ]
        _reuse_or_start("the dashboard", dash_url, "/_stcore/health", streamlit, env, data / "dashboard.log",
                        started, pids, timeout=90)

        print()
        print(f"  Dashboard:   {dash_url}")
        print(f"  Receiver:    {receiver_url}   (POST /webhooks/deploys, GET /v1/deploys, /metrics, /docs)")
        print(f"  Prometheus:  {prom_url}")
        print(f"  Demo data:   {data}   (webhook secret in {data / 'webhook-secret'})")
        print()
        if not block:
            started.clear()  # leave them running; `demo --stop` ends them
            pid_file = data / "pids.json"
            earlier = json.loads(pid_file.read_text()) if pid_file.exists() else []
            pid_file.write_text(json.dumps(sorted(set(earlier) | set(pids))))
            print(f"Left running; stop them with: python -m analyzers demo --stop --data-dir {data_dir}")
            return 0
        print("Press Ctrl-C to stop everything this run started.", flush=True)
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        _say("stopping ...")
        return 0
    finally:
        stop_all()


def stop_demo(data_dir: str = ".demo") -> int:
    """End the processes a ``demo --no-block`` run left running (recorded in pids.json)."""
    path = Path(data_dir) / "pids.json"
    if not path.exists():
        _say(f"nothing to stop: {path} does not exist")
        return 0
    for pid in json.loads(path.read_text()):
        try:
            os.kill(int(pid), signal.SIGTERM)
            _say(f"stopped process {pid}")
        except ProcessLookupError:
            pass
    path.unlink()
    return 0


def _check_has_demo_data(prom_url: str, deploys: list[dict[str, Any]]) -> None:
    """A Prometheus we did not start (Debian's service on 9090, say) may hold none of the demo data."""
    if not deploys:
        return
    from analyzers.config import PrometheusSettings
    from analyzers.model import to_utc
    from analyzers.prometheus.client import PrometheusClient

    try:
        result = PrometheusClient(PrometheusSettings(url=prom_url, timeout_s=10)).query(
            "count(http_requests_total)", to_utc(deploys[0]["event"]["started_at"])
        ).series
    except AnalyzerError:
        result = ()
    if not result:
        raise AnalyzerError(
            f"the Prometheus already running at {prom_url} does not hold the demo data (Debian's prometheus "
            "service starts on 9090 after install). Stop it (`service prometheus stop`) or run "
            "`make demo PROMETHEUS_PORT=19090`."
        )


def _write_demo_config(data: Path, prom_url: str, store_url: str, dashboard_port: int) -> Path:
    """The demo's config file: the built-in catalog plus the demo's one dependency."""
    path = data / "config.toml"
    path.write_text(
        "# Written by `python -m analyzers demo`; a starting point for your own config (README).\n"
        f'[prometheus]\nurl = "{prom_url}"\nscrape_interval = "15s"\n\n'
        f'[store]\nurl = "{store_url}"\n\n'
        f'[dashboard]\nurl = "http://127.0.0.1:{dashboard_port}"\n\n'
        '[services.checkout]\ndepends_on = ["payments"]   # checkout calls payments\n\n'
        "[services.payments]\n\n[services.search]\n"
    )
    return path


def _verify_all(store_url: str, prom_url: str, deploys: list[dict[str, Any]], config_path: Path) -> None:
    from analyzers.config import load_config
    from analyzers.events.store import open_store
    from analyzers.prometheus.client import PrometheusClient
    from analyzers.verify.fleet import verify_many

    cfg = load_config(config_path).with_prometheus_url(prom_url)
    store = open_store(store_url)
    try:
        stored = store.list_deploys(limit=100000)
        _say(f"verifying {len(stored)} deploys against Prometheus ...")
        verdicts = verify_many(sorted(stored, key=lambda d: d.started_at), cfg, PrometheusClient(cfg.prometheus), store=store)
        truth = {d["event"].get("deploy_id"): d for d in deploys}
        for v in sorted(verdicts, key=lambda v: v.service):
            t = truth.get(v.deploy_id)
            expected = f" (scenario truth: {t['expected_overall']})" if t else ""
            _say(f"  {v.overall.upper():13s} {v.service} {v.version}{expected}")
    finally:
        store.close()


def _reuse_or_start(
    what: str,
    url: str,
    health: str,
    cmd: list[str],
    env: dict[str, str],
    log: Path,
    started: list[Callable[[], None]],
    pids: list[int],
    *,
    timeout: float = 60.0,
) -> None:
    """Reuse a server already answering at ``url``, else start ``cmd`` and wait until it is healthy."""
    if _up(url + health):
        _say(f"{what} already answering at {url}; reusing it")
        return
    _say(f"starting {what} at {url} ...")
    proc = _spawn(cmd, env, log)
    started.append(functools.partial(_terminate, proc))
    pids.append(proc.pid)
    _wait(url + health, what, proc, timeout=timeout, log=log)


def _spawn(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[Any]:
    with log.open("ab") as out:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def _terminate(proc: subprocess.Popen[Any]) -> None:
    from analyzers.demo.promserver import stop_process

    stop_process(proc, 10.0)
