"""Deploy detail (``?deploy=<id>``): the verdict and, per metric, the evidence behind it.

Text that arrived in the deploy event (service, version, author, description...) is shown
escaped or as plain text, never as Markdown/HTML: a webhook must not be able to restyle the
page or plant links.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import streamlit as st

from analyzers.model import Deploy, DeployVerdict, MetricVerdict, to_utc
from dashboard import data
from dashboard.components import charts, common

DEPLOY_PAGE = "views/deploy.py"
OUTCOME_COLORS: dict[str, common.BadgeColor] = {
    "confirmed": "green",
    "ok": "green",
    "no_effect": "orange",
    "inconclusive": "orange",
    "opposite": "red",
    "regressed": "red",
    "error": "gray",
}
MAX_CHART_POINTS = 1500

esc = common.md_escape
zone = common.viewer_zone()

try:
    config = data.get_config()
except Exception as exc:  # noqa: BLE001
    st.error(common.explain_error(exc, what="Loading the configuration"), icon=":material/error:")
    st.stop()


def _pick_deploy() -> None:
    """No id in the URL: offer the last week's deploys."""
    st.title("Deploy detail")
    st.caption("Pick a deploy, or open one from the Deploys page.")
    end = common.floor_now(60)
    with common.panel("Loading recent deploys"):
        recent = data.load_deploys(config.store_url, end - 7 * 86400, end, None)
        if not recent.deploys:
            st.info("No deploys in the last 7 days.")
            return
        labels = {
            d.deploy_id: f"{d.service} {d.version} · {d.environment} · {common.fmt_time(d.started_at, zone)}"
            for d in recent.deploys
        }
        picked = st.selectbox("Deploy", list(labels), format_func=labels.__getitem__, index=None, key="deploy_pick")
        if picked:
            st.query_params["deploy"] = picked
            st.rerun()


def _window(result: dict[str, Any], key: str) -> tuple[datetime, datetime] | None:
    """``before_window``/``after_window`` from a series result, as aware UTC datetimes."""
    w = result.get(key)
    try:
        if isinstance(w, dict):
            return to_utc(w["start"]), to_utc(w["end"])
        if isinstance(w, (list, tuple)) and len(w) == 2 and w[0] and w[1]:
            return to_utc(w[0]), to_utc(w[1])
    except (KeyError, TypeError, ValueError):
        return None
    return None


