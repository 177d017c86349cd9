"""``python -m analyzers demo``: the whole product on seeded demo data, on this machine, live.

Steps: find (or apt-install) Prometheus; generate the demo scenario up to now and backfill it
with promtool (once: a second run reuses ``.demo/``); start Prometheus (exemplar storage on,
remote write off) scraping the traffic simulator (:mod:`analyzers.demo.simulator`), which
continues the scenario from the backfill's last sample; start the webhook receiver with its
worker and the dashboard on 127.0.0.1 (a server already answering on its port is reused, not
restarted); send the demo deploy events through the real receiver, signed; verify every deploy
and store the verdicts; print the URLs and the line that points the CLI at the demo's config.
From then on the simulator deploys on a schedule and on ``demo deploy``, and the worker
verifies each deploy by itself. Ctrl-C stops what this run started; ``--no-block`` leaves it
running for ``demo --stop``, which signals only processes it can prove are the demo's.
"""

from __future__ import annotations

import argparse
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

from analyzers.demo.processes import cli_command, is_ours, pid_record, read_pids, shown_path, stop_demo
from analyzers.errors import AnalyzerError

ROOT = Path(__file__).resolve().parents[2]
#: What the summary lists on the receiver (each one answers: tests/unit/test_demo_summary.py).
RECEIVER_PATHS = "POST /webhooks/deploys, GET /v1/deploys, /healthz, /metrics, /openapi.json"


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
    """Generate + backfill once; returns the scenario deploys (event, truth, expected_overall).

    The scenario ends 3 h before the hour (:func:`~analyzers.demo.scenarios.default_end`: its
    deploys and verdicts are the same all hour); the traffic simulator's model then runs fast from
    there to now (:func:`~analyzers.demo.livemodel.fast_forward`) into a second backfill. Backfilling
    the last 3 h is safe here because no Prometheus runs on the TSDB yet: once one starts, its head
    takes only samples newer than the blocks, which is what the simulator serves from then on.
    ``handoff.json`` holds what the simulator continues (versions, pods, counters at the last sample).
    """
    from analyzers.demo.livemodel import LiveWorld, fast_forward, handoff_from_scenario
    from analyzers.demo.promserver import backfill
    from analyzers.demo.scenarios import demo_scenario, small_scenario

    marker = data / "scenario.json"
    tsdb = data / "tsdb"
    if marker.exists() and tsdb.exists() and (data / "handoff.json").exists() and not fresh:
        saved = json.loads(marker.read_text())
        if saved.get("seed") == seed and saved.get("scenario", "demo") == scenario_name:
            _say(f"reusing demo data in {data} (generated {saved.get('generated_at')}; --fresh to regenerate)")
            return list(saved["deploys"])
    import shutil
    from datetime import UTC, datetime

    for stale in (tsdb, data / "simulator"):
        if stale.exists():
            shutil.rmtree(stale)
    _say(f"generating the {scenario_name} scenario's metrics up to now (seeded) ...")
    t0 = time.monotonic()
    scenario = demo_scenario(seed=seed) if scenario_name == "demo" else small_scenario(seed=seed)
    om = data / "demo.om"
    n = scenario.write_openmetrics(om)
    _say(f"wrote {n:,} samples in {time.monotonic() - t0:.0f} s; backfilling with promtool ...")
    t0 = time.monotonic()
    tsdb.mkdir(parents=True, exist_ok=True)
    backfill(om, tsdb)
    world = LiveWorld(handoff_from_scenario(scenario), seed=seed)
    n = fast_forward(world, datetime.now(UTC).timestamp(), om, step_s=scenario.step_s)
    backfill(om, tsdb)
    (data / "handoff.json").write_text(json.dumps(world.snapshot()))
    om.unlink(missing_ok=True)
    _say(f"backfill done in {time.monotonic() - t0:.0f} s (the last {n:,} samples continue the scenario to now)")
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
    simulator_port: int = 9469,
    scrape_interval: str = "15s",
    deploy_every_s: float = 900.0,
    rollout_s: float = 120.0,
    quick_checks: bool = False,
    canary_step_s: float = 300.0,
) -> int:
    from analyzers.demo.promserver import PrometheusServer, ensure_installed

    data = Path(data_dir).resolve()
    data.mkdir(parents=True, exist_ok=True)
    started: list[Callable[[], None]] = []
    pids: list[dict[str, Any]] = []

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
            _say(f"starting Prometheus at {prom_url} (scraping the traffic simulator every {scrape_interval}) ...")
            server = PrometheusServer(data / "tsdb", port=prometheus_port, retention="30d",
                                      scrape_targets=[f"127.0.0.1:{simulator_port}"], scrape_interval=scrape_interval,
                                      exemplars=True, work_dir=data / "prometheus").start()
            started.append(server.stop)
            if server.pid is not None:
                pids.append(pid_record("prometheus", server.pid, server.command))

        store_url = f"sqlite:///{data / 'deploys.db'}"
        secret = _secret(data)
        receiver_url = f"http://127.0.0.1:{receiver_port}"
        sim_url = f"http://127.0.0.1:{simulator_port}"
        simulate = [sys.executable, "-m", "analyzers.demo.simulator", "--data-dir", str(data),
                    "--port", str(simulator_port), "--seed", str(seed), "--receiver-url", receiver_url,
                    "--deploy-every", f"{deploy_every_s:g}", "--rollout", f"{rollout_s:g}",
                    "--canary-step", f"{canary_step_s:g}", "--canary-check", "10" if quick_checks else "30"]
        _reuse_or_start("the traffic simulator", sim_url, "/metrics", simulate, dict(os.environ),
                        data / "simulator.log", started, pids)
        config_path = _write_demo_config(data, prom_url, store_url, dashboard_port, quick_checks=quick_checks,
                                         canary_step_s=canary_step_s)
        env = dict(
            os.environ, DEPLOY_WEBHOOK_SECRET=secret, PROMETHEUS_URL=prom_url, DEPLOY_STORE_URL=store_url,
            ANALYZERS_CONFIG=str(config_path),
            ANALYZERS_WORKER="1",  # new events you send are verified on their own
            # the dashboard (`python -m dashboard`) imports the same analyzers as this process,
            # installed or not
            PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
        )
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
            sys.executable, "-m", "dashboard",  # heavy imports done before the port opens (health)
            "--server.address", "127.0.0.1", "--server.port", str(dashboard_port),
            "--server.headless", "true", "--browser.gatherUsageStats", "false",
        ]
        _reuse_or_start("the dashboard", dash_url, "/_stcore/health", streamlit, env, data / "dashboard.log",
                        started, pids, timeout=90)

        print()
        print(f"  Dashboard:   {dash_url}")
        print(f"  Receiver:    {receiver_url}   ({RECEIVER_PATHS})")
        print(f"  Prometheus:  {prom_url}   (scrapes the traffic simulator at {sim_url}/metrics)")
        print(f"  Demo data:   {data}   (webhook secret in {data / 'webhook-secret'})")
        every = f"every {deploy_every_s / 60:g} min" if deploy_every_s > 0 else "only when asked"
        print(f"  Deploys:     {every}; now: {cli_command()} demo deploy --service checkout --effect latency+30%"
              + (f" --data-dir {data_dir}" if data_dir != ".demo" else ""))
        print()
        print("Point the CLI at the demo's data:")
        print(f"  export ANALYZERS_CONFIG={shown_path(config_path)}")
        print()
        if not block:
            started.clear()  # leave them running; `demo --stop` ends them
            pid_file = data / "pids.json"
            earlier = [r for r in read_pids(pid_file) if isinstance(r, dict) and is_ours(r)]
            pid_file.write_text(json.dumps(earlier + pids, indent=1))
            pid_file.chmod(0o600)
            print(f"Left running; stop them with: {cli_command()} demo --stop --data-dir {data_dir}")
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


