"""Prometheus killed in the middle of a worker pass, then restarted; the store locked, then unlocked.

Before the fix the worker stored "cannot reach Prometheus" as an inconclusive verdict, marked
the check done with no retry, let that verdict replace the deploy's latest and notified it.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from analyzers.config import config_from_dict
from analyzers.demo.promserver import PrometheusServer
from analyzers.events.send import send_event
from analyzers.events.store import open_store
from analyzers.model import DeployVerdict
from analyzers.server.worker import OUTAGE_CAP_S, Worker
from tests.fixtures.receiver import start_receiver
from tests.fixtures.sink import Sink

pytestmark = pytest.mark.integration


def _could_not_check(v: DeployVerdict) -> bool:
    text = " ".join([v.reason, *(m.reason for m in v.metrics)]).lower()
    return "cannot reach" in text or "could not check" in text or "connection refused" in text


def test_prometheus_killed_mid_pass_then_restarted(prom: Any, sink: Sink, tmp_path: Path) -> None:
    tsdb = tmp_path / "tsdb"
    shutil.copytree(prom.tsdb_dir, tsdb, ignore=shutil.ignore_patterns("lock"))
    own = PrometheusServer(tsdb).start()
    try:
        cfg = config_from_dict({
            "prometheus": {"url": own.url},
            "notify": {"routes": [{"name": "audit", "url": sink.url + "/audit", "format": "json",
                                   "verdicts": ["pass", "fail", "inconclusive"]}]},
        })
        store = open_store(f"sqlite:///{tmp_path / 'd.db'}")
        deploys = [sd.to_deploy() for sd in prom.scenario.deploys]
        for i, d in enumerate(deploys):
            store.record_event("generic", f"outage-{i}", {}, d)
        now = [datetime.now(UTC)]
        worker = Worker(store, cfg, clock=lambda: now[0], seed=3)

        # A: Prometheus up: every deploy gets its real verdicts.
        worker.run_once()
        first = {d.deploy_id: store.latest_verdict(d.deploy_id) for d in deploys}
        assert all(v is not None and not _could_not_check(v) for v in first.values()), first
        sent_before = len(sink.bodies("/audit"))

        # B: every deploy is re-checked (a status update); Prometheus dies after the first verdict.
        now[0] += timedelta(minutes=1)
        for d in deploys:
            store.schedule_check(d.deploy_id, "finished", now[0], reschedule=True,
                                 cause_us=int(now[0].timestamp() * 1_000_000))
        killed = threading.Event()

        def kill_after_first(v: DeployVerdict, _s: float) -> None:
            if not killed.is_set():
                os.kill(own.pid or 0, signal.SIGKILL)
                killed.set()

        worker.on_verdict = kill_after_first
        made = worker.run_once()
        assert killed.is_set() and len(made) == 1
        for d in deploys:  # the latest verdict of every deploy is still a real one
            latest = store.latest_verdict(d.deploy_id)
            assert latest is not None and not _could_not_check(latest), latest
        pending = [c for c in store.list_checks() if c.state == "pending"]
        tried = [c for c in pending if c.error is not None]  # the others wait for the backoff, unclaimed
        assert len(pending) == len(deploys) - 1 and len(tried) == 1, pending
        assert tried[0].error.startswith("could not check: cannot reach Prometheus"), tried
        assert len(sink.bodies("/audit")) - sent_before <= 1  # nothing notified for the outage
        assert worker.paused_until is not None and worker.paused_until <= now[0] + timedelta(seconds=OUTAGE_CAP_S)

        # C: Prometheus is back; after the backoff every check ends with a real verdict.
        own.stop()
        own.start()
        for _ in range(10):
            now[0] += timedelta(seconds=OUTAGE_CAP_S + 1)
            worker.run_once()
            if not [c for c in store.list_checks() if c.state != "done"]:
                break
        assert [c for c in store.list_checks() if c.state != "done"] == []
        assert all(c.error is None for c in store.list_checks())
        for d in deploys:
            history = store.verdict_history(d.deploy_id)
            assert history and not any(_could_not_check(v) for v in history), [v.reason for v in history]
        assert not any("cannot reach" in str(b) for b in sink.bodies("/audit"))
        store.close()
    finally:
        own.stop()


def test_store_locked_then_unlocked_loses_nothing_acknowledged(tmp_path: Path) -> None:
    """A writer holds SQLite's write lock longer than the receiver's busy timeout while 8
    senders post: each post is stored (2xx) or refused with 503 + Retry-After (nothing
    stored); senders retry the refused ones after the lock is gone. Every acknowledged event
    is in the store, once."""
    import sqlite3

    path = tmp_path / "locked.db"
    with start_receiver(f"sqlite:///{path}") as rx:
        events = [{"service": "lock-test", "environment": "production", "version": f"v{i}",
                   "started_at": "2026-11-27T10:00:00Z", "event_id": f"lock-{i}"} for i in range(40)]
        locker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        locker.execute("BEGIN EXCLUSIVE")
        release = threading.Timer(6.0, lambda: locker.execute("COMMIT"))
        release.start()
        try:
            with ThreadPoolExecutor(8) as pool:
                first = list(pool.map(lambda ev: send_event(rx.webhook_url, ev, rx.secret, timeout=30), events))
        finally:
            release.join()
            locker.close()
        refused = [ev for ev, r in zip(events, first, strict=True) if r.status_code == 503]
        assert refused, "the lock did not outlast the busy timeout: the test proves nothing"
        assert all(r.status_code in (201, 503) for r in first), [r.status_code for r in first]
        assert all(r.headers.get("Retry-After") for r in first if r.status_code == 503)
        again = [send_event(rx.webhook_url, ev, rx.secret, timeout=30) for ev in refused]
        assert [r.status_code for r in again] == [201] * len(refused)
    store = open_store(f"sqlite:///{path}")
    try:
        assert store.count_events() == len(events)
        stored = {d.version for d in store.list_deploys(service="lock-test", limit=1000)}
        assert stored == {ev["version"] for ev in events}
    finally:
        store.close()


def test_disk_full_answers_503_logs_and_keeps_every_acknowledged_event(tmp_path: Path) -> None:
    """No file of the receiver may grow past 160 KiB (RLIMIT_FSIZE: what a full disk does to
    SQLite's database, -wal and -shm). Posts get 201 until the store is full, then 503 with
    Retry-After and a log line naming the cause; the process stays up, and after a restart
    with room every acknowledged event is there."""
    import requests

    path = tmp_path / "full.db"
    log = tmp_path / "receiver.log"
    acked: list[str] = []
    codes: list[int] = []
    with start_receiver(f"sqlite:///{path}", log_path=str(log), max_file_bytes=160 * 1024) as rx:
        for i in range(400):
            ev = {"service": "disk-full", "environment": "production", "version": f"v{i}",
                  "started_at": "2026-11-27T10:00:00Z", "event_id": f"full-{i}", "description": "x" * 3000}
            r = send_event(rx.webhook_url, ev, rx.secret, timeout=30)
            codes.append(r.status_code)
            if r.status_code == 201:
                acked.append(ev["version"])
            elif r.status_code == 503:
                assert r.headers["Retry-After"] and "retry later" in r.json()["error"]
                if codes.count(503) >= 3:
                    break
        assert 503 in codes and acked, codes
        assert set(codes) <= {201, 503}, codes
        assert requests.get(rx.base_url + "/healthz", timeout=10).status_code in (200, 503)  # alive, answering
    text = log.read_text(errors="replace")
    assert "event not stored" in text and ("full" in text or "disk I/O" in text), text[-2000:]
    store = open_store(f"sqlite:///{path}")
    try:
        stored = {d.version for d in store.list_deploys(service="disk-full", limit=10000)}
        assert set(acked) <= stored
    finally:
        store.close()
