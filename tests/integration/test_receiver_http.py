"""The receiver over real HTTP: a real uvicorn process (session fixture) or a thread-served app."""

from __future__ import annotations

import gzip
import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from analyzers.events.send import encode_event, send_event, signed_headers
from analyzers.events.store import open_store
from analyzers.model import DeployVerdict, MetricVerdict
from analyzers.server.receiver import create_app
from tests.fixtures.receiver import SECRET, ReceiverInfo, serve_app
from tests.unit.test_events_schema import BAD

VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TS = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
KEYS = {"latency_p99", "error_ratio"}


def event(service: str | None = None, **kw: object) -> dict[str, Any]:
    return {"service": service or f"svc-{uuid.uuid4().hex[:8]}", "environment": "production", "version": "v1",
            "started_at": "2026-11-27T10:00:00Z", **kw}


def post_raw(url: str, body: bytes, *, secret: str | None = SECRET, msg_id: str | None = None,
             extra: dict[str, str] | None = None, ts: int | None = None) -> requests.Response:
    headers = signed_headers(body, secret, msg_id=msg_id, timestamp=ts) if secret else {"content-type": "application/json"}
    headers.update(extra or {})
    return requests.post(url, data=body, headers=headers, timeout=10)


def stored_events(info: ReceiverInfo) -> int:
    s = open_store(info.store_url)
    try:
        return s.count_events()
    finally:
        s.close()


# -- signatures ---------------------------------------------------------------------


def test_reference_vector_passes_the_signature_check_over_http(tmp_path) -> None:
    """With the clock at the vector's time the signature is accepted; the body is then
    judged as a deploy event (422 naming the first problem), not as a forgery (401)."""
    store = open_store(f"sqlite:///{tmp_path / 'v.db'}")
    app = create_app(store, secrets=[SECRET], clock=lambda: VECTOR_TS + 1)
    with serve_app(app) as base:
        r = requests.post(base + "/webhooks/deploys", data=VECTOR_BODY, timeout=10, headers={
            "webhook-id": VECTOR_ID, "webhook-timestamp": str(VECTOR_TS), "webhook-signature": VECTOR_SIG})
        assert r.status_code == 422, r.text
        assert r.json()["field"] == "test" and "unknown field" in r.json()["error"]
        bad = requests.post(base + "/webhooks/deploys", data=VECTOR_BODY, timeout=10, headers={
            "webhook-id": VECTOR_ID, "webhook-timestamp": str(VECTOR_TS), "webhook-signature": VECTOR_SIG[:-4] + "AAA="})
        assert bad.status_code == 401
    store.close()


def test_signed_event_is_created_then_duplicate_answers_200_with_the_same_deploy(receiver: ReceiverInfo) -> None:
    ev = event()
    r1 = send_event(receiver.webhook_url, ev, receiver.secret, msg_id="msg_dup_1")
    assert r1.status_code == 201, r1.text
    r2 = send_event(receiver.webhook_url, ev, receiver.secret, msg_id="msg_dup_1")  # a retry
    assert r2.status_code == 200 and r2.json()["status"] == "duplicate"
    assert r2.json()["deploy_id"] == r1.json()["deploy_id"]
    got = requests.get(f"{receiver.base_url}/v1/deploys", params={"service": ev["service"]}, timeout=10).json()
    assert got["count"] == 1 and got["deploys"][0]["signed"] is True


def test_event_id_in_the_body_dedups_across_different_webhook_ids(receiver: ReceiverInfo) -> None:
    ev = event(event_id=f"evt-{uuid.uuid4().hex}")
    assert send_event(receiver.webhook_url, ev, receiver.secret).status_code == 201
    assert send_event(receiver.webhook_url, ev, receiver.secret).status_code == 200


def test_bad_signature_is_401_and_stores_nothing(receiver: ReceiverInfo) -> None:
    before = stored_events(receiver)
    body = encode_event(event())
    r = post_raw(receiver.webhook_url, body, extra={"webhook-signature": "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="})
    assert r.status_code == 401
    assert r.json()["field"] == "webhook-signature" and "does not match" in r.json()["error"]
    other = "whsec_" + "b3RoZXItc2VjcmV0LW90aGVyLXNlY3JldA=="
    assert post_raw(receiver.webhook_url, body, secret=other).status_code == 401
    assert stored_events(receiver) == before