def _write_demo_config(data: Path, prom_url: str, store_url: str, dashboard_port: int, *,
                       quick_checks: bool = False, canary_step_s: float = 300.0) -> Path:
    """The demo's config file: the built-in catalog, the demo's one dependency and SLOs that fit
    the demo's services (the default 250 ms / 99.5% would burn 15x on checkout and 90x on payments
    in their normal state).

    ``scrape_interval`` stays 15 s, the backfill's resolution (rate windows must span 4 samples
    of the history, whatever the simulator's live scrape interval). ``quick_checks`` shortens
    the verification windows so a live deploy gets its first verdict within about 3 minutes
    (less data per verdict: for tests and a quick look). The canary fail test's horizon
    (``[canary] window``) is the time a demo canary holds each weight, as a rollout controller's
    analysis per step would be (docs/progressive-delivery.md): a regression is judged within
    the step it happens in.
    """
    path = data / "config.toml"
    tuning = ('[verification]\nstep = "10s"\nwindow_after = "3m"\nobservation = "6m"\n\n'
             '[canary]\ninterval = "15s"\nmin_duration = "1m"\n' if quick_checks else "[canary]\n")
    tuning += f'window = "{max(canary_step_s, 60.0 if not quick_checks else 15.0):g}s"\n\n'
    path.write_text(
        "# Written by `python -m analyzers demo`; a starting point for your own config (README).\n"
        f'[prometheus]\nurl = "{prom_url}"\nscrape_interval = "15s"\n\n'
        f'[store]\nurl = "{store_url}"\n\n'
        f'[dashboard]\nurl = "http://127.0.0.1:{dashboard_port}"\n\n'
        + tuning +
        '[services.checkout]\ndepends_on = ["payments"]   # checkout calls payments\n'
        '[services.checkout.slo]\nthreshold = "500ms"\nobjective = 0.995\n\n'
        '[services.payments]\n[services.payments.slo]\nthreshold = "1s"\nobjective = 0.98\n\n'
        '[services.search]\n[services.search.slo]\nthreshold = "250ms"\nobjective = 0.995\n'
        # the SLOs fit the demo's services: in their normal state they burn under 1x (checkout
        # 0.45x, payments 0.4x, search 0.2x over the last day), so a burn above 1x means a real change
    )
    return path


