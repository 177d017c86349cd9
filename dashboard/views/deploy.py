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

from analyzers.errors import PrometheusUnreachable
from analyzers.model import Deploy, DeployVerdict, MetricVerdict, to_utc
from analyzers.text import redact
from dashboard import data
from dashboard.components import access, charts, common, header

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


#: Failing metrics first, then the undecided, then the passing ones.
OUTCOME_ORDER = {"regressed": 0, "opposite": 0, "no_effect": 1, "inconclusive": 1, "error": 1, "ok": 2, "confirmed": 2}
BANNER_TITLES = {"fail": "FAIL", "pass": "PASS", "inconclusive": "INCONCLUSIVE", "unverified": "NOT VERIFIED YET"}


def _header(deploy: Deploy, verdict: DeployVerdict | None) -> None:
    """Verdict first and big, then what was deployed. Event fields are plain text (HTML-escaped):
    Markdown would turn a URL in a version or author into a live link."""
    kind = "Release" if deploy.kind == "release" else "Deploy"
    plain = common.plain_html
    st.html(f'<h1 style="margin:0 0 .25rem 0;font-size:2rem" data-testid="deploy-title">'
            f"{kind}: {plain(deploy.service)} {plain(deploy.version)}</h1>")
    state = charts.verdict_state(verdict)
    if verdict is not None:
        reason = common.localize_times(verdict.reason, zone)
        common.banner(state, plain(reason), title=BANNER_TITLES[state], big=True)
        st.caption(f"Checked {common.fmt_time(verdict.checked_at, zone)}. {zone.note()}")
    else:
        hint = "use 'Verify now' below" if access.actions_allowed(config) else "the worker stores one after its first check"
        common.banner(state, plain(f"No verdict stored yet: {hint}."), title=BANNER_TITLES[state], big=True)
        st.caption(zone.note())
    if not deploy.signed:
        st.warning("This event carried no valid webhook signature: treat its fields as unverified.")

    duration = (
        common.fmt_duration((deploy.finished_at - deploy.started_at).total_seconds())
        if deploy.finished_at else "—"
    )
    flag = (f" (flag {deploy.flag}: {deploy.flag_from} → {deploy.flag_to})" if deploy.flag else "")
    left_rows = [("Service", deploy.service), ("Environment", deploy.environment), ("Version", deploy.version),
                 ("Kind", f"{deploy.kind}{flag}"), ("Status", deploy.status), ("Deploy id", deploy.deploy_id)]
    right_rows = [
        ("Started", common.fmt_time(deploy.started_at, zone, seconds=True)),
        ("Finished", f"{common.fmt_time(deploy.finished_at, zone, seconds=True)} ({duration})"),
        ("Author", deploy.author or "—"),
        ("Commit", (deploy.commit_sha or "—") + (f" ({deploy.ref})" if deploy.ref else "")),
        ("Source", deploy.source),
        ("Expectations", ", ".join(f"{e.metric} {e.expect}" for e in deploy.expectations) or "none declared"),
    ]
    left, right = st.columns(2)
    for col, rows in ((left, left_rows), (right, right_rows)):
        with col:
            st.html('<ul style="margin:0;padding-left:1.2rem;line-height:1.7" data-testid="deploy-fields">' + "".join(
                f"<li><b>{name}:</b> {plain(value, max_len=500)}</li>" for name, value in rows) + "</ul>")
    if deploy.description:
        st.caption("Description (as sent, plain text)")
        st.text(deploy.description[:5000])


def _overlaps(detail: data.DeployDetail) -> None:
    # from verify.plan, not verify.deploy: that one imports scipy.stats (~2 s on a fresh process)
    from analyzers.verify.plan import find_overlaps

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
    st.dataframe(
        pd.DataFrame([
            {"open": common.deploy_link(d.deploy_id), "service": d.service, "version": d.version,
             "environment": d.environment, f"started ({zone.name})": common.fmt_time(d.started_at, zone)}
            for d in sorted(close, key=lambda x: x.started_at)
        ]),
        hide_index=True, height="content", key="overlaps",
        column_config={"open": st.column_config.LinkColumn("open", display_text="details", width="small")},
    )