def test_stale_timestamp_is_401_naming_the_clock(receiver: ReceiverInfo) -> None:
    r = post_raw(receiver.webhook_url, encode_event(event()), ts=int(time.time()) - 600)
    assert r.status_code == 401
    assert r.json()["field"] == "webhook-timestamp" and "tolerance 300 s" in r.json()["error"]


def test_unsigned_post_is_refused_when_a_secret_is_configured(receiver: ReceiverInfo) -> None:
    r = post_raw(receiver.webhook_url, encode_event(event()), secret=None)
    assert r.status_code == 401 and "missing webhook-id" in r.json()["error"]


def test_unsigned_posts_need_explicit_configuration_and_are_marked(tmp_path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'u.db'}")
    with serve_app(create_app(store, secrets=[])) as base:
        r = post_raw(base + "/webhooks/deploys", encode_event(event()), secret=None)
        assert r.status_code == 401 and "no webhook secret" in r.json()["error"]
    with serve_app(create_app(store, secrets=[], allow_unsigned=True)) as base:
        body = encode_event(event())
        r = post_raw(base + "/webhooks/deploys", body, secret=None)
        assert r.status_code == 201 and r.json()["signed"] is False
        # no event_id, no webhook-id: the body hash dedups an identical retry
        assert post_raw(base + "/webhooks/deploys", body, secret=None).status_code == 200
    with serve_app(create_app(store, secrets=[SECRET], allow_unsigned=True)) as base:
        ok = post_raw(base + "/webhooks/deploys", encode_event(event()), secret=None)
        assert ok.status_code == 201 and ok.json()["signed"] is False
        forged = post_raw(base + "/webhooks/deploys", encode_event(event()),
                          extra={"webhook-signature": "v1,AAAA"})
        assert forged.status_code == 401  # a wrong signature is never downgraded to "unsigned"
    store.close()


# -- bodies ---------------------------------------------------------------------------


def test_invalid_json_is_400(receiver: ReceiverInfo) -> None:
    r = post_raw(receiver.webhook_url, b'{"service": "x",')
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]


@pytest.mark.parametrize("raw, status, field, message", BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_each_bad_input_over_http(receiver: ReceiverInfo, raw: bytes, status: int, field: str | None,
                                  message: str) -> None:
    r = post_raw(receiver.webhook_url, raw)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]
    if field is not None:
        assert r.json()["field"] == field


def test_declared_oversized_body_is_413_before_reading(receiver: ReceiverInfo) -> None:
    body = encode_event(event(description="x" * 3000)) + b" " * 300_000
    r = post_raw(receiver.webhook_url, body)
    assert r.status_code == 413 and "262144" in r.json()["error"]


def test_streamed_oversized_body_without_length_is_413(receiver: ReceiverInfo) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(64):
            yield b" " * 8192

    # fresh signature headers (for other bytes): the headers pass, so the body is read and capped
    r = requests.post(receiver.webhook_url, data=chunks(), timeout=10,
                      headers={**signed_headers(b"{}", SECRET), "content-type": "application/json"})
    assert r.status_code == 413


def test_gzip_body_is_accepted_and_the_signature_covers_the_decompressed_json(receiver: ReceiverInfo) -> None:
    body = encode_event(event())
    headers = signed_headers(body, SECRET)
    headers["content-encoding"] = "gzip"
    r = requests.post(receiver.webhook_url, data=gzip.compress(body), headers=headers, timeout=10)
    assert r.status_code == 201, r.text


def test_gzip_bomb_is_413_after_decompression(receiver: ReceiverInfo) -> None:
    inner = b'{"service":"' + b"a" * 20_000_000 + b'"}'
    bomb = gzip.compress(inner, compresslevel=9)
    assert len(bomb) < 262144  # small on the wire
    headers = signed_headers(inner, SECRET)
    headers["content-encoding"] = "gzip"
    r = requests.post(receiver.webhook_url, data=bomb, headers=headers, timeout=10)
    assert r.status_code == 413 and "decompresses" in r.json()["error"]