def _chart_span(deploy: Deploy, mv: MetricVerdict, before: Any, after: Any) -> tuple[int, int, int]:
    """Start, end, step (Unix s, aligned) for a metric chart: both windows plus a margin, up to now."""
    v = config.verification
    start = before[0] if before else deploy.started_at - timedelta(seconds=v.window_before_s)
    if after:
        end = after[1]
    else:
        end = mv.window_end or deploy.started_at + timedelta(seconds=v.window_after_s + 1800)
    margin = (end - start) * 0.1
    start, end = start - margin, end + margin
    step = max(int(v.step_s), int((end - start).total_seconds() / MAX_CHART_POINTS) or 1)
    end_s = min(int(end.timestamp()), common.floor_now(step))
    start_s = int(start.timestamp()) // step * step
    end_s = -(-end_s // step) * step
    return start_s, max(end_s, start_s + step), step


def _header(deploy: Deploy, verdict: DeployVerdict | None) -> None:
    kind = "Release" if deploy.kind == "release" else "Deploy"
    st.title(f"{kind}: {esc(deploy.service)} {esc(deploy.version)}")
    state = charts.verdict_state(verdict)
    badge = {"unverified": "NOT VERIFIED YET"}.get(state, state.upper())
    st.badge(badge, color=common.BADGE_COLORS[state])
    if verdict is not None:
        st.markdown(f"**{esc(verdict.reason)}**")
        st.caption(f"Checked {common.fmt_time(verdict.checked_at, zone)}. {zone.note()}")
    else:
        st.caption(f"No verdict stored yet: use 'Verify now' below. {zone.note()}")
    if not deploy.signed:
        st.warning("This event carried no valid webhook signature: treat its fields as unverified.")

    left, right = st.columns(2)
    left.markdown(
        "\n".join(
            [
                f"- **Service:** {esc(deploy.service)}",
                f"- **Environment:** {esc(deploy.environment)}",
                f"- **Version:** {esc(deploy.version)}",
                f"- **Kind:** {esc(deploy.kind)}"
                + (f" (flag {esc(deploy.flag)}: {esc(deploy.flag_from)} → {esc(deploy.flag_to)})"
                   if deploy.flag else ""),
                f"- **Status:** {esc(deploy.status)}",
                f"- **Deploy id:** {esc(deploy.deploy_id)}",
            ]
        )
    )
    duration = (
        common.fmt_duration((deploy.finished_at - deploy.started_at).total_seconds())
        if deploy.finished_at else "—"
    )
    right.markdown(
        "\n".join(
            [
                f"- **Started:** {common.fmt_time(deploy.started_at, zone, seconds=True)}",
                f"- **Finished:** {common.fmt_time(deploy.finished_at, zone, seconds=True)} ({duration})",
                f"- **Author:** {esc(deploy.author or '—')}",
                f"- **Commit:** {esc(deploy.commit_sha or '—')}" + (f" ({esc(deploy.ref)})" if deploy.ref else ""),
                f"- **Source:** {esc(deploy.source)}",
                "- **Expectations:** "
                + (", ".join(f"{esc(e.metric)} {esc(e.expect)}" for e in deploy.expectations) or "none declared"),
            ]
        )
    )
    if deploy.description:
        st.caption("Description (as sent, plain text)")
        st.text(deploy.description[:5000])


def _overlaps(detail: data.DeployDetail) -> None:
    from analyzers.verify.deploy import find_overlaps

    verdict = detail.verdict
    ids = set(verdict.overlapping) if verdict else set()
    related = {d.deploy_id for d in find_overlaps(detail.deploy, detail.neighbours, config)}
    close = [d for d in detail.neighbours if d.deploy_id in ids or d.deploy_id in related]
    if not close:
        return
    st.subheader("Overlapping deploys")
    st.caption(
        f"Deploys of this service or of services it depends on (config: services.<name>.depends_on) within "
        f"{common.fmt_duration(config.verification.overlap_s)}: a change cannot be pinned on one of them alone."
    )
    for d in sorted(close, key=lambda x: x.started_at):
        st.page_link(
            DEPLOY_PAGE,
            label=f"{esc(d.service)} {esc(d.version)} · {esc(d.environment)} · "
                  f"{common.fmt_time(d.started_at, zone)}",
            query_params={"deploy": d.deploy_id},
        )


def _metric_section(deploy: Deploy, mv: MetricVerdict) -> None:
    from analyzers.delivery.reports import effect_text
    from analyzers.text import ci_label, format_value

    result = mv.result or {}
    with st.container(border=True):
        title, badge = st.columns([4, 1])
        title.subheader(f"{esc(mv.metric)} · {mv.role}")
        badge.badge(mv.outcome.replace("_", " "), color=OUTCOME_COLORS.get(mv.outcome, "gray"))
        st.markdown(esc(mv.reason))
        effect, ci = result.get("effect"), result.get("effect_ci") or (None, None)
        rel = result.get("effect_rel")
        c1, c2, c3, c4, c5 = st.columns(5)
        c1.metric("Effect", _signed(effect, mv.unit), help=f"Shift after the deploy, in {mv.unit or 'metric units'}.")
        c2.metric(ci_label(result), f"{format_value(ci[0], mv.unit)} … {format_value(ci[1], mv.unit)}")
        c3.metric("p-value", _p(result.get("p_value")),
                  help="Raw p-value of this metric's test; see the adjusted one beside it.")
        c4.metric("p (Holm-adjusted)", _p(mv.p_adjusted),
                  help="Adjusted for the number of metrics tested on this deploy.")
        n_before, n_after = result.get("n_before"), result.get("n_after")
        c5.metric("Points before / after", f"{n_before if n_before is not None else '—'} / "
                                           f"{n_after if n_after is not None else '—'}")
        st.caption(
            f"Full effect: {effect_text(mv)}"
            + (f" · relative {float(rel) * 100:+.1f}%" if rel is not None else "")
            + f" · baseline: {esc(result.get('baseline') or 'n/a')}"
        )
        expect = (f"declared: {mv.expect}" if mv.role == "expectation" else f"guard, watching for: {mv.expect}")
        expect += f" · unit: {mv.unit}" if mv.unit else ""
        if result.get("needed_more_s"):
            expect += f" · wait about {common.fmt_duration(float(result['needed_more_s']))} more"
        if result.get("method"):
            expect += f" · method: {result['method']}"
        st.caption(expect)
        if mv.query:
            common.show_query(mv.query)
        before, after = _window(result, "before_window"), _window(result, "after_window")
        change_at = to_utc(result["change_at"]) if result.get("change_at") else None
        with common.panel(f"Chart of {mv.metric}"):
            start, end, step = _chart_span(deploy, mv, before, after)
            with st.spinner(f"Fetching {mv.metric}…"):
                _query, series, warns = data.load_metric_series(
                    data.fingerprint(config), config, f"{deploy.deploy_id}@{deploy.updated_at}", deploy,
                    mv.metric, start, end, step,
                )
            for w in warns:
                st.warning(f"Prometheus warning: {esc(w)}")
            if series.notna().sum() == 0:
                st.info(f"No data for {esc(mv.metric)} between {common.fmt_time(data.to_dt(start), zone)} and "
                        f"{common.fmt_time(data.to_dt(end), zone)}.")
            else:
                fig = charts.metric_chart(
                    series, metric=mv.metric, unit=mv.unit, zone=zone, deploy_at=deploy.started_at,
                    before=before, after=after, change_at=change_at,
                )
                st.plotly_chart(fig, key=f"chart_{mv.metric}")
                lo, hi = result.get("effect_ci") or (None, None)
                st.caption(
                    f"Step {step} s. Shaded: windows compared. Black line: deploy; red dashed: detected change. "
                    f"Effect CI: {format_value(lo, mv.unit)} to {format_value(hi, mv.unit)}."
                )


def _signed(x: Any, unit: str) -> str:
    from analyzers.text import format_value

    if x is None:
        return "n/a"
    return ("+" if float(x) >= 0 else "-") + format_value(abs(float(x)), unit)


def _p(x: Any) -> str:
    return "n/a" if x is None else f"{float(x):.3g}"


def _history(history: tuple[DeployVerdict, ...]) -> None:
    if len(history) == 0:
        return
    st.subheader("Verdict history")
    st.dataframe(
        pd.DataFrame(
            [
                {
                    f"checked at ({zone.name})": common.fmt_time(v.checked_at, zone, seconds=True),
                    "check": v.check_kind,
                    "verdict": v.overall,
                    "what changed": "; ".join(v.changes),
                    "reason": v.reason,
                    "metrics": ", ".join(f"{m.metric}: {m.outcome}" for m in v.metrics),
                }
                for v in reversed(history)
            ]
        ),
        hide_index=True,
    )


def _deliveries(deliveries: tuple[dict[str, Any], ...]) -> None:
    if not deliveries:
        return
    st.subheader("Deliveries")
    st.caption("Where the verdicts of this deploy were sent (config: notify.routes, grafana).")
    st.dataframe(
        pd.DataFrame(
            [
                {
                    f"sent at ({zone.name})": common.fmt_time(to_utc(d["at"]), zone, seconds=True) if d.get("at") else "",
                    "target": d.get("target"),
                    "kind": d.get("kind"),
                    "verdict": d.get("overall"),
                    "delivered": "yes" if d.get("ok") else "no",
                    "attempts": d.get("attempts"),
                    "HTTP status": d.get("status_code"),
                    "error": d.get("error") or "",
                }
                for d in reversed(deliveries)
            ]
        ),
        hide_index=True,
    )


def _actions(deploy: Deploy, verdict: DeployVerdict | None, neighbours: tuple[Deploy, ...]) -> None:
    from analyzers.delivery.reports import render_html, render_json, render_markdown

    st.subheader("Report and actions")
    cols = st.columns(4)
    if verdict is not None:
        with common.panel("Building the report"):
            reports = (
                ("Markdown", "md", "text/markdown", render_markdown(verdict, deploy, dashboard_url=config.dashboard_url)),
                ("JSON", "json", "application/json", render_json(verdict, deploy)),
                ("HTML", "html", "text/html", render_html(verdict, deploy)),
            )
            for col, (name, ext, mime, body) in zip(cols, reports, strict=False):
                col.download_button(f"Download report ({name})", body, file_name=f"deploy-{deploy.deploy_id}.{ext}",
                                    mime=mime, on_click="ignore", key=f"dl_{ext}")
    label = "Re-verify now" if verdict is not None else "Verify now"
    if cols[3 if verdict is not None else 0].button(label, key="reverify", type="primary",
                      help="Fetch the metrics again, test them and store the new verdict."):
        with common.panel("Verifying"), st.spinner("Fetching metrics and testing…"):
            from analyzers.verify.deploy import verify_deploy

            fresh = verify_deploy(deploy, config, data.get_client(config), others=neighbours,
                                  now=datetime.now(UTC))
            if fresh.metrics and all(m.outcome == "error" for m in fresh.metrics):
                st.error(
                    "Verification could not fetch any metric, so no verdict was stored: "
                    f"{esc(fresh.metrics[0].reason)}. Check that Prometheus is reachable, then try again."
                )
            else:
                data.save_verdict(config.store_url, fresh)
                st.session_state["reverified"] = fresh.overall
                st.rerun()
    if st.session_state.pop("reverified", None):
        st.success("Verified again; the verdict above is the new one.")


def main() -> None:
    deploy_id = common.query_value("deploy")
    if not deploy_id:
        _pick_deploy()
        return
    st.query_params["deploy"] = deploy_id
    detail: data.DeployDetail | None = None
    with common.panel("Loading the deploy"), st.spinner("Loading the deploy…"):
        detail = data.load_deploy(config.store_url, deploy_id, int(max(config.verification.overlap_s, 3600)))
        if detail is None:
            st.warning(
                f"No deploy with id {esc(deploy_id)} in the store. It may not have arrived yet (events are "
                "stored when the receiver acknowledges them), or the link is wrong."
            )
            st.page_link("views/deploys.py", label="Back to all deploys")
    if detail is None:
        return
    deploy, verdict = detail.deploy, detail.verdict
    _header(deploy, verdict)
    if verdict is not None:
        for w in verdict.warnings:
            st.warning(esc(w))
        if verdict.multiple_testing:
            st.caption(f"Multiple testing: {esc(verdict.multiple_testing)}")
        if verdict.retry_after_s:
            st.info(f"Not enough data yet: check again in about {common.fmt_duration(verdict.retry_after_s)}.")
    st.page_link(
        "views/latency.py",
        label="Latency around this deploy (percentiles, heatmap, before/after)",
        icon=":material/speed:",
        query_params={
            "svc": deploy.service,
            "lat_range": "custom",
            "lat_from": common.url_time(deploy.started_at - timedelta(hours=3)),
            "lat_to": common.url_time(min(deploy.started_at + timedelta(hours=3), datetime.now(UTC))),
            "cmp": common.deploy_choice_label(deploy.version, deploy.started_at),
        },
    )
    _overlaps(detail)
    if verdict is not None:
        st.header("Evidence per metric")
        for mv in verdict.metrics:
            _metric_section(deploy, mv)
    _history(detail.history)
    _deliveries(detail.deliveries)
    _actions(deploy, verdict, detail.neighbours)


main()
