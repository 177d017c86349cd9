"""The Latency page's before/after panel: two windows' bucket distributions compared.

Around a deploy it compares the windows the deploy's verdict compared (so the panel and the
verdict look at the same requests), opening on the deploy in the URL (``?deploy=<id>``) or the
latest failing one; or any two windows of one length. Counts come from one ``increase()`` per
window, never from averaged per-step percentiles.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from analyzers.model import Deploy, DeployVerdict, to_utc
from analyzers.text import p_equals
from dashboard import data
from dashboard.components import charts, common, figures, latency_charts

WINDOW_LENGTHS = ("15m", "30m", "1h", "3h", "1d")


@dataclass(frozen=True)
class Scope:
    """What the panel compares: one service's histogram, read with this config, shown in this zone."""

    config: Any
    config_key: str
    histogram: str
    service: str
    zone: common.ViewerZone
    scrape_s: int


def pick_compare_deploy(deploys: list[Deploy], verdicts: dict) -> Deploy | None:
    """The deploy the panel opens on: the one in the URL (``?deploy=<id>``, or the older ``?cmp=``
    label), else the latest failing one, else the latest."""
    wanted = common.query_value("deploy")
    legacy = common.query_value("cmp")
    for d in deploys:
        if d.deploy_id == wanted or (legacy and common.deploy_choice_label(d.version, d.started_at) == legacy):
            return d
    newest_first = sorted(deploys, key=lambda d: d.started_at, reverse=True)
    failing = [d for d in newest_first if charts.verdict_state(verdicts.get(d.deploy_id)) == "fail"]
    pool = failing or newest_first
    return pool[0] if pool else None


def verdict_windows(verdict: DeployVerdict | None) -> tuple[tuple[int, int], tuple[int, int], str] | None:
    """The before and after windows (Unix s) the verdict compared, from its latency metric if it has
    one, else from any metric, and that metric's name; None without a verdict or windows."""
    if verdict is None:
        return None
    ranked = sorted(verdict.metrics, key=lambda m: 0 if m.metric.startswith("latency") else 1)
    for mv in ranked:
        r = mv.result or {}
        bw, aw = r.get("before_window"), r.get("after_window")
        try:
            if bw and aw and all(bw) and all(aw):
                b = (int(to_utc(bw[0]).timestamp()), int(to_utc(bw[1]).timestamp()))
                a = (int(to_utc(aw[0]).timestamp()), int(to_utc(aw[1]).timestamp()))
                if b[1] > b[0] and a[1] > a[0]:
                    return b, a, mv.metric
        except (TypeError, ValueError, KeyError):
            continue
    return None


def verdict_summary(verdict: DeployVerdict) -> str:
    """What decided the verdict and how its latency metrics came out, each with its role (a guard's
    before/after check and a canary's can judge the same metric differently): `` (failed on
    error_ratio guard regressed; latency: latency_p99 guard ok)``, Markdown-escaped; "" if nothing.

    Naming only the latency metrics read "FAIL (latency_p99: ok)" when another metric failed."""
    def name(m: Any) -> str:
        return f"{m.metric} {m.role} {m.outcome.replace('_', ' ')}"

    failed = [m for m in verdict.metrics if m.failed]
    latency = [m for m in verdict.metrics if m.metric.startswith("latency") and not m.failed]
    parts = ([f"failed on {', '.join(name(m) for m in failed)}"] if failed else []) + (
        [f"latency: {', '.join(name(m) for m in latency)}"] if latency else [])
    return f" ({common.md_escape('; '.join(parts))})" if parts else ""


def before_after(scope: Scope, deploys: list[Deploy], verdicts: dict, tr: common.TimeRange, native: bool = False) -> None:
    mode = st.segmented_control(
        "Compare", ["deploy", "windows"], default="deploy", key="cmp_mode", bind="query-params", persist_state="page",
        help="Around a deploy, or any two windows of the same length (e.g. today vs yesterday).",
    ) or "deploy"
    if mode == "windows":
        _two_windows(scope, tr, native)
        return
    if not deploys:
        st.info("No deploy of this service in the range: widen the range, or compare two windows.")
        return
    first = pick_compare_deploy(deploys, verdicts)
    ids = [d.deploy_id for d in sorted(deploys, key=lambda d: d.started_at, reverse=True)]
    by_id = {d.deploy_id: d for d in deploys}

    def label(deploy_id: str) -> str:
        d = by_id[deploy_id]
        return (f"{d.version} · {common.fmt_time(d.started_at, scope.zone)} · "
                f"{charts.verdict_state(verdicts.get(deploy_id))}")

    def remember() -> None:
        st.query_params["deploy"] = st.session_state["cmp_deploy"]
        st.query_params.pop("cmp", None)

    # Not bound to the URL directly: the options are shown in the viewer's zone, the URL keeps the id.
    st.session_state["cmp_deploy"] = first.deploy_id if first is not None else ids[0]
    picked = st.selectbox("Deploy", ids, key="cmp_deploy", format_func=label, on_change=remember,
                          help="Opens on the deploy you came from, else the latest failing one. Compares the "
                               "windows its verdict compared.")
    deploy = by_id[picked]
    windows = verdict_windows(verdicts.get(deploy.deploy_id))
    if windows is not None:
        (b0, b1), (a0, a1), metric = windows
        st.caption(f"The windows the verdict compared for {common.md_escape(metric)}, so this panel and the verdict look at the "
                   "same requests.")
        _load_and_compare(scope, b0, b1, a0, a1, native=native, verdict=verdicts.get(deploy.deploy_id))
        return
    window_s = int(scope.config.verification.window_after_s)
    t0 = int(deploy.started_at.timestamp())
    settle = int((deploy.finished_at - deploy.started_at).total_seconds()) if deploy.finished_at else 0
    settle = max(0, min(settle, 3600))
    after_start = t0 + settle
    after_end = min(after_start + window_s, common.floor_now(60))
    if after_end - after_start < 4 * scope.scrape_s:
        st.info("Too little time has passed since this deploy to compare: try again in a few minutes.")
        return
    st.caption("No verdict stored for this deploy yet: comparing the configured window before the deploy with "
               "the same length after it finished.")
    _load_and_compare(scope, t0 - window_s, t0, after_start, after_end, native=native)