def test_corrupt_gzip_and_unknown_encoding(receiver: ReceiverInfo) -> None:
    assert post_raw(receiver.webhook_url, b"not gzip", extra={"content-encoding": "gzip"}).status_code == 400
    body = encode_event(event())
    two = gzip.compress(body) + gzip.compress(b"more")
    r = requests.post(receiver.webhook_url, data=two, timeout=10,
                      headers={**signed_headers(body, SECRET), "content-encoding": "gzip"})
    assert r.status_code == 400 and "after its end" in r.json()["error"]
    truncated = gzip.compress(body)[:-6]
    r = requests.post(receiver.webhook_url, data=truncated, timeout=10,
                      headers={**signed_headers(body, SECRET), "content-encoding": "gzip"})
    assert r.status_code == 400 and "truncated" in r.json()["error"]
    r = post_raw(receiver.webhook_url, b"{}", extra={"content-encoding": "br"})
    assert r.status_code == 415 and r.json()["field"] == "content-encoding"


def test_unknown_metric_key_is_422_naming_it(receiver: ReceiverInfo) -> None:
    r = send_event(receiver.webhook_url, event(expectations=[{"metric": "rate(up[5m])", "expect": "increase"}]),
                   receiver.secret)
    assert r.status_code == 422
    assert "'rate(up[5m])'" in r.json()["error"] and r.json()["field"] == "expectations"


def test_catalog_metric_key_is_accepted(receiver: ReceiverInfo) -> None:
    r = send_event(receiver.webhook_url, event(expectations=[{"metric": "latency_p99", "expect": "decrease"}]),
                   receiver.secret)
    assert r.status_code == 201, r.text
    assert r.json()["deploy"]["expectations"] == [{"metric": "latency_p99", "expect": "decrease"}]


# -- store failures ---------------------------------------------------------------------


def test_locked_store_answers_503_with_retry_after_then_recovers(tmp_path) -> None:
    path = tmp_path / "locked.db"
    store = open_store(f"sqlite:///{path}", busy_timeout_s=0.2)
    with serve_app(create_app(store, secrets=[SECRET])) as base:
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        ev = event()
        try:
            r = send_event(base + "/webhooks/deploys", ev, SECRET, msg_id="m1")
            assert r.status_code == 503 and r.headers["Retry-After"] == "5"
            assert "retry later" in r.json()["error"]
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        r = send_event(base + "/webhooks/deploys", ev, SECRET, msg_id="m1")  # the sender's retry
        assert r.status_code == 201
    assert store.count_events() == 1
    store.close()


# -- read API ---------------------------------------------------------------------------


def test_read_api_filters_and_includes_the_latest_verdict(receiver: ReceiverInfo) -> None:
    svc = f"svc-{uuid.uuid4().hex[:8]}"
    ids = []
    for i, env in enumerate(["production", "staging", "production"]):
        ev = event(svc, environment=env, version=f"v{i}", started_at=f"2026-11-27T1{i}:00:00Z")
        ids.append(send_event(receiver.webhook_url, ev, receiver.secret).json()["deploy_id"])
    s = open_store(receiver.store_url)
    mv = MetricVerdict(metric="error_ratio", role="guard", expect="unchanged", outcome="regressed", reason="up 3x")
    for overall in ("inconclusive", "fail"):
        s.save_verdict(DeployVerdict(deploy_id=ids[2], overall=overall, reason=overall, metrics=(mv,),  # type: ignore[arg-type]
                                     checked_at=datetime(2026, 11, 27, 13, tzinfo=UTC)))
    s.close()
    url = f"{receiver.base_url}/v1/deploys"

    def ids_for(**params: Any) -> list[str]:
        r = requests.get(url, params={"service": svc, **params}, timeout=10)
        assert r.status_code == 200, r.text
        return [d["deploy_id"] for d in r.json()["deploys"]]

    assert ids_for() == [ids[2], ids[1], ids[0]]
    assert ids_for(environment="production") == [ids[2], ids[0]]
    assert ids_for(since="2026-11-27T11:00:00Z") == [ids[2], ids[1]]
    assert ids_for(until="2026-11-27T11:00:00Z") == [ids[0]]
    assert ids_for(since=str(int(datetime(2026, 11, 27, 12, tzinfo=UTC).timestamp()))) == [ids[2]]
    assert ids_for(limit=1) == [ids[2]]
    first = requests.get(url, params={"service": svc, "limit": "1"}, timeout=10).json()["deploys"][0]
    assert first["verdict"]["overall"] == "fail"
    detail = requests.get(f"{url}/{ids[2]}", timeout=10).json()
    assert [v["overall"] for v in detail["verdict_history"]] == ["inconclusive", "fail"]
    assert requests.get(f"{url}/{ids[0]}", timeout=10).json()["verdict"] is None


