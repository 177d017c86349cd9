"""``verify`` (on demand, or ``--wait`` for the final verdict) and ``canary``: deploys from the store
checked against Prometheus, the report written as Markdown, JSON or HTML, the exit code the verdict's."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta

from analyzers.cli.common import check_output, cli_config, parse_time, store_url
from analyzers.config import Config, parse_duration
from analyzers.errors import ConfigError, PrometheusUnreachable
from analyzers.model import EXIT_CODES, Deploy, DeployVerdict
from analyzers.text import format_time


def _select_deploys(store, args: argparse.Namespace, now: datetime) -> list[Deploy]:  # type: ignore[no-untyped-def]
    if getattr(args, "version", None):
        if not args.service:
            raise ConfigError("--version needs --service")
        since = parse_time(args.since, now=now) if args.since else now - timedelta(days=30)
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
    since = parse_time(args.since, now=now) if args.since else now - timedelta(hours=24)
    deploys = store.list_deploys(service=args.service, environment=args.environment, since=since, limit=100000)
    return sorted(deploys, key=lambda d: d.started_at)


def cmd_verify(args: argparse.Namespace) -> int:
    from analyzers.events.store import open_store
    from analyzers.prometheus.client import PrometheusClient
    from analyzers.verify.canary import with_canaries
    from analyzers.verify.fleet import verify_many

    cfg = cli_config(args)
    check_output(args.output)
    if args.wait:
        return _verify_wait(args, cfg)
    store = open_store(store_url(args, cfg))
    try:
        now = datetime.now(UTC)
        deploys = _select_deploys(store, args, now)
        if not deploys:
            return _no_match(args, _no_match_reason(store, args, now))
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

    cfg = cli_config(args)
    if not args.deploy and not (args.service and args.version):
        raise ConfigError("name the canary: --deploy ID, or --service NAME --version VERSION")
    store = open_store(store_url(args, cfg))  # reading: never creates an empty store
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


def _no_match_reason(store, args: argparse.Namespace, now: datetime) -> str:  # type: ignore[no-untyped-def]
    """Which filters matched nothing, in which store, and what to try next."""
    wanted = [f"{k} {getattr(args, k)!r}" for k in ("service", "environment", "version") if getattr(args, k, None)]
    since = parse_time(args.since, now=now) if args.since else now - timedelta(days=30 if args.version else 1)
    where = getattr(store, "describe", lambda: "the store")()
    text = (f"No deploy{' of ' + ', '.join(wanted) if wanted else ''} started since {format_time(since)} in {where}; "
            "nothing to verify.")
    known = store.services()
    if args.service and args.service not in known:
        return text + (f" No deploy of service {args.service!r} was ever stored; known services: "
                       f"{', '.join(known[:20]) or 'none yet'}. Check --service, or that the pipeline sends its deploy event.")
    return text + (" Widen --since, check --environment/--version, or check that the pipeline sent the deploy event "
                   "(the receiver's GET /v1/deploys lists what arrived).")


def _no_match(args: argparse.Namespace, reason: str) -> int:
    """Nothing to verify: exit 2 (inconclusive), the reason on stderr and as the report, so a pipeline
    step that posts ``--output`` (or parses stdout) gets why instead of a missing file."""
    from analyzers.delivery.reports import render_no_match

    print(f"{reason} (exit 2: inconclusive)", file=sys.stderr)
    _write(args, render_no_match(reason, args.format))
    return EXIT_CODES["inconclusive"]


def _write(args: argparse.Namespace, text: str) -> None:
    if args.output:
        try:
            with open(args.output, "w", encoding="utf-8") as fh:
                fh.write(text)
        except OSError as exc:
            raise ConfigError(f"cannot write the report to {args.output} ({exc.strerror}); choose another --output") from None
    else:
        sys.stdout.write(text)


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
    _write(args, text)


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
    if not (args.deploy or args.version):
        raise ConfigError("--wait needs --deploy ID or --service S --version V")
    if args.version and not args.service:
        raise ConfigError("--version needs --service: --wait waits for the newest deploy of that service and version")
    if args.since:  # a bad --since is a mistake to say now, not a deploy event to wait for
        parse_time(args.since, now=datetime.now(UTC))
    start = time.monotonic()
    client = PrometheusClient(cfg.prometheus)
    verdict: DeployVerdict | None = None
    deploy: Deploy | None = None
    canary: DeployVerdict | None = None
    store = open_store(store_url(args, cfg))
    outage: PrometheusUnreachable | None = None
    try:
        while True:
            now = datetime.now(UTC)
            if args.deploy:  # only an id the store does not hold yet is waited for
                found = [d for d in (store.get_deploy(args.deploy[0]),) if d is not None]
            else:
                found = _select_deploys(store, args, now)
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
            if deploy is not None:  # a CI log reader learns when the answer comes, in UTC like the log
                due = final_due(deploy, cfg)
                ends = now + timedelta(seconds=max(wait_s - elapsed, 0.0))
                state += f" (final verdict due {format_time(due)}; this wait ends {format_time(ends)})"
            print(f"[{int(elapsed)} s / {int(wait_s)} s] {state}; checking again in {args.poll:g} s",
                  file=sys.stderr, flush=True)
            time.sleep(min(args.poll, max(wait_s - elapsed, 0.1)))
    finally:
        store.close()
    if outage is not None and (answer is None or answer.overall != "fail"):
        raise outage
    if verdict is None or answer is None or deploy is None:
        return _no_match(args, f"No matching deploy arrived within {args.wait}: check that the pipeline sends its "
                               "deploy event before this step (the receiver's GET /v1/deploys lists what arrived).")
    _emit(args, cfg, [(verdict, deploy)], [canary])
    return EXIT_CODES[answer.overall]