def _metric_section(deploy: Deploy, mv: MetricVerdict) -> None:
    from analyzers.text import format_delta

    result = mv.result or {}
    with st.container(border=True):
        title, badge = st.columns([4, 1])
        title.subheader(f"{esc(mv.metric)} · {mv.role}")
        badge.badge(mv.outcome.replace("_", " "), color=OUTCOME_COLORS.get(mv.outcome, "gray"))
        st.markdown(esc(common.localize_times(mv.reason, zone)))
        if mv.role == "canary":
            _canary_figures(mv, result)
        else:
            _before_after_figures(mv, result)
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
                stale = common.stale_note(series, end, step, zone)
                if stale:
                    st.warning(stale, icon=":material/schedule:")
                # the chart is the catalog query's series: its unit, not a canary result's ("ratio")
                spec = config.metrics.get(mv.metric)
                fig = charts.metric_chart(
                    series, metric=mv.metric, unit=spec.unit if spec is not None else mv.unit, zone=zone,
                    deploy_at=deploy.started_at, before=before, after=after, change_at=change_at,
                )
                st.plotly_chart(fig, key=f"chart_{mv.metric}" if mv.role != "canary" else f"chart_canary_{mv.metric}")
                if mv.role == "canary":
                    st.caption(f"Step {step} s. {esc(mv.metric)} of the whole service, every version together; the "
                               "canary test compares the versions' counts (query above) over the same minutes. "
                               "Black line: deploy.")
                else:
                    lo, hi = result.get("effect_ci") or (None, None)
                    st.caption(
                        f"Step {step} s. Shaded: windows compared. Black line: deploy; red dashed: detected change. "
                        f"Effect CI: {format_delta(lo, mv.unit)} to {format_delta(hi, mv.unit)}."
                    )


def _before_after_figures(mv: MetricVerdict, result: dict[str, Any]) -> None:
    from analyzers.text import ci_label, format_delta, format_p, format_relative

    effect, ci = result.get("effect"), result.get("effect_ci") or (None, None)
    rel = result.get("effect_rel")
    # Effect and interval on a row of their own: "+148.5 ms" and "-25.0 to +344.0 ms" must never
    # be cut (in five columns at a 1,400-pixel-wide window one of them or a p-value was).
    c1, c2 = st.columns([1, 2])
    c3, c4, c5 = st.columns(3)
    unit_help = "percentage points (pp) of the ratio" if mv.unit == "ratio" else (mv.unit or "metric units")
    c1.metric("Effect", format_delta(effect, mv.unit), help=f"Shift after the deploy, in {unit_help}.")
    c2.metric(ci_label(result), _interval(ci[0], ci[1], mv.unit))
    c3.metric("p-value", format_p(result.get("p_value")),
              help="Raw p-value of this metric's test; see the adjusted one beside it.")
    c4.metric("p (Bonferroni-adjusted)", format_p(mv.p_adjusted),
              help="This p-value times the number of metrics tested on this deploy (at most 1): the deploy's "
                   "error budget (verification.alpha) is split evenly over them.")
    n_before, n_after = result.get("n_before"), result.get("n_after")
    c5.metric("Points before / after", f"{n_before if n_before is not None else '—'} / "
                                       f"{n_after if n_after is not None else '—'}")
    st.caption(
        f"Effect {format_delta(effect, mv.unit)}"
        + (f" · relative change {format_relative(rel)} of the before level" if rel is not None else "")
        + f" · baseline: {esc(result.get('baseline') or 'n/a')}"
    )
    expect = (f"declared: {mv.expect}" if mv.role == "expectation" else f"guard, watching for: {mv.expect}")
    expect += f" · unit: {mv.unit}" if mv.unit else ""
    if result.get("needed_more_s"):
        expect += f" · wait about {common.fmt_duration(float(result['needed_more_s']))} more"
    if result.get("method"):
        expect += f" · method: {result['method']}"
    st.caption(expect)


