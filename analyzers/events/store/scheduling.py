"""The verification scheduler's tables and their public API, part of the deploy store.

Created by the store's migrations (schema version 2 on both back ends), beside the deploys,
so the scheduler's state survives restarts and is shared by several workers:

* ``checks (deploy_id, kind, due_us, state, attempts, worker, lease_us, done_us, error)``:
  one row per (deploy, kind) with kind ``first`` / ``finished`` / ``final``; ``state`` is
  ``pending`` / ``running`` / ``done``.
* ``leases (deploy_id, worker, until_us)``: at most one worker holds a deploy at a time. The
  lease is taken with one atomic ``INSERT ... ON CONFLICT DO UPDATE ... WHERE until_us < now``
  (SQLite >= 3.35 and PostgreSQL alike), so two workers never verify the same deploy at once;
  a crashed worker's lease expires and its check is picked up again.
* ``deliveries (deploy_id, at_us, target, data)``: what was sent where, for the deploy page.
* ``scheduler_state (name, value)``: named high-water marks (e.g. the last deploy change seen).

:class:`SchedulerTables` is mixed into :class:`~analyzers.events.store.base.SQLStore`, and
this is the one API for the scheduler's state: callers (:class:`analyzers.server.worker.Worker`,
the dashboard's deploy page, tests) call these methods on the store directly, never the store's
transactions. Every store :func:`~analyzers.events.store.open_store` returns is a SQLStore;
the worker checks that once, on construction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from analyzers.events.store.codec import from_us, to_us

#: DDL of the scheduler tables (schema version 2); valid on SQLite and PostgreSQL alike, and
#: idempotent (databases where an older program created them on first use migrate cleanly).
SCHEDULER_DDL: tuple[str, ...] = (
    "CREATE TABLE IF NOT EXISTS checks (deploy_id TEXT NOT NULL, kind TEXT NOT NULL, due_us BIGINT NOT NULL, "
    "state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, worker TEXT, lease_us BIGINT NOT NULL DEFAULT 0, "
    "done_us BIGINT, error TEXT, PRIMARY KEY (deploy_id, kind))",
    "CREATE INDEX IF NOT EXISTS checks_due ON checks (state, due_us)",
    "CREATE TABLE IF NOT EXISTS leases (deploy_id TEXT PRIMARY KEY, worker TEXT NOT NULL, until_us BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS deliveries (deploy_id TEXT NOT NULL, at_us BIGINT NOT NULL, target TEXT NOT NULL, "
    "data TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS deliveries_deploy ON deliveries (deploy_id, at_us)",
    "CREATE TABLE IF NOT EXISTS scheduler_state (name TEXT PRIMARY KEY, value BIGINT NOT NULL)",
)


@dataclass(frozen=True)
class Check:
    """One scheduled verification of a deploy."""

    deploy_id: str
    kind: str
    due_at: datetime
    state: str
    attempts: int = 0
    error: str | None = None




class SchedulerTables:
    """Checks, leases, deliveries and marks; each method is one transaction of the store."""

    if TYPE_CHECKING:  # provided by SQLStore
        def _tx(self, write: bool) -> AbstractContextManager[Any]: ...
        def _exec(self, cur: Any, sql: str, params: Sequence[Any] = ()) -> Any: ...

    # -- checks ---------------------------------------------------------------------
    def schedule_check(self, deploy_id: str, kind: str, due_at: datetime, *, reschedule: bool = False,
                       cause_us: int | None = None) -> bool:
        """Add a pending check; an existing (deploy, kind) is kept unless ``reschedule``: then a
        check that already ran before ``cause_us`` (the arrival of the event that asks for it) is
        made pending again at ``due_at``. Returns True if something changed."""
        with self._tx(write=True) as cur:
            if reschedule:
                cause = cause_us if cause_us is not None else to_us(due_at)
                return self._exec(
                    cur,
                    "INSERT INTO checks (deploy_id, kind, due_us, state) VALUES (?, ?, ?, 'pending') "
                    "ON CONFLICT (deploy_id, kind) DO UPDATE SET due_us = excluded.due_us, state = 'pending', "
                    "error = NULL WHERE checks.state = 'done' AND checks.done_us < ? RETURNING deploy_id",
                    (deploy_id, kind, to_us(due_at), cause),
                ).fetchone() is not None
            return self._exec(
                cur,
                "INSERT INTO checks (deploy_id, kind, due_us, state) VALUES (?, ?, ?, 'pending') "
                "ON CONFLICT (deploy_id, kind) DO NOTHING RETURNING deploy_id",
                (deploy_id, kind, to_us(due_at)),
            ).fetchone() is not None

    def claim_check(self, worker: str, now: datetime, lease_s: float = 300.0) -> Check | None:
        """Take the earliest due check whose deploy no other worker holds; None if nothing is due."""
        now_us = to_us(now)
        until_us = now_us + int(lease_s * 1e6)
        with self._tx(write=True) as cur:
            rows = self._exec(
                cur,
                "SELECT deploy_id, kind, due_us, attempts FROM checks WHERE due_us <= ? AND "
                "(state = 'pending' OR (state = 'running' AND lease_us < ?)) ORDER BY due_us LIMIT 20",
                (now_us, now_us),
            ).fetchall()
            for deploy_id, kind, due_us, attempts in rows:
                got = self._exec(
                    cur,
                    "INSERT INTO leases (deploy_id, worker, until_us) VALUES (?, ?, ?) ON CONFLICT (deploy_id) "
                    "DO UPDATE SET worker = excluded.worker, until_us = excluded.until_us "
                    "WHERE leases.until_us < ? RETURNING deploy_id",
                    (deploy_id, worker, until_us, now_us),
                ).fetchone()
                if got is None:
                    continue
                upd = self._exec(
                    cur,
                    "UPDATE checks SET state = 'running', worker = ?, lease_us = ?, attempts = attempts + 1 "
                    "WHERE deploy_id = ? AND kind = ? AND (state = 'pending' OR (state = 'running' AND lease_us < ?)) "
                    "RETURNING deploy_id",
                    (worker, until_us, deploy_id, kind, now_us),
                ).fetchone()
                if upd is None:  # another worker finished it meanwhile
                    self._exec(cur, "DELETE FROM leases WHERE deploy_id = ? AND worker = ?", (deploy_id, worker))
                    continue
                return Check(deploy_id, kind, from_us(due_us), "running", attempts + 1)
        return None

    def complete_check(self, check: Check, worker: str, now: datetime, *, error: str | None = None,
                       retry_at: datetime | None = None) -> None:
        """Mark a claimed check done (or pending again at ``retry_at``) and release the deploy."""
        with self._tx(write=True) as cur:
            if retry_at is not None:
                self._exec(
                    cur,
                    "UPDATE checks SET state = 'pending', due_us = ?, error = ?, worker = NULL "
                    "WHERE deploy_id = ? AND kind = ? AND worker = ?",
                    (to_us(retry_at), error, check.deploy_id, check.kind, worker),
                )
            else:
                self._exec(
                    cur,
                    "UPDATE checks SET state = 'done', done_us = ?, error = ? "
                    "WHERE deploy_id = ? AND kind = ? AND worker = ?",
                    (to_us(now), error, check.deploy_id, check.kind, worker),
                )
            self._exec(cur, "DELETE FROM leases WHERE deploy_id = ? AND worker = ?", (check.deploy_id, worker))

    def list_checks(self, deploy_id: str | None = None) -> list[Check]:
        """Every check (of one deploy, or all), earliest due first."""
        sql = "SELECT deploy_id, kind, due_us, state, attempts, error FROM checks"
        params: tuple[Any, ...] = ()
        if deploy_id is not None:
            sql, params = sql + " WHERE deploy_id = ?", (deploy_id,)
        with self._tx(write=False) as cur:
            rows = self._exec(cur, sql + " ORDER BY due_us", params).fetchall()
        return [Check(r[0], r[1], from_us(r[2]), r[3], r[4], r[5]) for r in rows]

    # -- marks and deploy changes ----------------------------------------------------
    def get_mark(self, name: str) -> int:
        """A named high-water mark (0 if never set)."""
        with self._tx(write=False) as cur:
            row = self._exec(cur, "SELECT value FROM scheduler_state WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def set_mark(self, name: str, value: int) -> None:
        with self._tx(write=True) as cur:
            self._exec(
                cur,
                "INSERT INTO scheduler_state (name, value) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (name, value),
            )

    def updated_deploys(self, since_us: int, limit: int = 1000) -> list[tuple[str, int]]:
        """(deploy_id, updated_us) of deploys changed after ``since_us``, oldest change first."""
        with self._tx(write=False) as cur:
            rows = self._exec(
                cur, "SELECT deploy_id, updated_us FROM deploys WHERE updated_us > ? ORDER BY updated_us LIMIT ?",
                (since_us, limit),
            ).fetchall()
        return [(r[0], int(r[1])) for r in rows]

    def deploys_with_events_since(self, since_us: int) -> list[tuple[str, int]]:
        """(deploy_id, latest received_us) of deploys with an event received after ``since_us``."""
        with self._tx(write=False) as cur:
            rows = self._exec(
                cur, "SELECT deploy_id, MAX(received_us) FROM events WHERE received_us > ? GROUP BY deploy_id",
                (since_us,),
            ).fetchall()
        return [(r[0], int(r[1])) for r in rows]

    # -- deliveries -----------------------------------------------------------------
    def save_delivery(self, deploy_id: str, at: datetime, target: str, data: dict[str, Any]) -> None:
        """Record what was sent where (``data`` is JSON-serialisable)."""
        with self._tx(write=True) as cur:
            self._exec(
                cur, "INSERT INTO deliveries (deploy_id, at_us, target, data) VALUES (?, ?, ?, ?)",
                (deploy_id, to_us(at), target, json.dumps(data, ensure_ascii=True)),
            )

    def deliveries(self, deploy_id: str) -> list[dict[str, Any]]:
        """Deliveries of one deploy, oldest first."""
        with self._tx(write=False) as cur:
            rows = self._exec(
                cur, "SELECT data FROM deliveries WHERE deploy_id = ? ORDER BY at_us", (deploy_id,)
            ).fetchall()
        return [json.loads(r[0]) for r in rows]
