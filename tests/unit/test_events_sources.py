"""Source adapters map each CI/CD payload to a valid deploy-event/v1, and the merge rule."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzers.errors import EventError
from analyzers.events import sources
from analyzers.events.schema import parse_event
from analyzers.events.store import merge_deploys
from analyzers.model import Deploy, Expectation

T = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


def gh(state: str | None) -> dict[str, Any]:
    d: dict[str, Any] = {
        "deployment": {"id": 1, "sha": "f" * 40, "ref": "main", "environment": "production",
                       "created_at": "2026-11-27T10:00:00Z", "creator": {"login": "octocat"}, "payload": {}},
        "repository": {"name": "shop", "full_name": "acme/shop"},
    }
    if state is not None:
        d["deployment_status"] = {"state": state, "created_at": "2026-11-27T10:03:00Z"}
    return d


@pytest.mark.parametrize("state, status", [("queued", "started"), ("in_progress", "started"),
                                           ("success", "succeeded"), ("failure", "failed"), ("error", "failed")])
def test_github_states_map_to_statuses(state: str, status: str) -> None:
    e = parse_event(sources.from_github(gh(state), "deployment_status"), source="github")  # type: ignore[arg-type]
    assert e.status == status
    assert e.effective_deploy_id == "github:acme/shop:1"
    assert (e.service, e.version, e.author) == ("shop", "f" * 12, "octocat")
    assert (e.finished_at is None) == (status == "started")


def test_github_non_deploy_events_are_ignored() -> None:
    assert sources.from_github({"zen": "x"}, "ping") is None
    assert sources.from_github(gh("inactive"), "deployment_status") is None


def test_github_missing_environment_names_the_field() -> None:
    payload = gh(None)
    del payload["deployment"]["environment"]  # type: ignore[attr-defined]
    with pytest.raises(EventError, match="environment is required") as exc:
        sources.from_github(payload, "deployment")
    assert exc.value.status_code == 422


def test_gitlab_time_format_and_status() -> None:
    out = sources.from_gitlab({"object_kind": "deployment", "status": "running", "deployment_id": 3,
                               "status_changed_at": "2026-11-27 10:00:00 UTC", "environment": "staging",
                               "short_sha": "abc", "project": {"name": "search", "path_with_namespace": "a/search"}})
    e = parse_event(out, source="gitlab")  # type: ignore[arg-type]
    assert (e.started_at, e.status, e.environment) == (T, "started", "staging")
    assert sources.from_gitlab({"object_kind": "push"}) is None


def test_argocd_passes_through_generic_events_and_maps_its_own_shape() -> None:
    generic = {"service": "a", "environment": "p", "version": "1", "started_at": "2026-11-27T10:00:00Z"}
    assert parse_event(sources.from_argocd(generic)).source == "argocd"  # type: ignore[arg-type]
    with pytest.raises(EventError, match="phase 'degraded' unknown"):
        sources.from_argocd({"app": "a", "revision": "r", "phase": "Degraded", "started_at": "x", "environment": "p"})


def test_grafana_tags_name_the_deploy() -> None:
    out = sources.from_grafana_annotation({"time": 1795773600000, "tags": ["service:checkout", "version:v2",
                                                                           "team:pay"], "text": "hi"})
    e = parse_event(out, source="grafana")  # type: ignore[arg-type]
    assert (e.service, e.environment, e.version, e.started_at) == ("checkout", "production", "v2", T)
    assert e.labels == {"team": "pay"}


BASE = Deploy(deploy_id="d", service="s", environment="p", version="1", started_at=T, status="started",
              received_at=T, updated_at=T)


def test_merge_moves_forward_and_fills_fields() -> None:
    done = replace(BASE, status="succeeded", finished_at=T + timedelta(minutes=4), commit_sha="abc",
                   labels={"b": "2"}, updated_at=T + timedelta(minutes=4))
    m = merge_deploys(replace(BASE, labels={"a": "1"}), done)
    assert (m.status, m.finished_at, m.commit_sha) == ("succeeded", T + timedelta(minutes=4), "abc")
    assert m.labels == {"a": "1", "b": "2"} and m.received_at == T and m.updated_at == T + timedelta(minutes=4)


def test_merge_never_moves_backwards() -> None:
    done = replace(BASE, status="rolled_back", finished_at=T + timedelta(minutes=9))
    m = merge_deploys(done, replace(BASE, status="succeeded", finished_at=T + timedelta(minutes=4)))
    assert m.status == "rolled_back" and m.finished_at == T + timedelta(minutes=9)
    m = merge_deploys(done, BASE)
    assert m.status == "rolled_back"


def test_merge_keeps_expectations_unless_replaced_and_earliest_start() -> None:
    exp = (Expectation("latency_p99", "decrease"),)
    m = merge_deploys(replace(BASE, expectations=exp), replace(BASE, status="succeeded",
                                                              started_at=T - timedelta(seconds=5)))
    assert m.expectations == exp and m.started_at == T - timedelta(seconds=5)


def test_fast_deploy_dict_equals_the_model_serialisation() -> None:
    from analyzers.events.store.base import deploy_dict

    full = replace(BASE, finished_at=T + timedelta(minutes=1), labels={"a": "1"}, kind="release", flag="f",
                   expectations=(Expectation("latency_p99", "decrease", 0.1),), description="<b>")
    for d in (BASE, full):
        assert deploy_dict(d) == d.to_dict()


STATUSES = ["started", "succeeded", "failed", "cancelled", "rolled_back"]


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(st.sampled_from(STATUSES), min_size=1, max_size=8))
def test_merge_in_any_arrival_order_ends_at_the_furthest_status(order: list[str]) -> None:
    from analyzers.events.store import STATUS_RANK

    merged = replace(BASE, status=order[0])
    for status in order[1:]:
        merged = merge_deploys(merged, replace(BASE, status=status))
    top = max(STATUS_RANK[s] for s in order)
    assert STATUS_RANK[merged.status] == top
    assert merged.status == [s for s in order if STATUS_RANK[s] == top][-1]  # ties: the latest word wins


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.text(max_size=12),
              st.sampled_from(["2026-11-27T10:00:00Z", "success", "deployment", "orca:pipeline:complete"])),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(
        ["deployment", "deployment_status", "repository", "state", "id", "sha", "environment", "created_at",
         "payload", "name", "full_name", "object_kind", "status", "project", "details", "content", "execution",
         "trigger", "parameters", "type", "application", "app", "revision", "phase", "started_at", "time",
         "tags", "text", "startTime", "path_with_namespace", "deployment_id", "status_changed_at"]), inner,
        max_size=6)),
    max_leaves=20)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(json_values)
def test_adapters_on_arbitrary_json_return_a_dict_none_or_a_clear_event_error(data: Any) -> None:
    adapters = [lambda d: sources.from_github(d, "deployment"), lambda d: sources.from_github(d, "deployment_status"),
                sources.from_gitlab, sources.from_argocd, sources.from_spinnaker, sources.from_grafana_annotation]
    for adapt in adapters:
        try:
            out = adapt(data)
        except EventError as exc:
            assert exc.status_code == 422
            continue
        assert out is None or isinstance(out, dict)
        if out is not None:
            try:
                parse_event(out)
            except EventError:
                pass


def test_spinnaker_parameters_of_the_wrong_type_are_a_clear_error() -> None:
    payload = {"details": {"type": "orca:pipeline:complete", "application": "a"},
               "content": {"execution": {"id": "x", "startTime": 1795773600000, "trigger": {"parameters": [1]}}}}
    with pytest.raises(EventError, match="environment is required"):
        sources.from_spinnaker(payload)