def _canary_figures(mv: MetricVerdict, result: dict[str, Any]) -> None:
    """Canary against baseline over the same minutes: the rate ratio with its always-valid interval
    and the counts behind it (a before/after effect, p-value or point count does not exist here)."""
    from analyzers.delivery.reports import canary_level
    from analyzers.text import format_number

    ratio, ci = result.get("ratio"), result.get("ratio_ci") or (None, None)
    c1, c2 = st.columns([1, 2])
    c3, c4, c5 = st.columns(3)

    def factor(x: Any, upper: bool = False) -> str:  # JSON stores an infinite bound as null
        if x is None:
            return "∞" if upper and ci[0] is not None else "n/a"
        if float(x) == float("inf"):
            return "∞"
        return f"x{format_number(x, 3)}"

    c1.metric("Rate ratio", factor(ratio),
              help="The canary's rate of the counted events (errors, or requests slower than a bucket bound) "
                   "divided by the baseline's: x1 is no difference.")
    c2.metric(f"{canary_level(result) * 100:g}% always-valid interval", f"{factor(ci[0])} to {factor(ci[1], upper=True)}",
              help="Valid at every look the gate takes, however often it polls.")

    def counts(side: str) -> str:
        ev, ex = result.get(f"{side}_events"), result.get(f"{side}_exposure")
        return "—" if ev is None or ex is None else f"{float(ev):,.0f} in {float(ex):,.0f} requests"

    c3.metric("Canary", counts("canary"), help="Counted events in the canary's requests over the compared minutes.")
    c4.metric("Baseline", counts("baseline"), help="The same for the baseline over the same minutes.")
    c5.metric("Intervals compared", f"{result.get('intervals', '—')}",
              help="Query steps in which both versions served; the test looks at each in turn.")
    st.caption(f"canary vs baseline, watching for: {esc(mv.expect)} · method: {esc(result.get('method') or 'n/a')}")


def _interval(lo: Any, hi: Any, unit: str) -> str:
    """``+3.35 to +4.51 pp``: both bounds signed, the unit once when they share it (fits the card)."""
    from analyzers.text import format_delta

    a, b = format_delta(lo, unit), format_delta(hi, unit)
    unit_a, unit_b = a.rpartition(" ")[2], b.rpartition(" ")[2]
    if " " in a and unit_a == unit_b:
        a = a.rpartition(" ")[0]
    return f"{a} to {b}"


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
                    "reason": common.localize_times(v.reason, zone),
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
                    "error": redact(d.get("error")) if d.get("error") else "",  # rows stored before redaction
                }
                for d in reversed(deliveries)
            ]
        ),
        hide_index=True,
    )


def _side_by_side(verdict: DeployVerdict | None, canary: DeployVerdict | None, deploy: Deploy) -> None:
    """Per metric the before/after result next to the canary-vs-baseline one (plain-text cells)."""
    from analyzers.delivery.reports import SIDE_COLUMNS, side_by_side, side_cells

    side = side_by_side(verdict, canary, deploy) if verdict is not None else None
    if side is None:
        return
    overall, _why, rows = side
    st.header("Before/after and canary vs baseline")
    st.caption(f"Together: {BANNER_TITLES[overall]}. Either check finding a regression fails the deploy; where "
               "both judged a metric the canary decides (it compares the versions over the same minutes, so "
               "traffic drift cancels); inconclusive only when neither could decide. "
               f"Canary checked {common.fmt_time(canary.checked_at, zone) if canary else '—'}.")
    st.dataframe(pd.DataFrame([dict(zip(SIDE_COLUMNS, side_cells(r), strict=True)) for r in rows]),
                 hide_index=True, key="side_by_side")


def _actions(deploy: Deploy, verdict: DeployVerdict | None, neighbours: tuple[Deploy, ...],
             canary: DeployVerdict | None = None) -> None:
    from analyzers.delivery.reports import render_html, render_json, render_markdown

    st.subheader("Report and actions")
    cols = st.columns(4)
    if verdict is not None:
        with common.panel("Building the report"):
            reports = (
                ("Markdown", "md", "text/markdown", render_markdown(verdict, deploy, dashboard_url=config.dashboard_url,
                                                                       zone=zone.tz, canary=canary)),
                ("JSON", "json", "application/json", render_json(verdict, deploy, canary=canary)),
                ("HTML", "html", "text/html", render_html(verdict, deploy, dashboard_url=config.dashboard_url, zone=zone.tz,
                                                          canary=canary)),
            )
            for col, (name, ext, mime, body) in zip(cols, reports, strict=False):
                col.download_button(f"Download report ({name})", body, file_name=f"deploy-{deploy.deploy_id}.{ext}",
                                    mime=mime, on_click="ignore", key=f"dl_{ext}")
    if not access.actions_allowed(config):
        st.caption("Read-only dashboard: verification runs in the worker. To re-verify from this page, set "
                   "`allow_actions = true` under `[dashboard]` in the config file (see "
                   f"{common.doc_ref('dashboard_access')}).")
        return
    label = "Re-verify now" if verdict is not None else "Verify now"
    if cols[3 if verdict is not None else 0].button(label, key="reverify", type="primary",
                      help="Fetch the metrics again, test them and store the new verdict."):
        _reverify(deploy, neighbours)
    if st.session_state.pop("reverified", None):
        st.success("Verified again; the verdict above is the new one.")


