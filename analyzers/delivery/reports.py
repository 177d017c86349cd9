"""Deploy-verification reports: one model, rendered as Markdown, JSON or self-contained HTML.

Markdown fits a pull-request comment; HTML is a single page with no external scripts (every
value escaped, event text never rendered as markup); JSON is the machine form
(``{"deploy": ..., "verdict": ...}``) that round-trips through :class:`DeployVerdict.from_dict`.
Times are UTC and say so; units always follow numbers.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from typing import Any

from analyzers.model import Deploy, DeployVerdict, MetricVerdict, iso
from analyzers.text import ci_label, format_value

BADGES = {"pass": "PASS", "fail": "FAIL", "inconclusive": "INCONCLUSIVE"}
ICONS = {"pass": "✅", "fail": "❌", "inconclusive": "⚠️"}
OUTCOME_LABEL = {
    "confirmed": "confirmed",
    "no_effect": "no effect",
    "opposite": "wrong way",
    "regressed": "regressed",
    "ok": "ok",
    "inconclusive": "inconclusive",
    "error": "error",
}


def _verdict_ci_label(verdict: DeployVerdict) -> str:
    for m in verdict.metrics:
        if m.result:
            return ci_label(m.result)
    return ci_label(None)


def effect_text(m: MetricVerdict) -> str:
    r = m.result or {}
    eff = r.get("effect")
    if eff is None:
        return "n/a"
    sign = "+" if float(eff) >= 0 else "-"
    out = sign + format_value(abs(float(eff)), m.unit)
    rel = r.get("effect_rel")
    if rel is not None and math.isfinite(float(rel)):
        out += f" ({float(rel) * 100:+.1f}%)"
    ci = r.get("effect_ci")
    if ci and ci[0] is not None and ci[1] is not None:
        out += f" [{format_value(ci[0], m.unit)}, {format_value(ci[1], m.unit)}]"
    return out


def levels_text(m: MetricVerdict) -> str:
    """``"12.0 ms -> 18.0 ms"`` (medians of the compared windows), with missing data called out."""
    r = m.result or {}
    if r.get("before_value") is None and r.get("after_value") is None:
        return "n/a"
    out = f"{format_value(r.get('before_value'), m.unit)} → {format_value(r.get('after_value'), m.unit)}"
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
    s = f"{float(p):.3g}"
    if m.p_adjusted is not None:
        s += f" (adj. {m.p_adjusted:.3g})"
    return s


def metric_cells(m: MetricVerdict) -> tuple[str, ...]:
    """The report's columns: metric, role, expected, outcome, before -> after, effect, p, baseline, why."""
    r = m.result or {}
    return (
        m.metric,
        m.role,
        m.expect,
        OUTCOME_LABEL.get(m.outcome, m.outcome),
        levels_text(m),
        effect_text(m),
        p_text(m),
        str(r.get("baseline") or "n/a"),
        m.reason,
    )


def _md_cell(text: str) -> str:
    """Markdown table cell: no pipes or newlines, no HTML interpretation."""
    return html.escape(str(text).replace("|", "\\|").replace("\n", " ").replace("\r", " "), quote=False)


def render_markdown(verdict: DeployVerdict, deploy: Deploy | None = None, *, dashboard_url: str | None = None) -> str:
    """Markdown report (GitHub-flavoured), sized for a pull-request comment."""
    lines: list[str] = []
    title = f"{verdict.service or (deploy.service if deploy else '')} {verdict.version or (deploy.version if deploy else '')}".strip()
    lines.append(f"## {ICONS[verdict.overall]} Deploy verification: {_md_cell(title)} — **{BADGES[verdict.overall]}**")
    lines.append("")
    lines.append(_md_cell(verdict.reason))
    lines.append("")
    if deploy is not None:
        facts = [
            f"deploy `{_md_cell(deploy.deploy_id)}`",
            f"environment `{_md_cell(deploy.environment)}`",
            f"started {iso(deploy.started_at)} (UTC)",
            f"status {_md_cell(deploy.status)}",
        ]
        if deploy.kind == "release":
            facts.append(f"release of flag `{_md_cell(deploy.flag or '')}` {_md_cell(str(deploy.flag_from))} → {_md_cell(str(deploy.flag_to))}")
        if deploy.author:
            facts.append(f"by {_md_cell(deploy.author)}")
        if deploy.commit_sha:
            facts.append(f"commit `{_md_cell(deploy.commit_sha[:12])}`")
        if not deploy.signed:
            facts.append("**unsigned source**")
        lines.append("; ".join(facts) + ".")
        lines.append("")
    lines.append(f"| metric | role | expected | outcome | before → after (median) | effect [{_verdict_ci_label(verdict)}] | p-value | baseline | why |")
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for m in verdict.metrics:
        lines.append(
            "| "
            + " | ".join(_md_cell(c) for c in metric_cells(m))
            + " |"
        )
    lines.append("")
    if verdict.overlapping:
        lines.append("**Overlapping deploys:** " + ", ".join(f"`{_md_cell(d)}`" for d in verdict.overlapping))
        lines.append("")
    for w in verdict.warnings:
        lines.append(f"> ⚠️ {_md_cell(w)}")
    if verdict.warnings:
        lines.append("")
    if verdict.retry_after_s:
        lines.append(f"Not enough data yet: check again in about {math.ceil(verdict.retry_after_s / 60)} minutes.")
        lines.append("")
    notes = [f"checked {iso(verdict.checked_at)} (UTC)"]
    if verdict.multiple_testing:
        notes.append(verdict.multiple_testing)
    lines.append("<sub>" + _md_cell("; ".join(notes)) + "</sub>")
    if dashboard_url:
        lines.append("")
        lines.append(f"[Open in the dashboard]({dashboard_url.rstrip('/')}/deploy?deploy={verdict.deploy_id})")
    lines.append("")
    lines.append("<details><summary>PromQL</summary>")
    lines.append("")
    for m in verdict.metrics:
        query = m.query.replace("`", "'")
        lines.append(f"- `{m.metric}`: `{query}`")
    lines.append("")
    lines.append("</details>")
    return "\n".join(lines) + "\n"