def test_read_api_shows_the_combined_verdict_not_the_check_stored_last(receiver: ReceiverInfo) -> None:
    svc = f"svc-{uuid.uuid4().hex[:8]}"
    did = send_event(receiver.webhook_url, event(svc, version="v2", started_at="2026-11-27T10:00:00Z"),
                     receiver.secret).json()["deploy_id"]
    at = datetime(2026, 11, 27, 10, 20, tzinfo=UTC)
    guard = MetricVerdict(metric="error_ratio", role="guard", expect="unchanged", outcome="ok", reason="flat")
    canary = MetricVerdict(metric="error_ratio", role="canary", expect="no worse than baseline",  # type: ignore[arg-type]
                           outcome="regressed", reason="canary 5x", result={"intervals": 15})
    s = open_store(receiver.store_url)
    s.save_verdict(DeployVerdict(deploy_id=did, overall="pass", reason="flat", metrics=(guard,), checked_at=at))
    # the gate stores the canary's fail after the worker's before/after pass
    s.save_verdict(DeployVerdict(deploy_id=did, overall="fail", reason="Canary vs baseline: canary 5x", metrics=(canary,),
                                 checked_at=at, check_kind="canary"))
    s.save_verdict(DeployVerdict(deploy_id=did, overall="pass", reason="still flat", metrics=(guard,), checked_at=at))
    s.close()
    listed = requests.get(f"{receiver.base_url}/v1/deploys", params={"service": svc}, timeout=10).json()["deploys"][0]
    one = requests.get(f"{receiver.base_url}/v1/deploys/{did}", timeout=10).json()
    for v in (listed["verdict"], one["verdict"]):
        assert v["overall"] == "fail" and v["reason"].startswith("Canary vs baseline")
        assert [m["role"] for m in v["metrics"]] == ["guard", "canary"]
    assert [v["overall"] for v in one["verdict_history"]] == ["pass", "fail", "pass"]


def test_read_api_relative_since_and_bad_parameters(receiver: ReceiverInfo) -> None:
    svc = f"svc-{uuid.uuid4().hex[:8]}"
    recent = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    send_event(receiver.webhook_url, event(svc, started_at=recent), receiver.secret)
    url = f"{receiver.base_url}/v1/deploys"
    assert requests.get(url, params={"service": svc, "since": "2h"}, timeout=10).json()["count"] == 1
    assert requests.get(url, params={"service": svc, "since": "30m"}, timeout=10).json()["count"] == 0
    bad = requests.get(url, params={"since": "last tuesday"}, timeout=10)
    assert bad.status_code == 422 and bad.json()["field"] == "since"
    assert requests.get(url, params={"limit": 0}, timeout=10).status_code == 422
    not_int = requests.get(url, params={"limit": "ten"}, timeout=10)
    assert not_int.status_code == 422 and not_int.json()["field"] == "limit" and "integer" in not_int.json()["error"]
    missing = requests.get(f"{url}/nope", timeout=10)
    assert missing.status_code == 404 and "nope" in missing.json()["error"]


def test_read_token_protects_the_read_api(tmp_path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'r.db'}")
    with serve_app(create_app(store, secrets=[SECRET], read_token="s3cret")) as base:
        assert requests.get(base + "/v1/deploys", timeout=10).status_code == 401
        assert requests.get(base + "/v1/deploys", headers={"Authorization": "Bearer wrong"}, timeout=10).status_code == 401
        assert requests.get(base + "/v1/deploys", headers={"Authorization": "Bearer s3cret"}, timeout=10).status_code == 200
        assert requests.get(base + "/healthz", timeout=10).status_code == 200
    store.close()


def test_protect_metrics_puts_metrics_and_openapi_behind_the_read_token(tmp_path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'pm.db'}")
    ok = {"Authorization": "Bearer s3cret"}
    with serve_app(create_app(store, secrets=[SECRET], read_token="s3cret")) as base:  # default: only /v1
        assert requests.get(base + "/metrics", timeout=10).status_code == 200
        assert requests.get(base + "/openapi.json", timeout=10).status_code == 200
    with serve_app(create_app(store, secrets=[SECRET], read_token="s3cret", protect_metrics=True)) as base:
        for path in ("/metrics", "/openapi.json", "/v1/deploys"):
            r = requests.get(base + path, timeout=10)
            assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer", path
            assert "read token" in r.json()["error"]
            assert requests.get(base + path, headers={"Authorization": "Bearer s3cre"}, timeout=10).status_code == 401
            assert requests.get(base + path, headers=ok, timeout=10).status_code == 200, path
        assert requests.get(base + "/healthz", timeout=10).status_code == 200  # probes need no token
        assert send_event(base + "/webhooks/deploys", event(), SECRET).status_code == 201  # writers sign instead
    store.close()