def _verify_all(store_url: str, prom_url: str, deploys: list[dict[str, Any]], config_path: Path) -> None:
    import dataclasses

    from analyzers.config import VerificationSettings, load_config
    from analyzers.events.store import open_store
    from analyzers.prometheus.client import PrometheusClient
    from analyzers.verify.fleet import verify_many

    # the scenario's truth holds for the standard windows: --quick-checks shortens them for live deploys only
    cfg = dataclasses.replace(load_config(config_path).with_prometheus_url(prom_url), verification=VerificationSettings())
    store = open_store(store_url)
    try:
        truth = {d["event"].get("deploy_id"): d for d in deploys}
        # the scenario's deploys only: live ones (simulator) are the worker's to verify when their data is in
        stored = [d for d in store.list_deploys(limit=100000) if d.deploy_id in truth]
        _say(f"verifying {len(stored)} deploys against Prometheus ...")
        verdicts = verify_many(sorted(stored, key=lambda d: d.started_at), cfg, PrometheusClient(cfg.prometheus), store=store)
        for v in sorted(verdicts, key=lambda v: v.service):
            t = truth.get(v.deploy_id)
            expected = f" (scenario truth: {t['expected_overall']})" if t else ""
            ev = t["event"] if t else {}
            what = (f" (release: flag {ev.get('flag')} {ev.get('from')} -> {ev.get('to')})"  # not a second deploy
                    if ev.get("kind") == "release" else "")
            _say(f"  {v.overall.upper():13s} {v.service} {v.version}{what}{expected}")
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
    pids: list[dict[str, Any]],
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
    pids.append(pid_record(what, proc.pid, cmd))
    _wait(url + health, what, proc, timeout=timeout, log=log)


