"""Command line: ``python -m analyzers {serve,verify,verify-series,worker,demo}``.

Exit codes of ``verify`` and ``verify-series``: 0 pass, 1 fail, 2 inconclusive, 3 error.
Errors print one line to stderr that says what to do next; no tracebacks (``--debug`` shows them).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from analyzers.config import Config, load_config, parse_duration
from analyzers.errors import AnalyzerError, ConfigError, EventError, PrometheusUnreachable
from analyzers.model import EXIT_CODES, Deploy, DeployVerdict, to_utc
from analyzers.text import ci_label, format_effect, format_time, p_equals


def _parse_time(value: str, *, now: datetime) -> datetime:
    """A time as the receiver reads it (RFC 3339, Unix seconds or milliseconds), else a duration
    back from now (``24h``); a timestamp without zone is taken as UTC."""
    from analyzers.events.schema import parse_timestamp

    v = value.strip()
    try:
        return parse_timestamp(v, "time")
    except EventError:
        pass
    try:
        seconds = parse_duration(v, key="--since")
    except ConfigError:
        pass
    else:
        try:
            return now - timedelta(seconds=seconds)
        except (OverflowError, ValueError):
            raise ConfigError(f"{value!r} reaches back before the year 1: use a shorter duration (e.g. 30d) "
                              "or a date (2026-11-27T10:00:00Z)") from None
    try:
        return to_utc(v)
    except ValueError:
        raise ConfigError(f"cannot read time {value!r}: use RFC 3339 (2026-11-27T10:00:00Z), Unix seconds or a duration such as 24h") from None


def _workers(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"--workers takes a whole number of processes (0: one per CPU), got {text!r}")
    return n


def _config(args: argparse.Namespace) -> Config:
    cfg = load_config(getattr(args, "config", None))
    if getattr(args, "prometheus_url", None):
        cfg = cfg.with_prometheus_url(args.prometheus_url)
    return cfg


def _store_url(args: argparse.Namespace, cfg: Config) -> str:
    """The store to read: ``--store``, else ``$DEPLOY_STORE_URL``, else the config file's.

    Without any of them (the built-in default config) the CLI refuses rather than creating
    an empty ``./data/deploys.db`` and reporting "no deploys", and an SQLite file that does
    not exist is an error too: reading commands never create a store.
    """
    from analyzers.events.store import sqlite_path

    if args.store:
        url, where = args.store, "--store"
    elif os.environ.get("DEPLOY_STORE_URL"):
        url, where = cfg.store_url, "$DEPLOY_STORE_URL"
    elif cfg.source_path:
        url, where = cfg.store_url, f"store.url in {cfg.source_path}"
    else:
        raise ConfigError(
            "no deploy store configured: looked for --store, $DEPLOY_STORE_URL and a config file "
            "(--config, or $ANALYZERS_CONFIG: unset). Point at one, e.g. after make demo: "
            "export ANALYZERS_CONFIG=.demo/config.toml")
    path = sqlite_path(url)
    if path is not None and not os.path.exists(path):
        raise ConfigError(f"the deploy store {path} (from {where}) does not exist: check the path, or start the "
                          "receiver (python -m analyzers serve) to create it")
    return url


def _check_output(path: str | None) -> None:
    """Refuse an --output the report cannot be written to, before any work is done."""
    if not path:
        return
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path) or not os.path.isdir(folder) or not os.access(folder, os.W_OK) or (
            os.path.exists(path) and not os.access(path, os.W_OK)):
        raise ConfigError(f"cannot write the report to {path}: its folder must exist and be writable "
                          "(and the path must not be a folder); choose another --output")


def cmd_serve(args: argparse.Namespace) -> int:
    from analyzers.server.run import serve, settings_from_args

    serve(settings_from_args(args))
    return 0


def _select_deploys(store, args: argparse.Namespace, now: datetime) -> list[Deploy]:  # type: ignore[no-untyped-def]
    if getattr(args, "version", None):
        if not args.service:
            raise ConfigError("--version needs --service")
        since = _parse_time(args.since, now=now) if args.since else now - timedelta(days=30)
        found = [d for d in store.list_deploys(service=args.service, environment=args.environment, since=since, limit=100000)
                 if d.version == args.version]
        return sorted(found, key=lambda d: d.started_at)[-1:]
    if args.deploy:
        out = []
        for did in args.deploy:
            d = store.get_deploy(did)
            if d is None:
                raise ConfigError(f"no deploy with id {did!r} in the store; list them with: curl RECEIVER/v1/deploys")
            out.append(d)
        return out
    since = _parse_time(args.since, now=now) if args.since else now - timedelta(hours=24)
    deploys = store.list_deploys(service=args.service, environment=args.environment, since=since, limit=100000)
    return sorted(deploys, key=lambda d: d.started_at)


def cmd_verify(args: argparse.Namespace) -> int:
    from analyzers.events.store import open_store
    from analyzers.prometheus.client import PrometheusClient
    from analyzers.verify.canary import with_canaries
    from analyzers.verify.fleet import verify_many

    cfg = _config(args)
    _check_output(args.output)
    if args.wait:
        return _verify_wait(args, cfg)
    store = open_store(_store_url(args, cfg))
    try:
        now = datetime.now(UTC)
        deploys = _select_deploys(store, args, now)
        if not deploys:
            print("No deploys matched; nothing to verify (exit 2: inconclusive).", file=sys.stderr)
            return EXIT_CODES["inconclusive"]
        client = PrometheusClient(cfg.prometheus)
        ctx_since = min(d.started_at for d in deploys) - timedelta(seconds=cfg.verification.overlap_s)
        context = store.list_deploys(since=ctx_since, limit=100000)
        verdicts = verify_many(deploys, cfg, client, store=None if args.no_save else store, now=now, context=context)
        both = with_canaries(deploys, verdicts, cfg, client, store, now=now, save=not args.no_save)  # the combined answers
    finally:
        store.close()
    _emit(args, cfg, list(zip(verdicts, deploys, strict=True)), [c for _, c in both])
    order = {"fail": 2, "inconclusive": 1, "pass": 0}
    return EXIT_CODES[max((v.overall for v, _ in both), key=lambda o: order[o])]


def cmd_canary(args: argparse.Namespace) -> int:
    """Canary vs baseline now, combined with the stored before/after verdict (what the gate answers)."""
    import json

    from analyzers.events.store import open_store
    from analyzers.prometheus.client import PrometheusClient
    from analyzers.server.gate import gate_answer

    cfg = _config(args)
    if not args.deploy and not (args.service and args.version):
        raise ConfigError("name the canary: --deploy ID, or --service NAME --version VERSION")
    store = open_store(args.store or cfg.store_url)
    try:
        args.deploy, args.since = ([args.deploy] if args.deploy else None), None
        found = _select_deploys(store, args, datetime.now(UTC))
        if not found:
            print("No such deploy stored: post its deploy event first (exit 2: inconclusive).", file=sys.stderr)
            return EXIT_CODES["inconclusive"]
        body = gate_answer(store, found[-1], cfg, PrometheusClient(cfg.prometheus), now=datetime.now(UTC),
                           save=not args.no_save)
    finally:
        store.close()
    if args.format == "json":
        print(json.dumps(body, indent=2))
    else:
        print(f"{body['service']} {body['version']} canary: {body['verdict'].upper()}: {body['reason']}")
        for m in body["metrics"]:
            print(f"  {m['metric']}{' [dry-run]' if m['dry_run'] else ''}: {m['outcome']}: {m['reason']}")
    return EXIT_CODES[body["verdict"]]


def _emit(args: argparse.Namespace, cfg: Config, pairs: list[tuple[DeployVerdict, Deploy]],
          canaries: list[DeployVerdict | None]) -> None:
    from analyzers.delivery.reports import render_html, render_json, render_json_many, render_markdown
    from analyzers.events.combined import ROLLED_OUT, combined_verdict

    triples = list(zip(pairs, canaries, strict=True))
    if args.format == "json":  # many deploys: each one's combined verdict
        text = (render_json(*pairs[0], canary=canaries[0]) if len(pairs) == 1 else render_json_many(
            [(combined_verdict(c, v, rolled_out=d.status in ROLLED_OUT) or v, d) for (v, d), c in triples]))
    else:
        render = render_html if args.format == "html" else render_markdown
        text = "\n".join(render(v, d, dashboard_url=cfg.dashboard_url, canary=c) for (v, d), c in triples)
    if args.output:
        try:
            with open(args.output, "w", encoding="utf-8") as fh:
                fh.write(text)
        except OSError as exc:
            raise ConfigError(f"cannot write the report to {args.output} ({exc.strerror}); choose another --output") from None
    else:
        sys.stdout.write(text)


def _verify_wait(args: argparse.Namespace, cfg: Config) -> int:
    """Block until the deploy's verdict is final: a fail (exit at once) or the end of the wait.

    A pass is only reported once the whole wait (or the observation window, if shorter) has
    elapsed, so a regression that shows up late still fails the pipeline.
    """
    import time

    from analyzers.events.combined import ROLLED_OUT, combined_verdict
    from analyzers.events.store import open_store
    from analyzers.prometheus.client import PrometheusClient
    from analyzers.server.worker import final_due
    from analyzers.verify.canary import current_canary
    from analyzers.verify.deploy import nearby_deploys, verify_deploy

    wait_s = parse_duration(args.wait, key="--wait")
    start = time.monotonic()
    client = PrometheusClient(cfg.prometheus)
    verdict: DeployVerdict | None = None
    deploy: Deploy | None = None
    canary: DeployVerdict | None = None
    if not (args.deploy or args.version):
        raise ConfigError("--wait needs --deploy ID or --service S --version V")
    store = open_store(_store_url(args, cfg))
    outage: PrometheusUnreachable | None = None
    try:
        while True:
            now = datetime.now(UTC)
            try:
                found = _select_deploys(store, args, now)
            except ConfigError:
                found = []  # the deploy event has not arrived yet
            if found:
                deploy = found[0]
                try:
                    verdict = verify_deploy(deploy, cfg, client, others=nearby_deploys(store, deploy, cfg), now=now)
                    outage = None
                except PrometheusUnreachable as exc:  # keep the last real verdict; try again until the wait ends
                    outage = exc
                else:
                    if not args.no_save:
                        store.save_verdict(verdict)
                    canary = current_canary(deploy, cfg, client, store, now=now, save=not args.no_save)
            elapsed = time.monotonic() - start
            answer = combined_verdict(canary, verdict, rolled_out=deploy is not None and deploy.status in ROLLED_OUT)
            done = answer is not None and (answer.overall == "fail" or (deploy is not None and now >= final_due(deploy, cfg)))
            if done or elapsed >= wait_s:
                break
            state = ("waiting for the deploy event" if deploy is None else
                     "Prometheus unreachable, could not check" if outage is not None else
                     f"currently {answer.overall}" if answer is not None else "checking")
            print(f"[{int(elapsed)} s / {int(wait_s)} s] {state}; checking again in {args.poll:g} s",
                  file=sys.stderr, flush=True)
            time.sleep(min(args.poll, max(wait_s - elapsed, 0.1)))
    finally:
        store.close()
    if outage is not None and (answer is None or answer.overall != "fail"):
        raise outage
    if verdict is None or answer is None or deploy is None:
        print(f"No matching deploy arrived within {args.wait}; check the pipeline sends its deploy event (exit 2).", file=sys.stderr)
        return EXIT_CODES["inconclusive"]
    _emit(args, cfg, [(verdict, deploy)], [canary])
    return EXIT_CODES[answer.overall]


def cmd_replay(args: argparse.Namespace) -> int:
    """Re-verify past deploys with the current config; show what would change."""
    from collections import Counter

    from analyzers.events.store import open_store
    from analyzers.prometheus.client import PrometheusClient
    from analyzers.verify.fleet import verify_many

    cfg = _config(args)
    store = open_store(_store_url(args, cfg))
    try:
        now = datetime.now(UTC)
        since = _parse_time(args.since, now=now)
        deploys = sorted(store.list_deploys(service=args.service, since=since, limit=100000), key=lambda d: d.started_at)
        if not deploys:
            print(f"No deploys since {since.isoformat()}; nothing to replay.", file=sys.stderr)
            return 0
        before = store.latest_verdicts([d.deploy_id for d in deploys])
        workers = args.workers or os.cpu_count() or 1
        verdicts = verify_many(deploys, cfg, PrometheusClient(cfg.prometheus), store=store if args.save else None,
                               now=now, workers=workers)
    finally:
        store.close()
    counts = Counter(v.overall for v in verdicts)
    changed = [(d, before.get(d.deploy_id), v) for d, v in zip(deploys, verdicts, strict=True)
               if before.get(d.deploy_id) is None or before[d.deploy_id].overall != v.overall]
    print(f"Replayed {len(verdicts)} deploys since {format_time(since)} with the current config:")
    for k in ("pass", "fail", "inconclusive"):
        print(f"  {k:13s} {counts.get(k, 0)}")
    print(f"{len(changed)} verdicts differ from the stored ones:")
    for d, old, new in changed:
        print(f"  {format_time(d.started_at)} {d.service} {d.version}: "
              f"{old.overall if old else 'none'} -> {new.overall} ({new.reason})")
    shadow = [(d, v, [m.metric for m in v.metrics if m.dry_run and m.outcome in ("opposite", "regressed")])
              for d, v in zip(deploys, verdicts, strict=True)]
    shadow = [(d, v, names) for d, v, names in shadow if names]
    if shadow:
        print(f"Dry-run metrics that would fail {len(shadow)} deploy(s) if enforced:")
        for d, v, names in shadow:
            extra = "" if v.overall == "fail" else f" (now {v.overall})"
            print(f"  {format_time(d.started_at)} {d.service} {d.version}: fail on "
                  f"{', '.join(names)}{extra}")
    return 0


def cmd_verify_series(args: argparse.Namespace) -> int:
    import pandas as pd

    from analyzers.stats import verify_series
    from analyzers.stats.verify import DEFAULT_ALPHA

    if not os.path.exists(args.file):
        raise ConfigError(f"file {args.file} does not exist")
    try:
        df = pd.read_csv(args.file)
    except Exception as exc:  # pandas raises many types for bad files
        raise ConfigError(f"cannot read {args.file} as CSV ({exc}); expected columns: timestamp,value") from exc
    if df.shape[1] < 2:
        raise ConfigError(f"{args.file} needs two columns (timestamp,value); found {list(df.columns)}")
    tcol = args.time_column or df.columns[0]
    vcol = args.value_column or df.columns[1]
    for col in (tcol, vcol):
        if col not in df.columns:
            raise ConfigError(f"column {col!r} not in {args.file}; columns are {list(df.columns)}")
    ts = df[tcol]
    if pd.api.types.is_numeric_dtype(ts):
        unit = "ms" if ts.dropna().abs().max() > 1e11 else "s"
        index = pd.to_datetime(ts, unit=unit, utc=True)
    else:
        index = pd.to_datetime(ts, utc=True, format="ISO8601")
    series = pd.Series(pd.to_numeric(df[vcol], errors="coerce").to_numpy(dtype=float), index=pd.DatetimeIndex(index))
    series = series.sort_index()
    series = series[~series.index.duplicated()]
    deploy_at = _parse_time(args.deploy_at, now=datetime.now(UTC))
    options = {}
    if args.min_effect is not None:
        options["min_effect"] = args.min_effect
    if args.min_effect_rel is not None:
        options["min_effect_rel"] = args.min_effect_rel
    result = verify_series(series, deploy_at, expect=args.expect, **options).to_dict()
    if args.format == "json":
        print(json.dumps(result, indent=2, default=str))
    else:
        print(f"status: {result['status']}  direction: {result['direction']}  change at: {result['change_at']}")
        ci = result.get("effect_ci") or [None, None]
        print(f"effect: {format_effect(result['effect'], rel=result.get('effect_rel'), ci=ci, label=ci_label({'ci_level': 1 - DEFAULT_ALPHA}))}  "
              f"{p_equals(result['p_value'])}")
        print(f"baseline: {result['baseline']}")
        print(result["reason"])
    if result["status"] == "inconclusive":
        return EXIT_CODES["inconclusive"]
    if args.expect == "any":
        return EXIT_CODES["pass"]
    ok = result["status"] == "shifted" and result["direction"] == args.expect
    return EXIT_CODES["pass"] if ok else EXIT_CODES["fail"]


def cmd_worker(args: argparse.Namespace) -> int:
    import logging
    import threading

    from analyzers.events.store import open_store
    from analyzers.server.worker import Worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    cfg = _config(args)
    store = open_store(args.store or cfg.store_url)
    try:
        worker = Worker(store, cfg)
        if args.once:
            verdicts = worker.run_once()
            for v in verdicts:
                print(f"{v.overall.upper():13s} {v.service} {v.version} ({v.check_kind}): {v.reason}")
            return 0
        stop = threading.Event()
        print(f"worker {worker.worker_id} polling {getattr(store, 'describe', lambda: 'the store')()} every {args.poll:g} s; Ctrl-C to stop", file=sys.stderr)
        try:
            worker.run_forever(stop, args.poll)
        except KeyboardInterrupt:
            stop.set()
        return 0
    finally:
        store.close()


def cmd_demo(args: argparse.Namespace) -> int:
    from analyzers.demo.run import demo_command

    return demo_command(args)


def build_parser() -> argparse.ArgumentParser:
    from analyzers.server.run import add_serve_arguments

    prog = "deploy-verify" if os.path.basename(sys.argv[0]) == "deploy-verify" else "python -m analyzers"
    p = argparse.ArgumentParser(prog=prog, description="Deploy verification from Prometheus metrics.")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the deploy-event webhook receiver")
    add_serve_arguments(s)
    s.set_defaults(func=cmd_serve)

    v = sub.add_parser("verify", help="verify deploys against Prometheus (exit 0 pass, 1 fail, 2 inconclusive, 3 error)")
    v.add_argument("--deploy", action="append", help="deploy id (repeatable)")
    v.add_argument("--service")
    v.add_argument("--environment")
    v.add_argument("--since", help="e.g. 24h or an RFC 3339 time (default 24h)")
    v.add_argument("--format", choices=("markdown", "json", "html"), default="markdown")
    v.add_argument("--output", "-o", help="write the report to this file")
    for opt in ("--store", "--config", "--prometheus-url"):
        v.add_argument(opt)
    v.add_argument("--version", help="with --service: the newest deploy of this version")
    v.add_argument("--wait", help="block up to this long (e.g. 30m) for a final verdict; exits at once on fail")
    v.add_argument("--poll", type=float, default=30.0, help="seconds between checks with --wait")
    v.add_argument("--no-save", action="store_true", help="do not store the verdicts")
    v.set_defaults(func=cmd_verify)

    vs = sub.add_parser("verify-series", help="offline check of an exported CSV (timestamp,value)")
    vs.add_argument("file")
    vs.add_argument("--deploy-at", required=True)
    vs.add_argument("--expect", choices=("increase", "decrease", "any"), default="any")
    vs.add_argument("--time-column")
    vs.add_argument("--value-column")
    vs.add_argument("--min-effect", type=float)
    vs.add_argument("--min-effect-rel", type=float)
    vs.add_argument("--format", choices=("text", "json"), default="text")
    vs.set_defaults(func=cmd_verify_series)

    c = sub.add_parser("canary", help="judge a canary against its baseline now (exit 0 pass, 1 fail, 2 inconclusive)")
    c.add_argument("--deploy", help="deploy id")
    c.add_argument("--service")
    c.add_argument("--environment")
    c.add_argument("--version", help="with --service: the newest deploy of this version")
    c.add_argument("--format", choices=("text", "json"), default="text")
    for opt in ("--store", "--config", "--prometheus-url"):
        c.add_argument(opt)
    c.add_argument("--no-save", action="store_true", help="do not store the canary verdict")
    c.set_defaults(func=cmd_canary)

    r = sub.add_parser("replay", help="re-verify past deploys with the current config and show what changes")
    r.add_argument("--since", default="30d")
    r.add_argument("--service")
    for opt in ("--store", "--config", "--prometheus-url"):
        r.add_argument(opt)
    r.add_argument("--save", action="store_true", help="store the new verdicts")
    r.add_argument("--workers", type=_workers, default=0,
                   help="processes verifying services in parallel (default 0: one per CPU)")
    r.set_defaults(func=cmd_replay)

    w = sub.add_parser("worker", help="run scheduled verifications (first, finished, final) and deliver reports")
    w.add_argument("--store")
    w.add_argument("--config")
    w.add_argument("--prometheus-url")
    w.add_argument("--poll", type=float, default=5.0, help="seconds between passes")
    w.add_argument("--once", action="store_true", help="run what is due now, then exit")
    w.set_defaults(func=cmd_worker)

    from analyzers.demo.run import add_demo_parser

    add_demo_parser(sub).set_defaults(func=cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except PrometheusUnreachable as exc:
        if args.debug:
            raise
        text = " ".join(str(exc).split())
        print(f"error: could not check, nothing was verified or stored: {text}", file=sys.stderr)
        return EXIT_CODES["error"]
    except AnalyzerError as exc:
        if args.debug:
            raise
        print("error: " + " ".join(str(exc).split()), file=sys.stderr)
        return EXIT_CODES["error"]