def test_healthz_metrics_and_openapi(receiver: ReceiverInfo) -> None:
    assert requests.get(receiver.base_url + "/healthz", timeout=10).json() == {"status": "ok"}
    send_event(receiver.webhook_url, event(), receiver.secret)
    post_raw(receiver.webhook_url, b"{", secret=SECRET)
    text = requests.get(receiver.base_url + "/metrics", timeout=10).text
    assert 'receiver_events_total{reason="ok",result="accepted",source="generic"}' in text
    assert 'receiver_events_total{reason="malformed",result="rejected",source="generic"}' in text
    assert 'receiver_http_requests_total{method="POST",path="/webhooks/deploys",status="201"}' in text
    spec = requests.get(receiver.base_url + "/openapi.json", timeout=10).json()
    body_schema = spec["paths"]["/webhooks/deploys"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body_schema["required"] == ["service", "environment", "version", "started_at"]
    assert "/v1/deploys" in spec["paths"]


def test_text_fields_come_back_as_json_text_not_html(receiver: ReceiverInfo) -> None:
    ev = event(description="<script>alert('x')</script>")
    r = send_event(receiver.webhook_url, ev, receiver.secret)
    got = requests.get(f"{receiver.base_url}/v1/deploys/{r.json()['deploy_id']}", timeout=10)
    assert got.headers["content-type"].startswith("application/json")
    assert json.loads(got.text)["deploy"]["description"] == "<script>alert('x')</script>"


def test_overload_answers_503_with_retry_after_instead_of_queueing(tmp_path) -> None:
    """With every ingestion slot busy (here: one signed event whose commit is slow), the next
    post is told to come back. Only authenticated events hold a slot (a slow body does not:
    see tests/attack/test_slow_clients.py)."""
    import threading

    from analyzers.events.store.sqlite import SQLiteStore

    release = threading.Event()
    committing = threading.Event()

    class SlowCommit(SQLiteStore):
        def record_events(self, items):  # type: ignore[no-untyped-def]
            committing.set()
            release.wait(10)
            return super().record_events(items)

    store = SlowCommit(str(tmp_path / "o.db"))
    with serve_app(create_app(store, secrets=[SECRET], max_inflight=1)) as base:
        result: dict[str, requests.Response] = {}
        slow = threading.Thread(target=lambda: result.setdefault("slow", send_event(
            base + "/webhooks/deploys", event(), SECRET)))
        slow.start()
        assert committing.wait(5)  # the slow event now holds the only slot
        r = send_event(base + "/webhooks/deploys", event(), SECRET)
        release.set()
        slow.join(20)
        assert r.status_code == 503 and r.headers["Retry-After"] == "1" and "overloaded" in r.json()["error"]
        assert result["slow"].status_code == 201  # the slow sender still got through
    store.close()


def test_concurrent_events_are_group_committed_and_each_answered(tmp_path) -> None:
    """While one commit is slow (50 ms here), the events arriving meanwhile share the next one."""
    from concurrent.futures import ThreadPoolExecutor

    from analyzers.events.store.sqlite import SQLiteStore

    class SlowFirstCommit(SQLiteStore):
        batches: list[int] = []

        def record_events(self, items):  # type: ignore[no-untyped-def]
            self.batches.append(len(items))
            if len(self.batches) == 1:
                time.sleep(0.05)
            return super().record_events(items)

    store = SlowFirstCommit(str(tmp_path / "g.db"))
    with serve_app(create_app(store, secrets=[SECRET])) as base:
        evs = [event(f"group-{i}") for i in range(24)]
        with ThreadPoolExecutor(12) as pool:
            codes = list(pool.map(lambda ev: send_event(base + "/webhooks/deploys", ev, SECRET).status_code, evs))
    assert codes == [201] * 24
    assert store.count_events() == 24 and sum(store.batches) == 24
    assert max(store.batches) > 1, store.batches
    store.close()


def test_documented_shell_recipe_is_accepted(receiver: ReceiverInfo) -> None:
    """The bash/openssl/curl example in analyzers.events.send (and the README) really signs."""
    import shutil
    import subprocess

    from analyzers.events.send import SHELL_RECIPE

    for tool in ("bash", "openssl", "curl"):
        assert shutil.which(tool), f"{tool} is needed by the documented recipe"
    ev = event()
    out = subprocess.run(["bash", "-c", SHELL_RECIPE], capture_output=True, text=True, timeout=30, check=True,
                         env={"PATH": "/usr/bin:/bin", "SECRET": receiver.secret, "URL": receiver.webhook_url,
                              "BODY": json.dumps(ev)})
    assert json.loads(out.stdout)["status"] == "created", out.stdout + out.stderr


@pytest.mark.postgres
def test_postgres_connection_loss_answers_503_then_recovers(postgres_url: str) -> None:
    import psycopg

    from tests.fixtures.postgres import new_database

    url = new_database(postgres_url)
    store = open_store(url)
    with serve_app(create_app(store, secrets=[SECRET])) as base:
        assert send_event(base + "/webhooks/deploys", event(), SECRET).status_code == 201
        with psycopg.connect(url, autocommit=True) as admin:  # the database drops every other session
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        ev = event()
        r = send_event(base + "/webhooks/deploys", ev, SECRET, msg_id="m-pg")
        assert r.status_code == 503 and r.headers["Retry-After"] == "5", r.text
        assert "retry later" in r.json()["error"] and "127.0.0.1" not in r.json()["error"]
        again = send_event(base + "/webhooks/deploys", ev, SECRET, msg_id="m-pg")  # the sender's retry
        assert again.status_code == 201
        assert requests.get(base + "/healthz", timeout=10).status_code == 200
    assert store.count_events() == 2
    store.close()


def test_rotation_via_environment_list_and_secrets_never_logged(tmp_path) -> None:
    """DEPLOY_WEBHOOK_SECRET="old, new": both sign valid events during a rotation; the log
    (at debug level) never shows a secret, even after refused and failed requests."""
    from tests.fixtures.receiver import start_receiver

    old = "whsec_" + "b2xkLXNlY3JldC1vbGQtc2VjcmV0LW9sZC1zZWNyZXQ="
    new = "whsec_" + "bmV3LXNlY3JldC1uZXctc2VjcmV0LW5ldy1zZWNyZXQ="
    log_path = tmp_path / "receiver.log"
    with start_receiver(f"sqlite:///{tmp_path / 'rot.db'}", secret=f"{old}, {new}", log_path=str(log_path),
                        extra_args=["--log-level", "debug"]) as rx:
        assert send_event(rx.webhook_url, event(), old).status_code == 201
        assert send_event(rx.webhook_url, event(), new).status_code == 201
        assert send_event(rx.webhook_url, event(), SECRET).status_code == 401
        post_raw(rx.webhook_url, b"{broken", secret=new)
    text = log_path.read_text(errors="replace")
    assert "Uvicorn running" in text  # the log was written, at debug level
    assert "refused generic event: 401 signature (field 'webhook-signature')" in text
    for secret in (old, new):
        assert secret not in text and secret[6:] not in text


def test_sender_hanging_up_mid_body_stores_nothing_and_logs_no_error(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    """A sender that closes its connection before the whole body arrived is no server error:
    nothing is stored, nothing is logged as an error, and the next post works."""
    import logging
    import socket

    store = open_store(f"sqlite:///{tmp_path / 'hangup.db'}")
    app = create_app(store, secrets=[SECRET])
    body = encode_event(event("hangup"))
    head = "".join(f"{k}: {v}\r\n" for k, v in signed_headers(body, SECRET).items())
    with caplog.at_level(logging.WARNING, logger="analyzers"), serve_app(app) as base:
        port = int(base.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(f"POST /webhooks/deploys HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{head}\r\n"
                      .encode() + body[:10])
            time.sleep(0.2)
        time.sleep(0.3)
        metrics = requests.get(base + "/metrics", timeout=5).text
        assert send_event(base + "/webhooks/deploys", event("after"), SECRET).status_code == 201
    assert 'path="/webhooks/deploys",status="499"' in metrics
    assert store.count_events() == 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    store.close()