def _spawn(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[Any]:
    with log.open("ab") as out:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def _terminate(proc: subprocess.Popen[Any]) -> None:
    from analyzers.demo.promserver import stop_process

    stop_process(proc, 10.0)


def add_demo_parser(sub: Any) -> argparse.ArgumentParser:
    """The ``demo`` subcommand's parser on ``sub`` (the CLI's subparsers), returned for ``set_defaults``."""
    d: argparse.ArgumentParser = sub.add_parser(
        "demo", help="start Prometheus, the receiver and the dashboard on live demo data",
        description="`demo` starts everything; `demo deploy --service S --effect E` deploys while it runs; "
                    "`demo --stop` ends what `--no-block` left running.")
    d.add_argument("action", nargs="?", choices=("start", "deploy"), default="start",
                   help="deploy: roll a new version of --service out in the running demo")
    d.add_argument("--service", help="demo deploy: checkout, search or payments")
    d.add_argument("--effect", default="noop",
                   help="demo deploy: noop, latency+30%%, latency-20%%, tail+50%%, errors x5 (comma-joined)")
    d.add_argument("--rollout", type=float, help="seconds a rolling update takes (default 120)")
    d.add_argument("--no-wait", action="store_true", help="demo deploy: return once the rollout has started")
    d.add_argument("--strategy", choices=("rolling", "canary"), default="rolling",
                   help="demo deploy: rolling update, or a canary at 10%%, 50%%, then 100%% gated by the receiver")
    d.add_argument("--canary-step", type=float, help="seconds a canary holds each weight (default 300)")
    d.add_argument("--simulator-port", type=int, default=int(os.environ.get("SIMULATOR_PORT", "9469")),
                   help="traffic simulator's /metrics port (default 9469, $SIMULATOR_PORT)")
    d.add_argument("--scrape-interval", default="15s", help="how often Prometheus scrapes the simulator")
    d.add_argument("--deploy-every", type=float, default=900.0, help="seconds between automatic deploys (0: none)")
    d.add_argument("--quick-checks", action="store_true",
                   help="short verification windows: a first verdict about 3 min after a deploy (tests)")
    d.add_argument("--prometheus-port", type=int, default=int(os.environ.get("PROMETHEUS_PORT", "9090")),
                   help="Prometheus port (default 9090, $PROMETHEUS_PORT)")
    d.add_argument("--receiver-port", type=int, default=int(os.environ.get("RECEIVER_PORT", "8000")),
                   help="webhook receiver port (default 8000, $RECEIVER_PORT)")
    d.add_argument("--dashboard-port", type=int, default=int(os.environ.get("DASHBOARD_PORT", "8501")),
                   help="dashboard port (default 8501, $DASHBOARD_PORT)")
    d.add_argument("--data-dir", default=".demo", help="where the demo keeps its data, config and PIDs (default .demo)")
    d.add_argument("--seed", type=int, default=7, help="seed of the generated history and traffic (default 7)")
    d.add_argument("--fresh", action="store_true", help="regenerate the demo data")
    d.add_argument("--no-block", action="store_true", help="start, load, print URLs and exit (leave servers running)")
    d.add_argument("--stop", action="store_true", help="stop what a --no-block run left running")
    d.add_argument("--scenario", choices=("demo", "small"), default="demo", help="small: 34 h, 6 deploys (fast, for tests)")
    return d


def demo_command(args: argparse.Namespace) -> int:
    """``python -m analyzers demo [deploy]`` and ``demo --stop``."""
    if args.stop:
        return stop_demo(args.data_dir)
    if args.action == "deploy":
        from analyzers.demo.control import request_deploy

        if not args.service:
            raise AnalyzerError("demo deploy needs --service (checkout, search or payments)")
        request_deploy(args.data_dir, args.service, args.effect, rollout_s=args.rollout, wait=not args.no_wait,
                       strategy=args.strategy, canary_step_s=args.canary_step)
        return 0
    return run_demo(
        prometheus_port=args.prometheus_port,
        receiver_port=args.receiver_port,
        dashboard_port=args.dashboard_port,
        data_dir=args.data_dir,
        seed=args.seed,
        fresh=args.fresh,
        block=not args.no_block,
        scenario=args.scenario,
        simulator_port=args.simulator_port,
        scrape_interval=args.scrape_interval,
        deploy_every_s=args.deploy_every,
        rollout_s=args.rollout if args.rollout is not None else 120.0,
        quick_checks=args.quick_checks,
        canary_step_s=args.canary_step if args.canary_step is not None else 300.0,
    )
