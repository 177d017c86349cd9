"""The verdicts table's ``check_kind`` column: migrated into an existing (schema 2) store on
SQLite and on a real PostgreSQL, backfilled from each stored verdict's top-level key, and what
``latest_verdicts`` finds the latest canary and before/after verdicts by."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from analyzers.events.store import open_store
from analyzers.events.store import postgres as pg_store
from analyzers.events.store import sqlite as sqlite_store
from analyzers.events.store.codec import _dumps, deploy_text, to_us
from analyzers.model import Deploy, DeployVerdict, MetricVerdict
from tests.fixtures.postgres import new_database

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def _deploy(deploy_id: str) -> Deploy:
    return Deploy(deploy_id=deploy_id, service="checkout", environment="production", version="v2", started_at=T0,
                  status="started", received_at=T0, updated_at=T0)


def _verdict(deploy_id: str, overall: str, minute: int, kind: str, result: dict[str, Any] | None = None) -> DeployVerdict:
    role = "canary" if kind == "canary" else "guard"
    m = MetricVerdict(metric="error_ratio", role=role, expect="unchanged", outcome="regressed" if overall == "fail" else "ok",  # type: ignore[arg-type]
                      reason=f"{kind} {overall}", result=result or {})
    return DeployVerdict(deploy_id=deploy_id, overall=overall, reason=f"{kind} {overall}", metrics=(m,),  # type: ignore[arg-type]
                         checked_at=T0 + timedelta(minutes=minute), check_kind=kind)


#: A before/after verdict carrying ``"check_kind":"canary"`` one level down (a gate answer kept
#: in a metric's result): the old LIKE match on the JSON took it for a canary verdict.
NESTED = {"gate": {"check_kind": "canary", "verdict": "pass"}}

ROWS = [
    _verdict("d1", "fail", 1, "canary"),
    _verdict("d1", "pass", 2, "first", NESTED),  # the latest before/after; the canary still fails
    _verdict("d2", "pass", 1, "canary"),
    _verdict("d2", "pass", 2, "finished", NESTED),
    _verdict("d3", "inconclusive", 1, "manual"),  # before/after only
]


def _old_sqlite(tmp_path: Any) -> str:
    """A store as schema 2 left it: no check_kind column, verdicts only in the JSON."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for stmts in sqlite_store._MIGRATIONS[:2]:
        for stmt in stmts:
            conn.execute(stmt)
    conn.execute("PRAGMA user_version = 2")
    for d in ("d1", "d2", "d3"):
        dep = _deploy(d)
        conn.execute("INSERT INTO deploys VALUES (?, ?, ?, ?, ?, ?, ?)", (d, dep.service, dep.environment, to_us(T0),
                                                                        dep.status, to_us(T0), deploy_text(dep)))
    for v in ROWS:
        conn.execute("INSERT INTO verdicts (deploy_id, checked_us, overall, data) VALUES (?, ?, ?, ?)",
                     (v.deploy_id, to_us(v.checked_at), v.overall, _dumps(v.to_dict())))
    conn.close()
    return f"sqlite:///{path}"


def _old_postgres(server_url: str) -> str:
    import psycopg

    url = new_database(server_url)
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for v, stmts in enumerate(pg_store._MIGRATIONS[:2]):
            for stmt in stmts:
                cur.execute(stmt)
            cur.execute("INSERT INTO schema_version (version) VALUES (%s)", (v + 1,))
        for d in ("d1", "d2", "d3"):
            dep = _deploy(d)
            cur.execute("INSERT INTO deploys VALUES (%s, %s, %s, %s, %s, %s, %s)",
                        (d, dep.service, dep.environment, to_us(T0), dep.status, to_us(T0), deploy_text(dep)))
        for vd in ROWS:
            cur.execute("INSERT INTO verdicts (deploy_id, checked_us, overall, data) VALUES (%s, %s, %s, %s)",
                        (vd.deploy_id, to_us(vd.checked_at), vd.overall, _dumps(vd.to_dict())))
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def old_store_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return _old_sqlite(tmp_path)
    return _old_postgres(request.getfixturevalue("postgres_url"))


