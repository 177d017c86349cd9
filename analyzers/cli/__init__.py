"""Command line: ``python -m analyzers {serve,verify,verify-series,canary,replay,worker,demo}``.

The parser and the small commands live here; ``verify``/``canary`` in :mod:`analyzers.cli.verify`,
``replay``/``verify-series`` in :mod:`analyzers.cli.offline`, what they share in :mod:`analyzers.cli.common`.

Exit codes of ``verify`` and ``verify-series``: 0 pass, 1 fail, 2 inconclusive, 3 error.
Errors print one line to stderr that says what to do next; no tracebacks (``--debug`` shows them).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from analyzers.cli.common import cli_config, store_url, workers_arg
from analyzers.cli.offline import cmd_replay, cmd_verify_series
from analyzers.cli.verify import cmd_canary, cmd_verify
from analyzers.errors import AnalyzerError, PrometheusUnreachable
from analyzers.model import EXIT_CODES

__all__ = ["build_parser", "main"]


def cmd_serve(args: argparse.Namespace) -> int:
    from analyzers.server.run import serve, settings_from_args

    serve(settings_from_args(args))
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    import logging
    import threading

    from analyzers.events.store import open_store

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    cfg = cli_config(args)
    # Like verify: never a fresh empty ./data/deploys.db polled for ever (no config given, or a typo
    # in the path): the deploys come from the receiver's store, so one that does not exist is an error.
    url = store_url(args, cfg)
    from analyzers.server.worker import Worker  # the statistics' imports, once the store is known

    store = open_store(url)
    try:
        worker = Worker(store, cfg)
        where = getattr(store, "describe", lambda: "the store")()
        if args.once:
            verdicts = worker.run_once()
            for v in verdicts:
                print(f"{v.overall.upper():13s} {v.service} {v.version} ({v.check_kind}): {v.reason}")
            if not verdicts:
                print(f"no check due in {where}", file=sys.stderr)
            return 0
        stop = threading.Event()
        print(f"worker {worker.worker_id} polling {where} every {args.poll:g} s; Ctrl-C to stop", file=sys.stderr)
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


def _add_sources(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", help="sqlite:////abs/path.db or postgresql://... (default: $DEPLOY_STORE_URL, "
                                   "else the config's store.url)")
    p.add_argument("--config", help="TOML config (default: $ANALYZERS_CONFIG)")
    p.add_argument("--prometheus-url", help="Prometheus-compatible API base URL (default: $PROMETHEUS_URL, "
                                            "else the config's prometheus.url)")


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
    v.add_argument("--service", help="only this service's deploys")
    v.add_argument("--environment", help="only deploys to this environment (e.g. production)")
    v.add_argument("--since", help="e.g. 24h or an RFC 3339 time (default 24h)")
    v.add_argument("--format", choices=("markdown", "json", "html"), default="markdown", help="report format")
    v.add_argument("--output", "-o", help="write the report to this file (written even when nothing matched)")
    _add_sources(v)
    v.add_argument("--version", help="with --service: the newest deploy of this version")
    v.add_argument("--wait", help="block up to this long (e.g. 30m) for a final verdict; exits at once on fail")
    v.add_argument("--poll", type=float, default=30.0, help="seconds between checks with --wait")
    v.add_argument("--no-save", action="store_true", help="do not store the verdicts")
    v.set_defaults(func=cmd_verify)

    vs = sub.add_parser("verify-series", help="offline check of an exported CSV (timestamp,value)")
    vs.add_argument("file", help="CSV with a header: timestamp (RFC 3339, Unix s or ms) and value columns")
    vs.add_argument("--deploy-at", required=True, help="when the deploy started: RFC 3339 or Unix seconds")
    vs.add_argument("--expect", choices=("increase", "decrease", "any"), default="any",
                    help="the direction the deploy should move the series (default any)")
    vs.add_argument("--time-column", help="name of the time column (default: the first)")
    vs.add_argument("--value-column", help="name of the value column (default: the second)")
    vs.add_argument("--min-effect", type=float, help="smallest shift that counts, in the series' units")
    vs.add_argument("--min-effect-rel", type=float, help="smallest shift that counts, as a fraction (0.1: 10%%)")
    vs.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    vs.set_defaults(func=cmd_verify_series)

    c = sub.add_parser("canary", help="judge a canary against its baseline now (exit 0 pass, 1 fail, 2 inconclusive)")
    c.add_argument("--deploy", help="deploy id")
    c.add_argument("--service", help="with --version: the canary's service")
    c.add_argument("--environment", help="only deploys to this environment")
    c.add_argument("--version", help="with --service: the newest deploy of this version")
    c.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    _add_sources(c)
    c.add_argument("--no-save", action="store_true", help="do not store the canary verdict")
    c.set_defaults(func=cmd_canary)

    r = sub.add_parser("replay", help="re-verify past deploys with the current config and show what changes")
    r.add_argument("--since", default="30d", help="deploys started since: a duration or an RFC 3339 time (default 30d)")
    r.add_argument("--service", help="only this service's deploys")
    _add_sources(r)
    r.add_argument("--save", action="store_true", help="store the new verdicts")
    r.add_argument("--workers", type=workers_arg, default=0,
                   help="processes verifying services in parallel (default 0: one per CPU)")
    r.set_defaults(func=cmd_replay)

    w = sub.add_parser("worker", help="run scheduled verifications (first, finished, final) and deliver reports")
    _add_sources(w)
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
    except Exception as exc:  # noqa: BLE001 - a bug must not exit 1, which a CI gate reads as "fail"
        if args.debug:
            raise
        text = " ".join(str(exc).split())[:500]
        print(f"error: unexpected {type(exc).__name__}: {text}; nothing was judged (exit 3). Run again with "
              "--debug for the traceback and report it.", file=sys.stderr)
        return EXIT_CODES["error"]
