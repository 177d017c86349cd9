"""Scheduler state in the store (SQLite and a real PostgreSQL): survives restarts, one worker per deploy."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from analyzers.events.store import open_store

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'jobs.db'}"
    else:
        from tests.fixtures.postgres import new_database

        yield new_database(request.getfixturevalue("postgres_url"))


def test_pending_checks_survive_a_restart(store_url: str) -> None:
    s1 = open_store(store_url)
    assert s1.schedule_check("d1", "first", T0)
    assert not s1.schedule_check("d1", "first", T0 + timedelta(hours=1))  # idempotent
    s1.close()
    s2 = open_store(store_url)
    (check,) = s2.list_checks("d1")
    assert (check.kind, check.state, check.due_at) == ("first", "pending", T0)
    s2.close()


def test_two_workers_never_hold_the_same_deploy(store_url: str) -> None:
    a, b = open_store(store_url), open_store(store_url)
    a.schedule_check("d1", "first", T0)
    a.schedule_check("d1", "final", T0)
    a.schedule_check("d2", "first", T0)
    now = T0 + timedelta(minutes=1)
    c1 = a.claim_check("w1", now)
    c2 = b.claim_check("w2", now)
    assert c1 is not None and c2 is not None
    assert c1.deploy_id != c2.deploy_id  # d1 is leased to w1: w2 gets d2
    assert b.claim_check("w2", now) is None  # d1's other check waits for w1's lease
    a.complete_check(c1, "w1", now)
    c3 = b.claim_check("w2", now)
    assert c3 is not None and c3.deploy_id == "d1" and c3.kind != c1.kind
    a.close()
    b.close()


def test_crashed_workers_lease_expires(store_url: str) -> None:
    s = open_store(store_url)
    s.schedule_check("d1", "first", T0)
    assert s.claim_check("dead-worker", T0, lease_s=60) is not None
    assert s.claim_check("w2", T0 + timedelta(seconds=30)) is None
    again = s.claim_check("w2", T0 + timedelta(seconds=61))
    assert again is not None and again.attempts == 2
    s.close()


def test_retry_makes_check_pending_again(store_url: str) -> None:
    s = open_store(store_url)
    s.schedule_check("d1", "first", T0)
    c = s.claim_check("w", T0)
    assert c is not None
    s.complete_check(c, "w", T0, error="not enough data", retry_at=T0 + timedelta(minutes=5))
    assert s.claim_check("w", T0 + timedelta(minutes=4)) is None
    assert s.claim_check("w", T0 + timedelta(minutes=5)) is not None
    s.close()


def test_deliveries_are_recorded_per_deploy(store_url: str) -> None:
    s = open_store(store_url)
    s.save_delivery("d1", T0, "oncall", {"target": "oncall", "ok": True})
    s.save_delivery("d1", T0 + timedelta(seconds=1), "grafana", {"target": "grafana", "ok": False})
    assert [d["target"] for d in s.deliveries("d1")] == ["oncall", "grafana"]
    assert s.deliveries("other") == []
    s.close()


def test_a_new_status_update_reopens_a_finished_check_once(store_url: str) -> None:
    from analyzers.events.store.codec import to_us

    s = open_store(store_url)
    assert s.schedule_check("d1", "finished", T0, reschedule=True, cause_us=to_us(T0))
    c = s.claim_check("w", T0)
    assert c is not None
    s.complete_check(c, "w", T0 + timedelta(minutes=1))
    # the same (already handled) event seen again by a re-scan: nothing to do
    assert not s.schedule_check("d1", "finished", T0, reschedule=True, cause_us=to_us(T0))
    # a later event (e.g. rolled back) asks for a new check
    later = T0 + timedelta(minutes=5)
    assert s.schedule_check("d1", "finished", later, reschedule=True, cause_us=to_us(later))
    (check,) = s.list_checks("d1")
    assert check.state == "pending" and check.due_at == later
    s.close()


def test_worker_schedules_first_final_and_a_recheck_when_the_deploy_is_rolled_back(store_url: str) -> None:
    from dataclasses import replace

    from analyzers.config import default_config
    from analyzers.model import Deploy
    from analyzers.server.worker import Worker, final_due, first_due

    s = open_store(store_url)
    cfg = default_config()
    started = Deploy(deploy_id="d9", service="checkout", environment="production", version="v9",
                     started_at=T0, status="started")
    s.record_event("generic", "e1", {"n": 1}, started)
    worker = Worker(s, cfg, client=object(), clock=lambda: T0 + timedelta(minutes=1))
    worker.discover()
    kinds = {c.kind: c for c in worker.store.list_checks("d9")}
    assert set(kinds) == {"first", "final"}
    assert kinds["first"].due_at == first_due(started, cfg) and kinds["final"].due_at == final_due(started, cfg)
    assert T0 < kinds["first"].due_at < kinds["final"].due_at
    worker.discover()  # a re-scan schedules nothing new
    assert len(worker.store.list_checks("d9")) == 2
    rolled = replace(started, status="rolled_back", finished_at=T0 + timedelta(minutes=20))
    s.record_event("generic", "e2", {"n": 2}, rolled)
    worker.discover()
    assert {c.kind for c in worker.store.list_checks("d9")} == {"first", "final", "finished"}
    s.close()


def _set_schema_version(store_url: str, version: int, *, drop_scheduler_tables: bool) -> None:
    """Make the database look as an older program (schema 1) left it."""
    tables = ("checks", "leases", "deliveries", "scheduler_state")
    if store_url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(store_url[len("sqlite:///"):], isolation_level=None)
        if drop_scheduler_tables:
            for t in tables:
                conn.execute(f"DROP TABLE {t}")
        conn.execute(f"PRAGMA user_version = {version}")
        conn.close()
    else:
        import psycopg

        with psycopg.connect(store_url, autocommit=True) as pg:
            if drop_scheduler_tables:
                for t in tables:
                    pg.execute(f"DROP TABLE {t}")
            pg.execute("DELETE FROM schema_version WHERE version > %s", (version,))


def test_scheduler_tables_come_with_the_store_migrations(store_url: str) -> None:
    """The checks/leases/deliveries tables are part of the store's schema (version 2): a
    schema-1 database without them gets them on open, and one where an older program had
    created them on first use keeps its rows."""
    s = open_store(store_url)
    s.schedule_check("d1", "first", T0)
    s.close()

    _set_schema_version(store_url, 1, drop_scheduler_tables=False)  # tables an older program made on first use
    s = open_store(store_url)
    assert [c.deploy_id for c in s.list_checks()] == ["d1"]
    s.close()

    _set_schema_version(store_url, 1, drop_scheduler_tables=True)  # a schema-1 store never scheduled
    s = open_store(store_url)
    assert s.list_checks() == [] and s.deliveries("d1") == [] and s.get_mark("m") == 0
    assert s.schedule_check("d1", "first", T0) and s.claim_check("w", T0) is not None
    s.close()


def test_the_scheduler_needs_a_sql_store() -> None:
    from analyzers.config import default_config
    from analyzers.server.worker import Worker

    with pytest.raises(TypeError, match="needs a SQL store from analyzers.events.store.open_store"):
        Worker(object(), default_config(), client=object())
