"""``replay`` (past deploys re-verified with the current config) and ``verify-series`` (an exported CSV)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime

from analyzers.cli.common import cli_config, parse_time, store_url
from analyzers.errors import ConfigError
from analyzers.model import EXIT_CODES, DeployVerdict
from analyzers.text import ci_label, format_effect, format_time, p_equals


def _stored_before_after(store, deploy_ids: list[str]) -> dict[str, DeployVerdict]:  # type: ignore[no-untyped-def]
    """Each deploy's latest before/after verdict: what a replay (before/after only) is compared with.
    The store's latest verdict combines it with the canary's, so a canary that failed would read as
    "fail -> pass" under an unchanged config."""
    from analyzers.events.combined import latest_pair

    out = {}
    for did, v in store.latest_verdicts(deploy_ids).items():
        if v.check_kind == "canary" or any(m.role == "canary" for m in v.metrics):
            v = latest_pair(store.verdict_history(did))[1]
        if v is not None:
            out[did] = v
    return out


def cmd_replay(args: argparse.Namespace) -> int:
    """Re-verify past deploys with the current config; show what would change."""
    from collections import Counter

    from analyzers.events.store import open_store
    from analyzers.prometheus.client import PrometheusClient
    from analyzers.verify.fleet import verify_many

    cfg = cli_config(args)
    store = open_store(store_url(args, cfg))
    try:
        now = datetime.now(UTC)
        since = parse_time(args.since, now=now)
        deploys = sorted(store.list_deploys(service=args.service, since=since, limit=100000), key=lambda d: d.started_at)
        if not deploys:
            print(f"No deploys since {since.isoformat()}; nothing to replay.", file=sys.stderr)
            return 0
        before = _stored_before_after(store, [d.deploy_id for d in deploys])
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
    print(f"{len(changed)} of them differ from the stored before/after verdicts (canary checks are not replayed):")
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
    try:
        if pd.api.types.is_numeric_dtype(ts):
            unit = "ms" if ts.dropna().abs().max() > 1e11 else "s"
            index = pd.to_datetime(ts, unit=unit, utc=True)
        else:
            index = pd.to_datetime(ts, utc=True, format="ISO8601")
    except (ValueError, OverflowError, TypeError) as exc:
        bad = next((f"row {i + 2}: {v!r}" for i, v in enumerate(ts) if not _reads_as_time(v)), "a value")
        raise ConfigError(f"cannot read column {tcol!r} of {args.file} as times ({bad}): use RFC 3339 "
                          "(2026-11-27T10:00:00Z) or Unix seconds or milliseconds, or name the column with "
                          "--time-column") from exc
    series = pd.Series(pd.to_numeric(df[vcol], errors="coerce").to_numpy(dtype=float), index=pd.DatetimeIndex(index))
    series = series.sort_index()
    series = series[~series.index.duplicated()]
    deploy_at = parse_time(args.deploy_at, now=datetime.now(UTC))
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


def _reads_as_time(value: object) -> bool:
    import pandas as pd

    try:
        pd.to_datetime(value, utc=True, format="ISO8601")
    except (ValueError, OverflowError, TypeError):
        return False
    return True
