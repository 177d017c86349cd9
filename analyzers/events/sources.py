"""Adapters: each CI/CD source's payload -> a deploy-event/v1 dict (validated afterwards).

Each function takes the parsed JSON and returns the generic dict, or ``None`` when the
payload is not about a deploy (GitHub ``ping``, an ``inactive`` status): the receiver
answers 202 and stores nothing. Missing or wrong-typed fields raise
:class:`EventError` (422) naming the source's field, so the sender's admin sees what the
template or webhook must add. ``deploy_id`` is derived from the source's own deployment
id, so a deploy's status updates merge into one record.

Set-up per source (secrets: ``DEPLOY_WEBHOOK_SECRET_<SOURCE>`` in the receiver's
environment; a source without one is refused unless the receiver allows unsigned events):

- GitHub: repository Settings > Webhooks > Add webhook: Payload URL
  ``https://RECEIVER/webhooks/github``, content type ``application/json``, secret =
  ``$DEPLOY_WEBHOOK_SECRET_GITHUB``, events "Deployments" and "Deployment statuses".
  Name the service/version/expectations in the deployment payload::

      gh api repos/OWNER/REPO/deployments -f ref=main -f environment=production \
         -F 'payload[service]=checkout' -F 'payload[version]=v42'

- GitLab: project Settings > Webhooks: URL ``https://RECEIVER/webhooks/gitlab``, secret
  token = ``$DEPLOY_WEBHOOK_SECRET_GITLAB``, trigger "Deployment events" (a Standard
  Webhooks signing token works too).
- Argo CD (argocd-notifications-cm; the body is a template, so broken JSON gets a 400
  saying where)::

      service.webhook.deploy-verify: |
        url: https://RECEIVER/webhooks/argocd
        headers:
        - {name: Authorization, value: "Bearer $deploy-verify-token"}
        - {name: Content-Type, value: application/json}
      template.deploy-verify: |
        webhook:
          deploy-verify:
            method: POST
            body: |
              {"app": "{{.app.metadata.name}}", "environment": "production",
               "revision": "{{.app.status.operationState.syncResult.revision}}",
               "phase": "{{.app.status.operationState.phase}}",
               "started_at": "{{.app.status.operationState.startedAt}}",
               "finished_at": "{{.app.status.operationState.finishedAt}}"}

- Spinnaker: a pipeline webhook notification to ``https://RECEIVER/webhooks/spinnaker``
  with header ``Authorization: Bearer $DEPLOY_WEBHOOK_SECRET_SPINNAKER``, on pipeline
  starting/complete/failed; the pipeline's parameters ``environment`` and ``version``
  name the deploy, the application is the service.
- Grafana annotation senders: point the tool's Grafana URL at ``https://RECEIVER`` with
  API key ``$DEPLOY_WEBHOOK_SECRET_GRAFANA`` (sent as ``Authorization: Bearer``) and tag
  the annotation ``service:<name>``, ``env:<name>``, ``version:<v>``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from analyzers.errors import EventError

_GITHUB_STATES = {
    "pending": "started", "queued": "started", "in_progress": "started",
    "success": "succeeded", "failure": "failed", "error": "failed",
}
_GITLAB_STATES = {"created": "started", "running": "started", "success": "succeeded",
                  "failed": "failed", "canceled": "cancelled", "skipped": "cancelled"}
_ARGO_PHASES = {"running": "started", "succeeded": "succeeded", "failed": "failed", "error": "failed",
                "terminating": "cancelled", "synced": "succeeded", "outofsync": "started"}
_SPINNAKER_TYPES = {"starting": "started", "complete": "succeeded", "failed": "failed"}


def _get(d: Any, path: str, source: str, *, required: bool = True) -> Any:
    cur = d
    for part in path.split("."):
        if not isinstance(cur, Mapping) or cur.get(part) is None:
            if required:
                raise EventError(f"{source} payload: {path} is required", field=path, status_code=422)
            return None
        cur = cur[part]
    return cur


def _obj(d: Any, source: str) -> Mapping[str, Any]:
    if not isinstance(d, Mapping):
        raise EventError(f"{source} payload must be a JSON object", status_code=422)
    return d


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def _expectations(payload: Any) -> Any:
    if isinstance(payload, Mapping):
        return payload.get("expectations")
    return None


def from_github(data: Any, event: str, delivery: str | None = None) -> dict[str, Any] | None:
    """GitHub ``deployment`` / ``deployment_status`` (X-GitHub-Event) -> deploy-event/v1.

    ``deployment.payload`` may carry ``service``, ``version`` and ``expectations``; else
    the repository name is the service and the commit SHA (first 12) the version.
    """
    d = _obj(data, "github")
    if event not in ("deployment", "deployment_status"):
        return None
    dep = _get(d, "deployment", "github")
    repo = _get(d, "repository.full_name", "github", required=False) or ""
    payload = dep.get("payload") if isinstance(dep, Mapping) else None
    payload = payload if isinstance(payload, Mapping) else {}
    sha = _get(dep, "sha", "github")
    status = "started"
    finished = None
    url = None
    if event == "deployment_status":
        state = str(_get(d, "deployment_status.state", "github")).lower()
        if state not in _GITHUB_STATES:
            return None  # inactive and future states: not a status of this deploy's life
        status = _GITHUB_STATES[state]
        if status != "started":
            finished = _get(d, "deployment_status.created_at", "github", required=False)
        url = _get(d, "deployment_status.target_url", "github", required=False)
    return _drop_none({
        "source": "github",
        "deploy_id": f"github:{repo}:{_get(dep, 'id', 'github')}",
        "service": payload.get("service") or _get(d, "repository.name", "github", required=False) or repo,
        "environment": _get(dep, "environment", "github"),
        "version": payload.get("version") or str(sha)[:12],
        "started_at": _get(dep, "created_at", "github"),
        "finished_at": finished,
        "status": status,
        "commit_sha": sha,
        "ref": dep.get("ref"),
        "author": _get(dep, "creator.login", "github", required=False),
        "url": url if isinstance(url, str) and url.startswith(("http://", "https://")) else None,
        "description": dep.get("description"),
        "labels": {"repository": repo} if repo else None,
        "expectations": _expectations(payload),
    })


def _gitlab_time(value: Any) -> Any:
    """GitLab writes ``2021-04-28 21:50:00 +0200`` or ``... UTC``; make it RFC 3339."""
    if not isinstance(value, str):
        return value
    m = re.fullmatch(r"(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2}) ?(UTC|[+-]\d{2}:?\d{2})", value.strip())
    if not m:
        return value
    tz = "Z" if m.group(3) == "UTC" else m.group(3)
    return f"{m.group(1)}T{m.group(2)}{tz}"


def from_gitlab(data: Any) -> dict[str, Any] | None:
    """GitLab deployment events (``object_kind: deployment``) -> deploy-event/v1."""
    d = _obj(data, "gitlab")
    if d.get("object_kind") != "deployment":
        return None
    state = str(_get(d, "status", "gitlab")).lower()
    status = _GITLAB_STATES.get(state)
    if status is None:
        raise EventError(f"gitlab payload: status {state!r} unknown", field="status", status_code=422)
    project = _get(d, "project.path_with_namespace", "gitlab", required=False) or ""
    changed = _gitlab_time(_get(d, "status_changed_at", "gitlab"))
    return _drop_none({
        "source": "gitlab",
        "deploy_id": f"gitlab:{project}:{_get(d, 'deployment_id', 'gitlab')}",
        "service": _get(d, "project.name", "gitlab"),
        "environment": _get(d, "environment", "gitlab"),
        "version": d.get("short_sha") or str(_get(d, "commit_url", "gitlab")).rsplit("/", 1)[-1][:12],
        "started_at": changed,
        "finished_at": changed if status != "started" else None,
        "status": status,
        "ref": d.get("ref"),
        "author": d.get("user_username"),
        "url": d.get("deployable_url"),
        "description": d.get("commit_title"),
        "labels": {"project": project} if project else None,
    })


def from_argocd(data: Any) -> dict[str, Any] | None:
    """Argo CD notification from a webhook template.

    Either the template emits deploy-event/v1 directly (has ``service``), or this shape::

        {"app": "{{.app.metadata.name}}", "revision": "{{.app.status.sync.revision}}",
         "environment": "production", "phase": "{{.app.status.operationState.phase}}",
         "started_at": "{{.app.status.operationState.startedAt}}",
         "finished_at": "{{.app.status.operationState.finishedAt}}"}
    """
    d = _obj(data, "argocd")
    if "service" in d:
        return {"source": "argocd", **d}
    app = _get(d, "app", "argocd")
    revision = str(_get(d, "revision", "argocd"))
    phase = str(d.get("phase") or "Succeeded").lower()
    status = _ARGO_PHASES.get(phase)
    if status is None:
        raise EventError(f"argocd payload: phase {phase!r} unknown (Running, Succeeded, Failed, Error)",
                         field="phase", status_code=422)
    started = _get(d, "started_at", "argocd")
    return _drop_none({
        "source": "argocd",
        "deploy_id": f"argocd:{app}:{revision}:{started}",
        "service": d.get("service_name") or app,
        "environment": _get(d, "environment", "argocd"),
        "version": revision[:12],
        "commit_sha": revision if re.fullmatch(r"[0-9a-f]{40}", revision) else None,
        "started_at": started,
        "finished_at": (d.get("finished_at") or None) if status != "started" else None,
        "status": status,
        "author": d.get("author") or None,
        "url": d.get("url") or None,
    })


def from_spinnaker(data: Any) -> dict[str, Any] | None:
    """Spinnaker echo webhook (``details.type`` ``orca:pipeline:starting|complete|failed``).

    The pipeline's trigger parameters ``environment`` and ``version`` name the deploy.
    """
    d = _obj(data, "spinnaker")
    kind = str(_get(d, "details.type", "spinnaker"))
    m = re.fullmatch(r"orca:pipeline:(\w+)", kind)
    if not m or m.group(1) not in _SPINNAKER_TYPES:
        return None
    status = _SPINNAKER_TYPES[m.group(1)]
    ex = _get(d, "content.execution", "spinnaker")
    params = _get(ex, "trigger.parameters", "spinnaker", required=False)
    params = params if isinstance(params, Mapping) else {}
    return _drop_none({
        "source": "spinnaker",
        "deploy_id": f"spinnaker:{_get(ex, 'id', 'spinnaker')}",
        "service": _get(d, "details.application", "spinnaker"),
        "environment": params.get("environment") or _get(ex, "trigger.parameters.environment", "spinnaker"),
        "version": params.get("version") or _get(ex, "trigger.parameters.version", "spinnaker"),
        "started_at": _get(ex, "startTime", "spinnaker"),
        "finished_at": ex.get("endTime") if status != "started" else None,
        "status": status,
        "author": _get(ex, "trigger.user", "spinnaker", required=False),
    })


def from_grafana_annotation(data: Any) -> dict[str, Any] | None:
    """Grafana ``POST /api/annotations`` body -> deploy-event/v1.

    Tags ``service:<name>``, ``env:<name>`` (or ``environment:``) and ``version:<v>`` name
    the deploy (environment defaults to ``production``, version to the text); ``time`` and
    ``timeEnd`` are epoch milliseconds, as Grafana takes them.
    """
    d = _obj(data, "grafana")
    tags = d.get("tags") or []
    if not isinstance(tags, list):
        raise EventError("grafana payload: tags must be a list of strings", field="tags", status_code=422)
    kv: dict[str, str] = {}
    for t in tags:
        if isinstance(t, str) and ":" in t:
            k, v = t.split(":", 1)
            kv.setdefault(k.strip().lower(), v.strip())
    if "service" not in kv:
        raise EventError("grafana annotation: add a tag service:<name> (and env:<name>, version:<v>)",
                         field="tags", status_code=422)
    text = d.get("text") if isinstance(d.get("text"), str) else None
    return _drop_none({
        "source": "grafana",
        "service": kv["service"],
        "environment": kv.get("env") or kv.get("environment") or "production",
        "version": kv.get("version") or (text or "")[:200] or "unknown",
        "started_at": _get(d, "time", "grafana"),
        "finished_at": d.get("timeEnd") if d.get("timeEnd") and d.get("timeEnd") != d.get("time") else None,
        "description": text,
        "labels": {k: v for k, v in kv.items() if k not in ("service", "env", "environment", "version")} or None,
    })
