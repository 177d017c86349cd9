"""Several receiver processes on one store, and receivers killed with SIGKILL under load.

The promise checked: every event that got a 2xx is in the store exactly once, and the
SQLite file passes ``PRAGMA integrity_check``.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from typing import Any

import pytest
import requests

from analyzers.events.send import send_event
from analyzers.events.store import open_store
from tests.fixtures.postgres import new_database
from tests.fixtures.receiver import ReceiverProcess, start_receiver


def make_event(i: int, tag: str) -> dict[str, Any]:
    return {"event_id": f"{tag}-{i}", "service": f"svc-{i % 5}", "environment": "production",
            "version": f"v{i}", "started_at": 1795773600 + i}


def check_store(store_url: str, acked: set[str], tag: str) -> None:
    store = open_store(store_url)
    try:
        stored = {eid for src, eid in store.event_ids("generic") if eid.startswith(tag)}  # type: ignore[attr-defined]
        assert acked <= stored, f"acknowledged but lost: {sorted(acked - stored)[:5]}"
        # the store is fresh: one deploy per stored event, none twice
        versions = [d.version for d in store.list_deploys(limit=10000)]
        assert len(versions) == len(set(versions)) == len(stored) == store.count_events()
        if store_url.startswith("sqlite"):
            assert store.integrity_check() == "ok"  # type: ignore[attr-defined]
    finally:
        store.close()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_two_receiver_processes_on_one_store(tmp_path, request: pytest.FixtureRequest, backend: str) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'shared.db'}"
    else:
        url = new_database(request.getfixturevalue("postgres_url"))
    tag = "two"
    acked: set[str] = set()
    lock = threading.Lock()
    with start_receiver(url) as a, start_receiver(url) as b:
        targets = [a, b]

        def sender(worker: int) -> None:
            rng = random.Random(worker)  # seeded
            session = requests.Session()
            for i in range(worker, 240, 4):
                ev = make_event(i, tag)
                first = targets[rng.randrange(2)]
                r = send_event(first.webhook_url, ev, first.secret, session=session)
                assert r.status_code == 201, r.text
                if rng.random() < 0.3:  # the same delivery again, to the other process
                    other = targets[1 - targets.index(first)]
                    r2 = send_event(other.webhook_url, ev, other.secret, session=session)
                    assert r2.status_code == 200 and r2.json()["deploy_id"] == r.json()["deploy_id"]
                with lock:
                    acked.add(str(ev["event_id"]))

        threads = [threading.Thread(target=sender, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    assert len(acked) == 240
    check_store(url, acked, tag)


def _crash_run(store_url: str, tmp_path, kills: int = 3) -> None:
    tag = "crash-" + uuid.uuid4().hex[:6]
    rp = ReceiverProcess(store_url, log_path=str(tmp_path / "receiver.log"))
    rp.start()
    acked: set[str] = set()
    lock = threading.Lock()
    stop = threading.Event()
    counter = iter(range(10**9))

    def sender() -> None:
        session = requests.Session()
        while not stop.is_set():
            with lock:
                i = next(counter)
            ev = make_event(i, tag)
            msg_id = f"msg_{tag}_{i}"
            while not stop.is_set():  # retry the same delivery until acknowledged, like real senders
                try:
                    r = send_event(rp.base_url + "/webhooks/deploys", ev, rp.secret or "", msg_id=msg_id,
                                   timeout=5, session=session)
                except requests.RequestException:
                    session = requests.Session()
                    time.sleep(0.02)
                    continue
                if r.status_code in (200, 201):
                    with lock:
                        acked.add(str(ev["event_id"]))
                    break
                assert r.status_code == 503, r.text
                time.sleep(0.05)

    threads = [threading.Thread(target=sender, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for _ in range(kills):
            time.sleep(1.0)
            rp.kill()
            time.sleep(0.2)
            rp.start()
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        rp.stop()
    assert len(acked) > 20, "the load generator got almost nothing through"
    check_store(store_url, acked, tag)
    print(f"{store_url.split(':')[0]}: {kills} SIGKILLs, {len(acked)} acknowledged events, all stored once")


def test_sigkill_under_load_loses_nothing_acknowledged_sqlite(tmp_path) -> None:
    _crash_run(f"sqlite:///{tmp_path / 'crash.db'}", tmp_path)


@pytest.mark.postgres
def test_sigkill_under_load_loses_nothing_acknowledged_postgres(tmp_path, postgres_url: str) -> None:
    _crash_run(new_database(postgres_url), tmp_path)


def test_load_generator_reports_rates_and_only_commits(tmp_path) -> None:
    """The benchmark tool itself (python -m analyzers.demo.loadgen), in a one-second run."""
    from analyzers.demo.loadgen import run_benchmark

    url = f"sqlite:///{tmp_path / 'bench.db'}"
    result = run_benchmark(url, workers=1, seconds=1.0, connections=2, warmup_s=0.2, raw_n=20)
    assert set(result["statuses"]) == {"201"}
    assert result["accepted_per_s"] > 0 and result["p99_ms"] >= result["p50_ms"] > 0
    assert result["raw_insert_per_s"] > 0 and result["record_event_per_s"] > 0
    # every request was signed before the timed phase, and both sides' CPU is reported
    assert result["signed_during_run"] == 0
    assert result["client_cpu_us_per_req"] > 0 and result["receiver_cpu_us_per_req"] > 0
    store = open_store(url)
    try:
        assert store.integrity_check() == "ok"  # type: ignore[attr-defined]
        assert store.count_events() >= result["statuses"]["201"]
    finally:
        store.close()


def test_uvicorn_worker_processes_get_the_same_settings(tmp_path) -> None:
    """``--workers 2``: each uvicorn worker is its own process with the settings serve() validated
    (here: the header deadline and the read token), and both accept signed events."""
    import socket

    token = "read-" + uuid.uuid4().hex
    with start_receiver(f"sqlite:///{tmp_path / 'w.db'}",
                        extra_args=["--workers", "2", "--header-timeout", "1", "--read-token", token,
                                    "--protect-metrics"]) as rx:
        ids = set()
        for i in range(20):  # new connections: the kernel spreads them over both workers
            r = send_event(rx.webhook_url, {"service": "two-workers", "environment": "production", "version": f"v{i}",
                                            "started_at": "2026-11-27T10:00:00Z"}, rx.secret)
            assert r.status_code == 201, r.text
            ids.add(r.json()["deploy_id"])
        assert requests.get(rx.base_url + "/v1/deploys", timeout=10).status_code == 401
        assert requests.get(rx.base_url + "/metrics", timeout=10).status_code == 401
        auth = {"Authorization": f"Bearer {token}"}
        assert requests.get(rx.base_url + "/metrics", headers=auth, timeout=10).status_code == 200
        got = requests.get(rx.base_url + "/v1/deploys?service=two-workers", headers=auth, timeout=10).json()
        assert {d["deploy_id"] for d in got["deploys"]} == ids
        port = int(rx.base_url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\n")  # headers never finished
            s.settimeout(4)
            assert s.recv(100) == b""  # closed by the header deadline
