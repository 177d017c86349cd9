"""Deploy-verification reports: one model, rendered as Markdown, JSON or self-contained HTML.

Markdown fits a pull-request comment; HTML is a single page with no external scripts that reads
on a 390 px phone (tables stack into cards); JSON is the machine form
(``{"deploy": ..., "verdict": ...}``) that round-trips through :class:`DeployVerdict.from_dict`.
Event text is escaped per format (:mod:`analyzers.delivery.escape`): it can never become a link,
an image, a mention or markup. Numbers always carry their units (:mod:`analyzers.text`); times
are shown in one zone (UTC unless the caller names another) and say which.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from datetime import tzinfo
from typing import Any

from analyzers.delivery.escape import md_code, md_text, plain
from analyzers.events.combined import ROLLED_OUT, CombinedMetric, combine, combine_metrics
from analyzers.model import Deploy, DeployVerdict, MetricVerdict
from analyzers.text import (
    ci_label,
    deploy_link,
    format_effect,
    format_number,
    format_p,
    format_time,
    format_values,
    human_duration,
)

BADGES = {"pass": "PASS", "fail": "FAIL", "inconclusive": "INCONCLUSIVE"}
ICONS = {"pass": "✅", "fail": "❌", "inconclusive": "⚠️"}
OUTCOME_LABEL = {
    "confirmed": "confirmed",
    "no_effect": "no effect",
    "opposite": "wrong way",
    "regressed": "regressed",
    "improved": "improved",
    "ok": "ok",
    "inconclusive": "inconclusive",
    "error": "error",
}
#: The column that says what a metric is checked for.
CHECK_HEADER = "checked for"


def _verdict_ci_label(verdict: DeployVerdict) -> str:
    for m in verdict.metrics:
        if m.result:
            return ci_label(m.result)
    return ci_label(None)


def check_text(m: MetricVerdict) -> str:
    """What the metric is checked for: a guard "fails on increase", an expectation is "declared
    decrease" (a guard's ``expect`` is the direction it fails on, not a wish)."""
    if m.role == "guard":
        return f"fails on {m.expect}" if m.expect in ("increase", "decrease") else "fails on any change"
    if m.role == "canary":
        return "fails if worse than baseline"
    return f"declared {m.expect}"


def _spread_only(r: dict[str, Any]) -> bool:
    return r.get("change_kind") == "variance"


def effect_text(m: MetricVerdict) -> str:
    """The change with its unit and interval: ``+3.39 pp (x6.5), 99% CI +2.10 pp to +4.70 pp``.

    A spread-only change has no direction, so it is given as the spread's factor, without a sign.
    """
    r = m.result or {}
    if m.role == "canary":
        return _canary_effect(r, m.unit)
    if _spread_only(r):
        ratio = (r.get("details") or {}).get("spread_ratio")
        factor = f"x{float(ratio):.2g}" if ratio is not None and math.isfinite(float(ratio)) else "changed"
        return f"spread {factor}, no level change"
    eff = r.get("effect")
    if eff is None:
        return "n/a"
    return format_effect(eff, m.unit, rel=r.get("effect_rel"), ci=r.get("effect_ci"), label=ci_label(r))


def _canary_effect(r: dict[str, Any], unit: str) -> str:
    """Canary against baseline: a rate ratio (``canary/baseline x1.8, 99% CI x1.2 to x2.6``) for
    the sequential rate tests, a difference in the metric's unit for the others."""
    ratio, ci = r.get("ratio"), r.get("ratio_ci") or [None, None]
    if ratio is None:
        return "n/a"
    level = canary_level(r)
    if str(r.get("method", "")).startswith("sequential"):
        out = f"canary/baseline x{format_number(ratio, 2)}"
        if ci[0] is not None and ci[1] is not None:
            out += f", {level * 100:g}% CI x{format_number(ci[0], 2)} to x{format_number(ci[1], 2)}"
        return out
    return "canary − baseline " + format_effect(ratio, unit, ci=ci, level=level)


