"""Deliver verdicts where engineers already are: chat webhooks and Grafana annotations.

Targets come only from the operator's config (:class:`~analyzers.config.NotifyRoute`,
:class:`~analyzers.config.GrafanaSettings`); nothing in an event or a page can choose where
the server sends a request. Deliveries retry with exponential backoff on connection errors,
429 and 5xx (honouring ``Retry-After`` up to a cap) and report what happened as a
:class:`Delivery`, which callers store with the deploy so the dashboard can show it.

Message formats:

* ``slack``: Slack-compatible ``{"text", "blocks"}`` (also accepted by Mattermost and
  Rocket.Chat incoming webhooks); all event text, in the blocks and in the fallback ``text``,
  is escaped for Slack's mrkdwn (``& < >``), so it cannot mention (``<!channel>``, ``<@U123>``)
  or write a link; the dashboard link percent-encodes the deploy id.
* ``json``: ``{"schema": "deploy-verdict/v1", "deploy": ..., "verdict": ...}`` for anything else
  (data, not markup: the receiver escapes for wherever it shows it).

A failed delivery's ``error`` is redacted (:func:`analyzers.text.redact`) before it leaves this
module: a webhook URL's path is its secret, and exception text from ``requests`` quotes it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests

from analyzers.config import Config, GrafanaSettings, NotifyRoute
from analyzers.delivery.escape import plain, slack_text
from analyzers.delivery.reports import (
    BADGES,
    OUTCOME_LABEL,
    REPORT_SCHEMA,
    check_text,
    effect_text,
    failing_first,
    levels_text,
    report_dict,
)
from analyzers.model import Deploy, DeployVerdict, iso
from analyzers.text import deploy_link, format_time, human_duration, redact, url_secrets

SCHEMA = REPORT_SCHEMA


@dataclass(frozen=True)
class Delivery:
    """The outcome of sending one verdict to one target."""

    target: str  # route name, or "grafana"
    kind: str  # "chat" | "annotation"
    ok: bool
    attempts: int
    status_code: int | None
    error: str | None
    at: datetime
    deploy_id: str
    overall: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "kind": self.kind,
            "ok": self.ok,
            "attempts": self.attempts,
            "status_code": self.status_code,
            "error": self.error,
            "at": iso(self.at),
            "deploy_id": self.deploy_id,
            "overall": self.overall,
        }


def _mrkdwn(text: str) -> dict[str, Any]:
    """A Slack mrkdwn text object with ``verbatim``: Slack does not turn bare URLs or channel
    names in it into links nor parse mentions by itself; our explicit ``<url|text>`` still works."""
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def slack_message(verdict: DeployVerdict, deploy: Deploy | None, *, dashboard_url: str | None = None) -> dict[str, Any]:
    """Slack-compatible blocks: header with the verdict, one line per metric, context.

    Every field is cut to a bounded length *before* it is escaped, so a section never ends in
    half an entity or half a link.
    """
    e = slack_text
    icon = {"pass": ":white_check_mark:", "fail": ":x:", "inconclusive": ":warning:"}[verdict.overall]
    title = f"{icon} {BADGES[verdict.overall]}: {e(verdict.service)} {e(verdict.version)}"
    lines = []
    for m in failing_first(verdict):
        lines.append(
            f"• *{e(m.metric)}* ({e(m.role)}, {e(check_text(m))}) — {e(OUTCOME_LABEL.get(m.outcome, m.outcome))}: "
            f"{e(levels_text(m))}, effect {e(effect_text(m))}\n   {e(m.reason, limit=600)}"
        )
    body: list[str] = []
    used = 0
    for line in lines:  # whole lines only, within Slack's 3,000 characters per section
        if used + len(line) + 1 > 2900:
            body.append(f"… and {len(lines) - len(body)} more metrics")
            break
        body.append(line)
        used += len(line) + 1
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": _mrkdwn(f"*{title}*\n{e(verdict.reason, limit=2000)}")},
        {"type": "section", "text": _mrkdwn("\n".join(body) or "no metrics")},
    ]
    ctx = [f"checked {format_time(verdict.checked_at)}"]
    if deploy is not None:
        ctx.insert(0, f"{e(deploy.environment)} · started {format_time(deploy.started_at)}" + (f" · by {e(deploy.author)}" if deploy.author else ""))
    if verdict.overlapping:
        ctx.append("overlapping deploys: " + ", ".join(e(d, limit=80) for d in verdict.overlapping[:10]))
    if verdict.retry_after_s:
        ctx.append(f"check again in about {human_duration(max(60.0, verdict.retry_after_s))}")
    blocks.append({"type": "context", "elements": [_mrkdwn(" | ".join(ctx))]})
    if dashboard_url:
        link = e(deploy_link(dashboard_url, verdict.deploy_id), limit=None)
        if len(link) > 2900:  # an absurd deploy id: a cut link would open the wrong page
            link = e(dashboard_url, limit=None)
        blocks.append({"type": "section", "text": _mrkdwn(f"<{link}|Open the evidence>")})
    text = f"{BADGES[verdict.overall]}: {e(verdict.service)} {e(verdict.version)} — {e(verdict.reason, limit=2000)}"
    # No previews of URLs that event text may carry; our one link needs none either.
    return {"text": text, "blocks": blocks, "unfurl_links": False, "unfurl_media": False}


def json_message(verdict: DeployVerdict, deploy: Deploy | None) -> dict[str, Any]:
    return report_dict(verdict, deploy)


def annotation_body(verdict: DeployVerdict, deploy: Deploy, grafana: GrafanaSettings) -> dict[str, Any]:
    """Grafana ``POST /api/annotations`` body: time in ms, tags, plain text."""
    body: dict[str, Any] = {
        "time": int(deploy.started_at.timestamp() * 1000),
        "tags": [*grafana.tags, f"service:{deploy.service}", f"verdict:{verdict.overall}", f"env:{deploy.environment}"],
        "text": plain(f"{deploy.service} {deploy.version}: {BADGES[verdict.overall]} — {verdict.reason}", limit=2000),
    }
    if deploy.finished_at is not None:
        body["timeEnd"] = int(deploy.finished_at.timestamp() * 1000)
    if grafana.dashboard_uid:
        body["dashboardUID"] = grafana.dashboard_uid
    return body


def _post_with_retries(
    session: requests.Session,
    url: str,
    body: dict[str, Any],
    *,
    headers: dict[str, str] | None = None,
    attempts: int = 4,
    backoff_s: float = 0.5,
    max_wait_s: float = 30.0,
    timeout_s: float = 10.0,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[bool, int, int | None, str | None]:
    """POST JSON; retry connection errors, 429 and 5xx. Returns (ok, attempts, status, error)."""
    status: int | None = None
    error: str | None = None
    for attempt in range(1, attempts + 1):
        try:
            resp = session.post(url, data=json.dumps(body), headers={"content-type": "application/json", **(headers or {})}, timeout=timeout_s)
            status = resp.status_code
            if 200 <= status < 300:
                return True, attempt, status, None
            error = f"HTTP {status}: {resp.text[:200]}"
            if status != 429 and status < 500:
                return False, attempt, status, error + " (not retried: fix the webhook URL or its permissions)"
            wait = backoff_s * 2 ** (attempt - 1)
            ra = resp.headers.get("Retry-After")
            if ra and ra.isdigit():
                wait = max(wait, float(ra))
        except requests.RequestException as exc:
            error = f"{type(exc).__name__}: {exc}"
            wait = backoff_s * 2 ** (attempt - 1)
        if attempt < attempts:
            sleep(min(wait, max_wait_s))
    return False, attempts, status, error


def deliver(
    verdict: DeployVerdict,
    deploy: Deploy | None,
    config: Config,
    *,
    final: bool = True,
    session: requests.Session | None = None,
    sleep: Callable[[float], None] = time.sleep,
    routes: Sequence[NotifyRoute] | None = None,
) -> list[Delivery]:
    """Send a verdict to every matching route and to Grafana; never raises for a failed target."""
    session = session or requests.Session()
    out: list[Delivery] = []
    now = datetime.now(UTC)
    for route in routes if routes is not None else config.routes:
        if not route.matches(verdict.service, verdict.overall) or (route.final_only and not final):
            continue
        body = slack_message(verdict, deploy, dashboard_url=config.dashboard_url) if route.format == "slack" else json_message(verdict, deploy)
        ok, n, status, err = _post_with_retries(session, route.url, body, sleep=sleep)
        err = redact(err, url_secrets(route.url)) if err is not None else None
        out.append(Delivery(route.name, "chat", ok, n, status, err, now, verdict.deploy_id, verdict.overall))
    if config.grafana is not None and deploy is not None:
        headers = {"Authorization": f"Bearer {config.grafana.token}"} if config.grafana.token else {}
        ok, n, status, err = _post_with_retries(
            session, config.grafana.url + "/api/annotations", annotation_body(verdict, deploy, config.grafana), headers=headers, sleep=sleep
        )
        err = redact(err, [*url_secrets(config.grafana.url), config.grafana.token]) if err is not None else None
        out.append(Delivery("grafana", "annotation", ok, n, status, err, now, verdict.deploy_id, verdict.overall))
    return out