def _reverify(deploy: Deploy, neighbours: tuple[Deploy, ...]) -> None:
    """Verify now and store the verdict, unless Prometheus could not be reached: an outage is not
    a verdict, so nothing is stored and the banner says what to do (the worker's contract too)."""
    from analyzers.verify.deploy import verify_deploy

    with st.spinner("Fetching metrics and testing…"):
        try:
            fresh = verify_deploy(deploy, config, data.get_client(config), others=neighbours, now=datetime.now(UTC))
        except PrometheusUnreachable as exc:
            st.error(
                f"Could not verify: Prometheus is unreachable ({esc(str(exc).strip() or 'no answer')}). Nothing "
                "was stored and the verdict above still stands. Check that Prometheus is running and that "
                "`PROMETHEUS_URL` (or [prometheus] url in the config file) points at it, then press the button "
                "again.", icon=":material/cloud_off:",
            )
            return
        except Exception as exc:  # noqa: BLE001 - any other failure: a banner, nothing stored
            st.error(common.explain_error(exc, what="Verifying"), icon=":material/error:")
            return
    if fresh.metrics and all(m.outcome == "error" for m in fresh.metrics):
        st.error(
            "Verification could not fetch any metric, so no verdict was stored: "
            f"{esc(fresh.metrics[0].reason)}. Check that Prometheus is reachable, then try again."
        )
        return
    with common.panel("Storing the verdict"):
        data.save_verdict(config.store_url, fresh)
        st.session_state["reverified"] = fresh.overall
        st.rerun()


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
            common.plain_warning(
                f"No deploy with id {deploy_id} in the store. It may not have arrived yet (events are "
                "stored when the receiver acknowledges them), or the link is wrong."
            )
            st.page_link("views/deploys.py", label="Back to all deploys")
    if detail is None:
        return
    from dataclasses import replace

    from analyzers.events.combined import ROLLED_OUT, combine, latest_pair

    canary, before_after = latest_pair(list(detail.history))
    deploy = detail.deploy
    verdict = before_after or detail.verdict  # the report's main table: the before/after checks
    headline = verdict
    if canary is not None and verdict is not None:  # the banner says what both checks give together
        overall, reason = combine(canary, before_after, rolled_out=deploy.status in ROLLED_OUT)
        headline = replace(verdict, overall=overall, reason=reason)  # type: ignore[arg-type]
    _header(deploy, headline)
    _side_by_side(verdict, canary, deploy)
    if verdict is not None:
        for w in verdict.warnings:
            common.plain_warning(common.localize_times(w, zone))
        if verdict.multiple_testing:
            st.caption(f"Multiple testing: {esc(verdict.multiple_testing)}")
        if verdict.retry_after_s:
            st.info(f"Not enough data yet: check again in about {common.fmt_duration(verdict.retry_after_s)}.")
    header.drilldown_links(deploy, zone)
    _overlaps(detail)
    if verdict is not None:
        st.header("Evidence per metric")
        # the canary's cards beside the before/after ones; with no before/after verdict yet the page's
        # verdict is the canary one (a separately loaded copy): its cards once, never twice
        extra = canary.metrics if canary is not None and before_after is not None else ()
        for mv in sorted([*verdict.metrics, *extra], key=lambda m: OUTCOME_ORDER.get(m.outcome, 1)):  # failing first
            _metric_section(deploy, mv)
    _history(detail.history)
    _deliveries(detail.deliveries)
    _actions(deploy, verdict, detail.neighbours, canary)


main()