def canary_level(r: dict[str, Any]) -> float:
    """The level of a canary result's ``ratio_ci``. A latency comparison splits its alpha over the
    bucket bounds it tests and reports the deciding bound's interval: that bound's level (99.875 %
    of two bounds at alpha 0.0025), as its reason says, not the metric's total (99.75 %)."""
    ci = r.get("ratio_ci")
    for part in (r.get("details") or {}).get("per_bound") or ():
        if isinstance(part, dict) and part.get("ratio_ci") == ci and part.get("alpha") is not None:
            return 1.0 - float(part["alpha"])
    return 1.0 - float(r.get("alpha") or 0.01)


def levels_text(m: MetricVerdict) -> str:
    """``"12.0 ms → 18.0 ms"`` (medians of the compared windows, one scale), missing data called out.
    A canary result has no before and after: the counts it compared (``canary 14 of 457 requests vs
    baseline 20 of 4,226``)."""
    r = m.result or {}
    if m.role == "canary":
        if r.get("canary_exposure") is None or r.get("baseline_exposure") is None:
            return "n/a"
        return " vs ".join(f"{side} {float(r.get(side + '_events') or 0):,.0f} of {float(r[side + '_exposure']):,.0f} "
                           "requests" for side in ("canary", "baseline"))
    if r.get("before_value") is None and r.get("after_value") is None:
        return "n/a"
    before, after = format_values([r.get("before_value"), r.get("after_value")], m.unit)
    out = f"{before} → {after}"
    gaps = [f"{k} {float(r[k + '_missing']) * 100:.0f}% missing" for k in ("before", "after")
            if r.get(k + "_missing") and float(r[k + "_missing"]) >= 0.05]
    if gaps:
        out += " (" + ", ".join(gaps) + ")"
    return out


def p_text(m: MetricVerdict) -> str:
    r = m.result or {}
    p = r.get("p_value")
    if p is None:
        return "n/a"
    s = format_p(p)
    if m.p_adjusted is not None:
        s += f" (adj. {format_p(m.p_adjusted)})"
    return s


#: Column headers of :func:`metric_cells` (the effect header gets the interval's level).
COLUMNS = ("metric", "role", CHECK_HEADER, "outcome", "before → after (median)", "effect", "p-value", "baseline", "why")


def metric_cells(m: MetricVerdict) -> tuple[str, ...]:
    """The report's columns: metric, role, checked for, outcome, before → after, effect, p, baseline, why."""
    r = m.result or {}
    return (
        m.metric,
        m.role,
        check_text(m),
        OUTCOME_LABEL.get(m.outcome, m.outcome),
        levels_text(m),
        effect_text(m),
        p_text(m),
        str(r.get("baseline") or "n/a"),
        m.reason,
    )


#: Columns of the side-by-side table (before/after next to canary vs baseline, per metric).
SIDE_COLUMNS = ("metric", "before/after", "canary vs baseline", "together")


def _half(m: MetricVerdict | None) -> str:
    if m is None:
        return "not checked"
    out = OUTCOME_LABEL.get(m.outcome, m.outcome) + ("" if not m.dry_run else " (dry-run)")
    eff = effect_text(m)
    return out if eff == "n/a" else f"{out}: {eff}"


def side_cells(c: CombinedMetric) -> tuple[str, ...]:
    """One metric's before/after result, canary result and the combined outcome (who decided)."""
    together = OUTCOME_LABEL.get(c.outcome, c.outcome)
    if c.decided_by != "neither":
        together += f" (decided by {c.decided_by})"
    return (c.metric, _half(c.before_after), _half(c.canary), together)


def side_by_side(verdict: DeployVerdict, canary: DeployVerdict | None,
                 deploy: Deploy | None = None) -> tuple[str, str, list[CombinedMetric]] | None:
    """The combined overall, its reason and the rows, or None without a canary verdict to compare."""
    if canary is None:
        return None
    ba = verdict if verdict.check_kind != "canary" else None
    overall, reason = combine(canary, ba, rolled_out=deploy is not None and deploy.status in ROLLED_OUT)
    return overall, reason, combine_metrics(canary, ba)