def _kinds(url: str) -> list[tuple[str, str]]:
    """(deploy_id, check_kind) of every verdict row, in insertion order, read with the driver."""
    sql = "SELECT deploy_id, check_kind FROM verdicts ORDER BY id"
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url[len("sqlite:///"):])
        try:
            return [tuple(r) for r in conn.execute(sql).fetchall()]  # type: ignore[misc]
        finally:
            conn.close()
    import psycopg

    with psycopg.connect(url) as conn:
        return [tuple(r) for r in conn.execute(sql).fetchall()]  # type: ignore[misc]


@pytest.fixture
def opened(old_store_url: str) -> Iterator[Callable[[], Any]]:
    stores: list[Any] = []

    def open_() -> Any:
        stores.append(open_store(old_store_url))
        return stores[-1]

    yield open_
    for s in stores:
        s.close()


def test_migration_backfills_check_kind_from_the_top_level_key(old_store_url: str, opened: Callable[[], Any]) -> None:
    opened()
    assert _kinds(old_store_url) == [("d1", "canary"), ("d1", "first"), ("d2", "canary"), ("d2", "finished"),
                                     ("d3", "manual")]


def test_latest_verdicts_after_migration_combine_by_the_column(opened: Callable[[], Any]) -> None:
    store = opened()
    latest = store.latest_verdicts(["d1", "d2", "d3"])
    # d1: the failing canary still fails though the nested key sits in the later pass
    assert {k: v.overall for k, v in latest.items()} == {"d1": "fail", "d2": "pass", "d3": "inconclusive"}
    assert [m.role for m in latest["d1"].metrics] == ["guard", "canary"]  # both checks' evidence: two rows found
    assert [m.role for m in latest["d2"].metrics] == ["guard", "canary"]
    assert latest["d3"].reason == "manual inconclusive"


def test_new_verdicts_write_the_column_and_reopening_keeps_it(old_store_url: str, opened: Callable[[], Any]) -> None:
    store = opened()
    store.save_verdict(_verdict("d3", "fail", 5, "canary", NESTED))
    store.save_verdict(_verdict("d3", "pass", 6, "final", NESTED))
    store.close()
    again = opened()  # the migration is applied once: reopening changes nothing
    assert _kinds(old_store_url)[-2:] == [("d3", "canary"), ("d3", "final")]
    assert again.latest_verdict("d3").overall == "fail"  # the canary's fail, found by its column
    assert [v.check_kind for v in again.verdict_history("d3")] == ["manual", "canary", "final"]


def test_sqlite_store_set_back_to_schema_2_reopens_without_adding_the_column_twice(tmp_path: Any) -> None:
    """SQLite has no ADD COLUMN IF NOT EXISTS: the step is skipped by its migration id when its
    column exists (a store whose version was set back, or an upgrade interrupted after the
    ALTER), and the rest of the migration still runs."""
    url = f"sqlite:///{tmp_path / 'back.db'}"
    store = open_store(url)
    store.save_verdict(_verdict("d1", "fail", 1, "canary"))
    store.close()
    conn = sqlite3.connect(tmp_path / "back.db", isolation_level=None)
    conn.execute("PRAGMA user_version = 2")
    conn.execute("DROP INDEX verdicts_kind")  # a later step of migration 3, redone on reopening
    conn.close()
    again = open_store(url)
    try:
        assert again.latest_verdict("d1").overall == "fail"  # type: ignore[union-attr]
    finally:
        again.close()
    conn = sqlite3.connect(tmp_path / "back.db")
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == sqlite_store.SCHEMA_VERSION
        assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'verdicts_kind'").fetchone() is not None
    finally:
        conn.close()


def test_sqlite_skippable_steps_are_named_by_migration_id_and_point_at_their_alter() -> None:
    """Each (version, index) key names the ALTER that adds its (table, column): an edit that
    moves the statement fails here instead of re-running (or skipping) the wrong step."""
    for (version, index), (table, column) in sqlite_store._DONE_IF_COLUMN.items():
        stmt = sqlite_store._MIGRATIONS[version - 1][index]
        assert stmt.startswith(f"ALTER TABLE {table} ADD COLUMN {column} "), (version, index, stmt)