#: Version of the JSON report (``schema`` key); documented in docs/report-schema.md.
REPORT_SCHEMA = "deploy-verdict/v1"


def report_dict(verdict: DeployVerdict, deploy: Deploy | None = None) -> dict[str, Any]:
    return {"schema": REPORT_SCHEMA, "deploy": deploy.to_dict() if deploy else None, "verdict": verdict.to_dict()}


def render_json(verdict: DeployVerdict, deploy: Deploy | None = None) -> str:
    return json.dumps(report_dict(verdict, deploy), indent=2, sort_keys=False, allow_nan=False, default=str)


def render_json_many(items: Sequence[tuple[DeployVerdict, Deploy | None]]) -> str:
    return json.dumps([report_dict(v, d) for v, d in items], indent=2, allow_nan=False, default=str)


def svg_chart(m: MetricVerdict, deploy_at: float | None, *, width: int = 360, height: int = 90) -> str:
    """An inline SVG line chart of the metric around the deploy (no scripts, no external assets).

    The dashed vertical line marks the deploy; the y range is labelled with units; times are UTC.
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
    if hi == lo:
        hi, lo = hi + 1e-9 + abs(hi) * 0.01, lo - 1e-9 - abs(lo) * 0.01
    pad_l, pad_b = 64, 16
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
    import time as _time

    fmt = lambda t: _time.strftime("%H:%M", _time.gmtime(t))  # noqa: E731
    e = html.escape
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="{e(m.metric)} around the deploy">'
        f'<polyline fill="none" stroke="#0969da" stroke-width="1.3" points="{path}"/>{marker}'
        f'<text x="2" y="12" font-size="10">{e(format_value(hi, m.unit))}</text>'
        f'<text x="2" y="{4 + h:.0f}" font-size="10">{e(format_value(lo, m.unit))}</text>'
        f'<text x="{pad_l}" y="{height - 2}" font-size="10">{fmt(t0)} UTC</text>'
        f'<text x="{width - 40}" y="{height - 2}" font-size="10">{fmt(t1)}</text></svg>'
    )


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#1f2328}
h1{font-size:1.4rem} table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{border:1px solid #d0d7de;padding:.4rem .6rem;text-align:left;vertical-align:top}
th{background:#f6f8fa} .pass{color:#1a7f37} .fail{color:#cf222e} .inconclusive{color:#9a6700}
.badge{font-weight:700;padding:.1rem .5rem;border-radius:.3rem;border:1px solid currentColor}
code{font-size:.8rem;word-break:break-all} .warn{background:#fff8c5;padding:.5rem;border-radius:.3rem}
"""


def render_html(verdict: DeployVerdict, deploy: Deploy | None = None) -> str:
    """A self-contained HTML page (no external scripts or styles); all text escaped."""
    e = html.escape
    deploy_at = deploy.started_at.timestamp() if deploy is not None else None
    rows = []
    for m in verdict.metrics:
        rows.append(
            "<tr>"
            + "".join(f"<td>{e(c)}</td>" for c in metric_cells(m))
            + f"<td>{svg_chart(m, deploy_at)}</td><td><code>{e(m.query)}</code></td></tr>"
        )
    facts = ""
    if deploy is not None:
        facts = (
            f"<p>Deploy <code>{e(deploy.deploy_id)}</code> of <b>{e(deploy.service)}</b> "
            f"version <b>{e(deploy.version)}</b> in {e(deploy.environment)}, started "
            f"{e(iso(deploy.started_at) or '')} (UTC), status {e(deploy.status)}"
            + (f", by {e(deploy.author)}" if deploy.author else "")
            + (" — <b>unsigned source</b>" if not deploy.signed else "")
            + ".</p>"
        )
        if deploy.description:
            facts += f"<p>Description: {e(deploy.description)}</p>"
    warns = "".join(f"<p class='warn'>{e(w)}</p>" for w in verdict.warnings)
    cls = verdict.overall
    title = f"{verdict.service} {verdict.version}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>Deploy verification: {e(title)} {BADGES[cls]}</title><style>{_CSS}</style></head>
<body><h1>Deploy verification: {e(title)} <span class="badge {cls}">{BADGES[cls]}</span></h1>
<p>{e(verdict.reason)}</p>{facts}{warns}
<table><thead><tr><th>metric</th><th>role</th><th>expected</th><th>outcome</th><th>before → after (median)</th><th>effect [{e(_verdict_ci_label(verdict))}]</th>
<th>p-value</th><th>baseline</th><th>why</th><th>around the deploy</th><th>PromQL</th></tr></thead><tbody>{''.join(rows)}</tbody></table>
<p><small>Checked {e(iso(verdict.checked_at) or '')} (UTC). {e(verdict.multiple_testing)}</small></p>
</body></html>
"""