def failing_first(verdict: DeployVerdict) -> list[MetricVerdict]:
    """Failing metrics first, then inconclusive ones, then the rest, each in catalog order."""
    rank = {"opposite": 0, "regressed": 0, "error": 1, "inconclusive": 1}
    return sorted(verdict.metrics, key=lambda m: rank.get(m.outcome, 2))


def _md_cell(text: str) -> str:
    """Markdown table cell: one line, every Markdown and HTML metacharacter escaped."""
    return md_text(text, limit=None)


def render_markdown(
    verdict: DeployVerdict, deploy: Deploy | None = None, *, dashboard_url: str | None = None,
    zone: str | tzinfo | None = "UTC", canary: DeployVerdict | None = None,
) -> str:
    """Markdown report (GitHub-flavoured), sized for a pull-request comment.

    With ``canary`` (the deploy's latest canary verdict), a table puts each metric's
    before/after and canary-vs-baseline results side by side with the combined outcome
    (:mod:`analyzers.events.combined`)."""
    lines: list[str] = []
    title = f"{verdict.service or (deploy.service if deploy else '')} {verdict.version or (deploy.version if deploy else '')}".strip()
    side = side_by_side(verdict, canary, deploy)
    # The headline is the answer the exit code, the gate and the notifications give: with a canary, the
    # combined one (a before/after PASS headline over a failing canary, exit 1, read as a pass).
    overall, reason = (side[0], side[1]) if side is not None else (verdict.overall, verdict.reason)
    lines.append(f"## {ICONS[overall]} Deploy verification: {md_text(title)} — **{BADGES[overall]}**")
    lines.append("")
    lines.append(md_text(reason, limit=2000, line_start=True))
    lines.append("")
    if deploy is not None:
        facts = [
            f"deploy {md_code(deploy.deploy_id)}",
            f"environment {md_code(deploy.environment)}",
            f"started {format_time(deploy.started_at, zone)}",
            f"status {md_text(deploy.status)}",
        ]
        if deploy.kind == "release":
            facts.append(f"release of flag {md_code(deploy.flag or '')} {md_text(str(deploy.flag_from))} → {md_text(str(deploy.flag_to))}")
        if deploy.author:
            facts.append(f"by {md_text(deploy.author)}")
        if deploy.commit_sha:
            facts.append(f"commit {md_code(deploy.commit_sha[:12])}")
        if not deploy.signed:
            facts.append("**unsigned source**")
        lines.append("; ".join(facts) + ".")
        lines.append("")
    if side is not None:
        lines.append(f"**Before/after: {BADGES[verdict.overall]}.** " + md_text(verdict.reason, limit=2000))
        lines.append("")
    headers = [*COLUMNS]
    headers[COLUMNS.index("effect")] = f"effect [{_verdict_ci_label(verdict)}]"
    lines.append("| " + " | ".join(headers) + " |")
    lines.append("|" + "---|" * len(headers))
    for m in failing_first(verdict):
        lines.append("| " + " | ".join(_md_cell(c) for c in metric_cells(m)) + " |")
    lines.append("")
    if side is not None:  # its reason is the headline's
        rows = side[2]
        lines.append(f"### Before/after and canary vs baseline: {ICONS[overall]} **{BADGES[overall]}** together")
        lines.append("")
        lines.append("| " + " | ".join(SIDE_COLUMNS) + " |")
        lines.append("|" + "---|" * len(SIDE_COLUMNS))
        for row in rows:
            lines.append("| " + " | ".join(_md_cell(c) for c in side_cells(row)) + " |")
        lines.append("")
    if verdict.overlapping:
        lines.append("**Overlapping deploys:** " + ", ".join(md_code(d) for d in verdict.overlapping))
        lines.append("")
    for w in verdict.warnings:
        lines.append(f"> ⚠️ {md_text(w, limit=2000)}")
    if verdict.warnings:
        lines.append("")
    if verdict.retry_after_s:
        lines.append(f"{'Before/after: n' if side is not None else 'N'}ot enough data yet: check again in about "
                     f"{human_duration(max(60.0, verdict.retry_after_s))}.")
        lines.append("")
    notes = [f"checked {format_time(verdict.checked_at, zone)}"]
    if verdict.multiple_testing:
        notes.append(verdict.multiple_testing)
    lines.append("<sub>" + md_text("; ".join(notes), limit=None) + "</sub>")
    if dashboard_url:
        lines.append("")
        lines.append(f"[Open in the dashboard](<{deploy_link(dashboard_url, verdict.deploy_id)}>)")
    lines.append("")
    lines.append("<details><summary>PromQL</summary>")
    lines.append("")
    for m in verdict.metrics:
        lines.append(f"- {md_code(m.metric)}: {md_code(m.query, limit=None)}")
    lines.append("")
    lines.append("</details>")
    return "\n".join(lines) + "\n"


