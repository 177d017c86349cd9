"""Source endpoints over real HTTP: GitHub, GitLab, Argo CD, Spinnaker, Grafana annotations."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from analyzers.events.store import Store, open_store
from analyzers.server.receiver import create_app
from tests.fixtures.receiver import SECRET, serve_app

SOURCE_SECRETS = {"github": "gh-secret", "gitlab": "gl-token", "argocd": "argo-token",
                  "spinnaker": "spin-token", "grafana": "graf-token"}


@pytest.fixture(scope="module")
def app_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Store]]:
    store = open_store(f"sqlite:///{tmp_path_factory.mktemp('sources') / 'd.db'}")
    with serve_app(create_app(store, secrets=[SECRET], source_secrets=SOURCE_SECRETS)) as base:
        yield base, store
    store.close()


def github_post(base: str, event: str, payload: dict[str, Any], delivery: str,
                secret: str = "gh-secret") -> requests.Response:
    body = json.dumps(payload).encode()
    sig = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return requests.post(base + "/webhooks/github", data=body, timeout=10, headers={
        "content-type": "application/json", "X-GitHub-Event": event, "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": sig})


DEPLOYMENT = {"id": 4242, "sha": "a" * 40, "ref": "main", "environment": "production",
              "created_at": "2026-11-27T10:00:00Z", "creator": {"login": "octocat"}, "description": "ship it",
              "payload": {"service": "checkout", "version": "v7",
                          "expectations": [{"metric": "latency_p99", "expect": "decrease"}]}}
REPO = {"name": "shop", "full_name": "acme/shop"}


def test_github_deployment_then_status_merge_into_one_deploy(app_store: tuple[str, Store]) -> None:
    base, store = app_store
    r1 = github_post(base, "deployment", {"action": "created", "deployment": DEPLOYMENT, "repository": REPO}, "g-1")
    assert r1.status_code == 201, r1.text
    assert r1.json()["deploy"]["status"] == "started"
    status = {"state": "success", "created_at": "2026-11-27T10:04:00Z", "target_url": "https://ci.example/run/1"}
    r2 = github_post(base, "deployment_status", {"action": "created", "deployment_status": status,
                                                 "deployment": DEPLOYMENT, "repository": REPO}, "g-2")
    assert r2.status_code == 201 and r2.json()["deploy_id"] == r1.json()["deploy_id"] == "github:acme/shop:4242"
    d = store.get_deploy("github:acme/shop:4242")
    assert d is not None
    assert (d.service, d.version, d.status, d.author) == ("checkout", "v7", "succeeded", "octocat")
    assert d.finished_at is not None and d.finished_at.isoformat().startswith("2026-11-27T10:04")
    assert d.expectations[0].metric == "latency_p99"


def test_github_redelivery_is_a_duplicate(app_store: tuple[str, Store]) -> None:
    base, store = app_store
    dep = {**DEPLOYMENT, "id": 5151}
    payload: dict[str, Any] = {"action": "created", "deployment": dep, "repository": REPO}
    assert github_post(base, "deployment", payload, "g-redeliver").status_code == 201
    again = github_post(base, "deployment", payload, "g-redeliver")
    assert again.status_code == 200 and again.json()["status"] == "duplicate"


def test_github_bad_signature_ping_and_inactive(app_store: tuple[str, Store]) -> None:
    base, _ = app_store
    payload: dict[str, Any] = {"action": "created", "deployment": DEPLOYMENT, "repository": REPO}
    assert github_post(base, "deployment", payload, "g-bad", secret="wrong").status_code == 401
    assert github_post(base, "ping", {"zen": "hi"}, "g-ping").status_code == 202
    inactive = {"action": "created", "deployment_status": {"state": "inactive", "created_at": "2026-11-27T11:00:00Z"},
                "deployment": DEPLOYMENT, "repository": REPO}
    assert github_post(base, "deployment_status", inactive, "g-inactive").status_code == 202


def test_gitlab_deployment_with_token(app_store: tuple[str, Store]) -> None:
    base, store = app_store
    payload: dict[str, Any] = {"object_kind": "deployment", "status": "success", "status_changed_at": "2026-11-27 12:00:00 +0200",
               "deployment_id": 15, "environment": "production", "short_sha": "abc1234",
               "project": {"name": "search", "path_with_namespace": "acme/search"}, "user_username": "ana",
               "deployable_url": "https://gitlab.example/acme/search/-/jobs/1"}
    url = base + "/webhooks/gitlab"
    assert requests.post(url, json=payload, headers={"X-Gitlab-Token": "nope"}, timeout=10).status_code == 401
    r = requests.post(url, json=payload, headers={"X-Gitlab-Token": "gl-token"}, timeout=10)
    assert r.status_code == 201, r.text
    d = store.get_deploy("gitlab:acme/search:15")
    assert d is not None and d.started_at.isoformat() == "2026-11-27T10:00:00+00:00" and d.version == "abc1234"


def test_argocd_broken_template_json_is_a_clear_400(app_store: tuple[str, Store]) -> None:
    base, _ = app_store
    broken = b'{"app": "checkout", "revision": "abc", "phase": "Succeeded",}'
    r = requests.post(base + "/webhooks/argocd", data=broken, timeout=10,
                      headers={"Authorization": "Bearer argo-token", "content-type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"] and "column" in r.json()["error"]


def test_argocd_template_shape_is_stored(app_store: tuple[str, Store]) -> None:
    base, store = app_store
    payload: dict[str, Any] = {"app": "payments", "revision": "b" * 40, "environment": "production", "phase": "Succeeded",
               "started_at": "2026-11-27T09:00:00Z", "finished_at": "2026-11-27T09:03:00Z"}
    assert requests.post(base + "/webhooks/argocd", json=payload, timeout=10).status_code == 401
    r = requests.post(base + "/webhooks/argocd", json=payload, headers={"Authorization": "Bearer argo-token"}, timeout=10)
    assert r.status_code == 201, r.text
    assert r.json()["deploy"]["service"] == "payments" and r.json()["deploy"]["commit_sha"] == "b" * 40


def test_spinnaker_pipeline_complete(app_store: tuple[str, Store]) -> None:
    base, _ = app_store
    payload: dict[str, Any] = {"details": {"type": "orca:pipeline:complete", "application": "search"},
               "content": {"execution": {"id": "01HX", "startTime": 1795773600000, "endTime": 1795773900000,
                                         "trigger": {"user": "bob", "parameters": {"environment": "production",
                                                                                   "version": "v9"}}}}}
    r = requests.post(base + "/webhooks/spinnaker", json=payload, headers={"Authorization": "Bearer spin-token"},
                      timeout=10)
    assert r.status_code == 201, r.text
    assert r.json()["deploy"]["started_at"] == "2026-11-27T10:00:00Z" and r.json()["deploy"]["status"] == "succeeded"


def test_grafana_annotation_shape_works_unchanged(app_store: tuple[str, Store]) -> None:
    base, _ = app_store
    payload: dict[str, Any] = {"time": 1795773600000, "tags": ["deploy", "service:checkout", "env:production", "version:v5"],
               "text": "Deployed v5"}
    r = requests.post(base + "/api/annotations", json=payload, headers={"Authorization": "Bearer graf-token"},
                      timeout=10)
    assert r.status_code == 200 and r.json()["message"] == "Annotation added"
    assert r.json()["deploy"]["version"] == "v5"
    missing = requests.post(base + "/api/annotations", json={"time": 1795773600000, "tags": ["deploy"]},
                            headers={"Authorization": "Bearer graf-token"}, timeout=10)
    assert missing.status_code == 422 and "service:<name>" in missing.json()["error"]


def test_source_without_secret_is_refused_unless_unsigned_is_allowed(tmp_path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'x.db'}")
    payload: dict[str, Any] = {"time": 1795773600000, "tags": ["service:checkout"]}
    with serve_app(create_app(store, secrets=[SECRET], source_secrets={})) as base:
        r = requests.post(base + "/api/annotations", json=payload, timeout=10)
        assert r.status_code == 401 and "DEPLOY_WEBHOOK_SECRET_GRAFANA" in r.json()["error"]
    with serve_app(create_app(store, secrets=[SECRET], source_secrets={}, allow_unsigned=True)) as base:
        r = requests.post(base + "/api/annotations", json=payload, timeout=10)
        assert r.status_code == 200 and r.json()["signed"] is False
    store.close()


def test_gitlab_standard_webhooks_signature_is_accepted(app_store: tuple[str, Store]) -> None:
    from analyzers.events.send import signed_headers

    base, store = app_store
    payload: dict[str, Any] = {"object_kind": "deployment", "status": "running", "status_changed_at": "2026-11-27 10:00:00 UTC",
               "deployment_id": 16, "environment": "production", "short_sha": "def5678",
               "project": {"name": "search", "path_with_namespace": "acme/search"}}
    body = json.dumps(payload).encode()
    r = requests.post(base + "/webhooks/gitlab", data=body, headers=signed_headers(body, "gl-token"), timeout=10)
    assert r.status_code == 201, r.text
    forged = signed_headers(body, "other-token")
    assert requests.post(base + "/webhooks/gitlab", data=body, headers=forged, timeout=10).status_code == 401
    assert store.get_deploy("gitlab:acme/search:16").status == "started"  # type: ignore[union-attr]


def test_source_events_keep_the_original_payload(app_store: tuple[str, Store]) -> None:
    base, store = app_store
    dep = {**DEPLOYMENT, "id": 6161}
    assert github_post(base, "deployment", {"action": "created", "deployment": dep, "repository": REPO},
                       "g-raw").status_code == 201
    raw = store.event_payload("github", "g-raw")  # type: ignore[attr-defined]
    assert raw is not None and raw["deployment"]["id"] == 6161 and raw["repository"] == REPO


def test_unsigned_can_be_allowed_for_one_source_only(tmp_path) -> None:
    from analyzers.events.send import encode_event

    store = open_store(f"sqlite:///{tmp_path / 'one.db'}")
    annotation: dict[str, Any] = {"time": 1795773600000, "tags": ["service:checkout"]}
    argo = {"app": "a", "revision": "r1", "environment": "production", "started_at": "2026-11-27T10:00:00Z"}
    generic = encode_event({"service": "s", "environment": "p", "version": "1", "started_at": 1795773600})
    with serve_app(create_app(store, secrets=[SECRET], source_secrets={}, allow_unsigned={"grafana"})) as base:
        r = requests.post(base + "/api/annotations", json=annotation, timeout=10)
        assert r.status_code == 200 and r.json()["signed"] is False
        assert requests.post(base + "/webhooks/argocd", json=argo, timeout=10).status_code == 401
        unsigned_generic = requests.post(base + "/webhooks/deploys", data=generic, timeout=10,
                                         headers={"content-type": "application/json"})
        assert unsigned_generic.status_code == 401
    store.close()