def _two_windows(scope: Scope, tr: common.TimeRange, native: bool = False) -> None:
    """Two windows of one length, each given by its end: picked in the page's zone, kept in the URL in
    UTC (``cmp_a``, ``cmp_b``) so shared links agree."""
    c1, c2, c3 = st.columns(3)
    length = c1.selectbox("Window length", WINDOW_LENGTHS, index=1, key="cmp_len", bind="query-params", persist_state="page")
    length_s = common.preset_seconds(length)
    a1 = common.zoned_datetime_input(f"Second window ends ({scope.zone.name})", "cmp_a", tr.end, scope.zone, container=c3)
    b1 = common.zoned_datetime_input(f"First window ends ({scope.zone.name})", "cmp_b", tr.end - 86400, scope.zone, container=c2)
    _load_and_compare(scope, b1 - length_s, b1, a1 - length_s, a1, names=("first", "second"), native=native)


def _load_and_compare(scope: Scope, b0: int, b1: int, a0: int, a1: int, names: tuple[str, str] = ("before", "after"),
                      native: bool = False, verdict: DeployVerdict | None = None) -> None:
    before, after = data.load_distributions(scope.config_key, scope.config, scope.histogram, scope.service,
                                            ((names[0], b0, b1), (names[1], a0, a1)), native=native)
    for w in before.warnings:
        st.warning(f"Prometheus warning: {common.md_escape(w)}")
    if not before.les or not after.les or before.les != after.les:
        st.info(f"No bucket data in the {names[0]} or the {names[1]} window.")
        return
    _compare(scope, before, after, names, verdict)


def _compare(scope: Scope, before: data.Distribution, after: data.Distribution, names: tuple[str, str],
             verdict: DeployVerdict | None = None) -> None:
    from analyzers.stats import buckets

    first, second = names
    les = before.les
    b = np.asarray(before.cumulative, dtype=float)
    a = np.asarray(after.cumulative, dtype=float)
    if b[-1] <= 0 or a[-1] <= 0:
        st.info(f"No requests in the {first} or the {second} window.")
        return
    cmp = buckets.compare_bucket_distributions(les, b.tolist(), a.tolist(), cumulative=True)
    p = cmp.p_value
    if p != p:  # NaN: too few requests to form two groups
        verdict_text = "too few requests to test"
    elif p < scope.config.verification.alpha:
        verdict_text = "The distributions differ"
    else:
        verdict_text = "No detectable difference"
    if verdict is not None:
        st.markdown(f"Verdict of this deploy: **{verdict.overall.upper()}**{verdict_summary(verdict)}. It tests "
                    "each metric's series for a lasting shift; the bucket test below only asks whether the two "
                    "windows' request distributions differ at all.")
    st.markdown(
        f"Bucket test: {verdict_text} ({cmp.method} on bucket counts: {p_equals(p)}; largest gap between the "
        f"two CDFs {cmp.max_cdf_diff * 100:.1f} pp; {cmp.n_before:,.0f} requests {first}, "
        f"{cmp.n_after:,.0f} {second}). With many requests tiny gaps are significant: read the gap too."
    )
    if before.source == "native histogram":
        used = np.count_nonzero(np.diff(b, prepend=0.0) + np.diff(a, prepend=0.0) > 0)
        st.caption(
            f"Native histogram: {used} non-empty exponential buckets ({before.native_buckets} {first}, "
            f"{after.native_buckets} {second}) pooled into {len(cmp.pooled_les)} groups for the test, "
            "neighbours merged until every group expects at least 5 requests in each window."
        )
    rows = []
    for label, q in data.PERCENTILES.items():
        eb, ea = buckets.quantile_from_buckets(les, b.tolist(), q), buckets.quantile_from_buckets(les, a.tolist(), q)
        rows.append({
            "percentile": label,
            f"{first} (ms)": round(eb.value * 1000, 2),
            f"{second} (ms)": round(ea.value * 1000, 2),
            "change (ms)": round((ea.value - eb.value) * 1000, 2),
            f"{first} bucket (ms)": f"{eb.lower * 1000:g}–{eb.upper * 1000:g}",
            f"{second} bucket (ms)": f"{ea.lower * 1000:g}–{ea.upper * 1000:g}",
        })
    st.dataframe(pd.DataFrame(rows), hide_index=True)
    fig = figures.cached(lambda: latency_charts.cdf_overlay_chart(les, {first: b, second: a}), "cdf", les, first, b,
                         second, a)
    st.plotly_chart(fig, key="before_after")
    st.caption(
        f"{first.capitalize()}: {common.fmt_time(data.to_dt(before.start), scope.zone)} → "
        f"{common.fmt_time(data.to_dt(before.end), scope.zone)}; {second}: {common.fmt_time(data.to_dt(after.start), scope.zone)}"
        f" → {common.fmt_time(data.to_dt(after.end), scope.zone)}. Each window's counts come from one "
        "increase() over the whole window, never from averaged per-step percentiles."
    )