#: Version of the JSON report (``schema`` key); documented in docs/verdict-json.md.
REPORT_SCHEMA = "deploy-verdict/v1"


def _json_ready(v: Any) -> Any:
    """``v`` with every NaN or infinity as None: a figure that could not be computed (a bucket test on
    a window of a few requests has no drift p-value) is ``null`` in the report, never the ``NaN``
    token strict JSON parsers refuse, nor a report that cannot be written at all."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: _json_ready(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_json_ready(x) for x in v]
    return v


def report_dict(verdict: DeployVerdict, deploy: Deploy | None = None, *,
                canary: DeployVerdict | None = None) -> dict[str, Any]:
    """The JSON report; with a canary verdict also ``canary`` (that verdict) and ``combined``
    (``verdict``, ``reason``, per metric ``before_after`` / ``canary`` / ``outcome`` / ``decided_by``).
    Figures that could not be computed (NaN, infinities) are None."""
    side = side_by_side(verdict, canary, deploy)
    # ``overall``: the answer the exit code and the gate give (the combined one when a canary was judged)
    out: dict[str, Any] = {"schema": REPORT_SCHEMA, "overall": side[0] if side else verdict.overall,
                           "deploy": deploy.to_dict() if deploy else None, "verdict": verdict.to_dict()}
    if canary is not None and side is not None:
        overall, why, rows = side
        out["canary"] = canary.to_dict()
        out["combined"] = {"verdict": overall, "reason": why, "metrics": [r.to_dict() for r in rows]}
    return _json_ready(out)  # type: ignore[no-any-return]


def render_json(verdict: DeployVerdict, deploy: Deploy | None = None, *, canary: DeployVerdict | None = None) -> str:
    return json.dumps(report_dict(verdict, deploy, canary=canary), indent=2, sort_keys=False, allow_nan=False,
                      default=str)


def render_json_many(items: Sequence[tuple[DeployVerdict, Deploy | None]]) -> str:
    return json.dumps([report_dict(v, d) for v, d in items], indent=2, allow_nan=False, default=str)


def svg_chart(m: MetricVerdict, deploy_at: float | None, *, width: int = 360, height: int = 90,
              zone: str | tzinfo | None = "UTC") -> str:
    """An inline SVG line chart of the metric around the deploy (no scripts, no external assets).

    The dashed vertical line marks the deploy; the y range is labelled with units on one scale;
    the x range with its start and end time in ``zone``. The drawing scales down to its box.
    """
    chart = m.chart or {}
    ts = chart.get("t") or []
    vs = chart.get("v") or []
    pts = [(float(t), float(v)) for t, v in zip(ts, vs, strict=False) if v is not None and math.isfinite(float(v))]
    if len(pts) < 2:
        return "<em>no data to chart</em>"
    t0, t1 = pts[0][0], pts[-1][0]
    lo = min(v for _, v in pts)
    hi = max(v for _, v in pts)
    hi_label, lo_label = format_values([hi, lo], m.unit)
    if hi == lo:
        hi, lo = hi + 1e-9 + abs(hi) * 0.01, lo - 1e-9 - abs(lo) * 0.01
    pad_l, pad_b = 70, 18
    w, h = width - pad_l - 4, height - pad_b - 6

    def x(t: float) -> float:
        return pad_l + (t - t0) / max(t1 - t0, 1e-9) * w

    def y(v: float) -> float:
        return 4 + (1 - (v - lo) / (hi - lo)) * h

    path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in pts)
    marker = ""
    if deploy_at is not None and t0 <= deploy_at <= t1:
        dx = x(deploy_at)
        marker = f'<line x1="{dx:.1f}" y1="2" x2="{dx:.1f}" y2="{4 + h:.1f}" stroke="#cf222e" stroke-dasharray="4 3"/>'
    from datetime import UTC, datetime

    start, end = (format_time(datetime.fromtimestamp(t, UTC), zone) for t in (t0, t1))
    e = html.escape
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{e(m.metric)} from {e(start)} to {e(end)}, deploy marked">'
        f'<polyline fill="none" stroke="#0969da" stroke-width="1.3" points="{path}"/>{marker}'
        f'<text x="2" y="12" font-size="13">{e(hi_label)}</text>'
        f'<text x="2" y="{4 + h:.0f}" font-size="13">{e(lo_label)}</text>'
        f'<text x="{pad_l}" y="{height - 2}" font-size="13">{e(start[11:])}</text>'
        f'<text x="{width - 4}" y="{height - 2}" font-size="13" text-anchor="end">{e(end[11:])}</text></svg>'
    )


#: Narrow screens (below 900 px, a 390 px phone): the metrics table stacks into one card per metric,
#: each cell labelled by its column; wider screens get the table, which scrolls inside its box if it
#: must, never the page. Long unbroken values (ids, PromQL) wrap instead of widening the page.
_CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;padding:1rem;max-width:90rem;
color:#1f2328;overflow-wrap:break-word}
h1{font-size:1.4rem} table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{border:1px solid #d0d7de;padding:.4rem .6rem;text-align:left;vertical-align:top}
th{background:#f6f8fa} .pass{color:#1a7f37} .fail{color:#cf222e} .inconclusive{color:#9a6700}
.badge{font-weight:700;padding:.1rem .5rem;border-radius:.3rem;border:1px solid currentColor;white-space:nowrap}
code{font-size:.8rem;word-break:break-all} .warn{background:#fff8c5;padding:.5rem;border-radius:.3rem}
svg{max-width:100%;height:auto} td svg{width:14rem;min-width:14rem} td code{display:block;min-width:10rem}
td.why{min-width:10rem} .dash{font-size:1rem} .scroll{overflow-x:auto}
@media (max-width:900px){
 body{padding:.6rem} h1{font-size:1.15rem}
 table,thead,tbody,tr,th,td{display:block;width:100%}
 thead{position:absolute;left:-9999px;top:-9999px}
 tr{border:1px solid #d0d7de;border-radius:.4rem;margin:0 0 .8rem;padding:.2rem 0}
 td{border:0;border-bottom:1px solid #eaeef2;padding:.3rem .5rem}
 td svg{width:100%;max-width:360px;min-width:0} td code,td.why{min-width:0}
 td::before{content:attr(data-label);display:block;font-size:.75rem;color:#59636e;font-weight:600}
}
"""


_WHY = ' class="why"'


def _side_html(verdict: DeployVerdict, canary: DeployVerdict | None, deploy: Deploy | None) -> str:
    side = side_by_side(verdict, canary, deploy)
    if side is None:
        return ""
    e = html.escape
    overall, _, rows = side  # its reason is the page's headline
    head = "".join(f"<th>{e(k)}</th>" for k in SIDE_COLUMNS)
    body = "".join("<tr>" + "".join(f'<td data-label="{e(k)}">{e(plain(c, limit=None))}</td>'
                                    for k, c in zip(SIDE_COLUMNS, side_cells(r), strict=True)) + "</tr>" for r in rows)
    return (f'<h2 id="side-by-side">Before/after and canary vs baseline: <span class="badge {overall}">'
            f"{BADGES[overall]}</span> together</h2>"
            f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>')


def render_html(
    verdict: DeployVerdict, deploy: Deploy | None = None, *, dashboard_url: str | None = None,
    zone: str | tzinfo | None = "UTC", canary: DeployVerdict | None = None,
) -> str:
    """A self-contained HTML page (no external scripts or styles); all text escaped. With
    ``canary``, a second table shows before/after and canary vs baseline side by side."""
    e = html.escape
    deploy_at = deploy.started_at.timestamp() if deploy is not None else None
    labels = [*COLUMNS, "around the deploy", "PromQL"]
    labels[COLUMNS.index("effect")] = f"effect [{_verdict_ci_label(verdict)}]"
    rows = []
    for m in failing_first(verdict):
        cells = [*(e(plain(c, limit=None)) for c in metric_cells(m)), svg_chart(m, deploy_at, zone=zone),
                 f"<code>{e(m.query)}</code>"]
        rows.append("<tr>" + "".join(f'<td data-label="{e(k)}"{_WHY if k == "why" else ""}>{c}</td>'
                                     for k, c in zip(labels, cells, strict=True)) + "</tr>")
    facts = ""
    if deploy is not None:
        facts = (
            f"<p>Deploy <code>{e(plain(deploy.deploy_id))}</code> of <b>{e(plain(deploy.service))}</b> "
            f"version <b>{e(plain(deploy.version))}</b> in {e(plain(deploy.environment))}, started "
            f"{e(format_time(deploy.started_at, zone))}, status {e(plain(deploy.status))}"
            + (f", by {e(plain(deploy.author))}" if deploy.author else "")
            + (" — <b>unsigned source</b>" if not deploy.signed else "")
            + ".</p>"
        )
        if deploy.description:
            facts += f"<p>Description: {e(plain(deploy.description, limit=2000))}</p>"
    warns = "".join(f"<p class='warn'>{e(plain(w, limit=2000))}</p>" for w in verdict.warnings)
    if verdict.overlapping:
        warns += "<p>Overlapping deploys: " + ", ".join(f"<code>{e(plain(d))}</code>" for d in verdict.overlapping) + "</p>"
    link = ""
    if dashboard_url:
        link = f'<p class="dash"><a href="{e(deploy_link(dashboard_url, verdict.deploy_id))}">Open in the dashboard</a></p>'
    side = side_by_side(verdict, canary, deploy)  # with a canary the headline is the combined answer (exit code)
    cls, reason = (side[0], side[1]) if side is not None else (verdict.overall, verdict.reason)
    if side is not None:
        link += f"<p><b>Before/after: {BADGES[verdict.overall]}.</b> {e(plain(verdict.reason, limit=2000))}</p>"
    title = plain(f"{verdict.service} {verdict.version}")
    head = "".join(f"<th>{e(k)}</th>" for k in labels)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>Deploy verification: {e(title)} {BADGES[cls]}</title><style>{_CSS}</style></head>
<body><h1>Deploy verification: {e(title)} <span class="badge {cls}">{BADGES[cls]}</span></h1>
<p>{e(plain(reason, limit=2000))}</p>{link}
<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>
{_side_html(verdict, canary, deploy)}{warns}{facts}
<p><small>Checked {e(format_time(verdict.checked_at, zone))}. {e(verdict.multiple_testing)}</small></p>
</body></html>
"""


def render_no_match(reason: str, fmt: str) -> str:
    """The report when no deploy matched (``verify`` exits 2): the same format as a verdict's, so a
    pipeline step that posts ``--output`` (a PR comment, an artifact) posts why instead of failing on
    a missing file. JSON: an empty list, as :func:`render_json_many` of no verdicts."""
    if fmt == "json":
        return render_json_many([])
    if fmt == "html":
        e = html.escape
        return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>Deploy verification: '
                f"no deploy matched {BADGES['inconclusive']}</title><style>{_CSS}</style></head>\n<body><h1>Deploy "
                f"verification: no deploy matched <span class=\"badge inconclusive\">{BADGES['inconclusive']}</span>"
                f"</h1>\n<p>{e(plain(reason, limit=2000))}</p>\n</body></html>\n")
    return (f"## {ICONS['inconclusive']} Deploy verification: no deploy matched — **{BADGES['inconclusive']}**\n\n"
            f"{md_text(reason, limit=2000, line_start=True)}\n")
