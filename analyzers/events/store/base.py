"""Shared store logic: the SQL both back ends speak and the public interface (the merge rule: :mod:`.merge`).

Back ends differ only in connecting, transaction start, migrations and error mapping
(see :mod:`.sqlite`, :mod:`.postgres`). SQL here uses ``?`` placeholders; the PostgreSQL
back end rewrites them to ``%s``. Timestamps are stored as integer microseconds since the
Unix epoch (UTC) so range filters and ordering are exact on both.
"""

from __future__ import annotations

import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, NoReturn, Protocol

from analyzers.errors import StoreError, StoreUnavailable
from analyzers.events.store.codec import _dumps, deploy_text, payload_text, to_us
from analyzers.events.store.codec import (
    deploy_dict as deploy_dict,  # re-exported: callers import it from here
)
from analyzers.events.store.merge import (
    EventItem,
    insert_events,
    merge_batch,
    merge_deploys,
    upsert_deploys_sql,
)
from analyzers.events.store.scheduling import Check, SchedulerTables
from analyzers.model import Deploy, DeployVerdict

MAX_LIMIT = 10000


class Store(Protocol):
    """What callers (receiver, verification, dashboard, CLI) may use."""

    url: str

    def record_event(self, source: str, event_id: str, payload: dict[str, Any], deploy: Deploy) -> tuple[Deploy, bool]: ...
    def record_events(self, items: Sequence[EventItem]) -> list[tuple[Deploy, bool] | StoreError]: ...
    def list_deploys(self, service: str | None = None, environment: str | None = None,
                     since: datetime | None = None, until: datetime | None = None,
                     limit: int = 1000) -> list[Deploy]: ...
    def get_deploy(self, deploy_id: str) -> Deploy | None: ...
    def services(self) -> list[str]: ...
    def save_verdict(self, verdict: DeployVerdict) -> None: ...
    def latest_verdict(self, deploy_id: str) -> DeployVerdict | None: ...
    def latest_verdicts(self, deploy_ids: Sequence[str]) -> dict[str, DeployVerdict]: ...
    def verdict_history(self, deploy_id: str) -> list[DeployVerdict]: ...
    def count_events(self) -> int: ...
    def event_payload(self, source: str, event_id: str) -> dict[str, Any] | None: ...
    def ping(self) -> None: ...
    def close(self) -> None: ...
    # The verification scheduler's state (analyzers.events.store.scheduling documents it).
    def schedule_check(self, deploy_id: str, kind: str, due_at: datetime, *, reschedule: bool = False,
                       cause_us: int | None = None) -> bool: ...
    def claim_check(self, worker: str, now: datetime, lease_s: float = 300.0) -> Check | None: ...
    def complete_check(self, check: Check, worker: str, now: datetime, *, error: str | None = None,
                       retry_at: datetime | None = None) -> None: ...
    def list_checks(self, deploy_id: str | None = None) -> list[Check]: ...
    def get_mark(self, name: str) -> int: ...
    def set_mark(self, name: str, value: int) -> None: ...
    def updated_deploys(self, since_us: int, limit: int = 1000) -> list[tuple[str, int]]: ...
    def deploys_with_events_since(self, since_us: int) -> list[tuple[str, int]]: ...
    def save_delivery(self, deploy_id: str, at: datetime, target: str, data: dict[str, Any]) -> None: ...
    def deliveries(self, deploy_id: str) -> list[dict[str, Any]]: ...


class SQLStore(SchedulerTables, ABC):
    """One connection guarded by a lock; every public method is one transaction.

    Besides deploys, events and verdicts it holds the verification scheduler's tables
    (:class:`~.scheduling.SchedulerTables`: checks, leases, deliveries, marks).
    """

    placeholder = "?"
    #: The receiver's writer thread may start the next group commit as soon as one ends
    #: (:class:`analyzers.server.commit.GroupCommitter`); SQLite says no (see there).
    chain_commits = True
    #: :meth:`record_events` takes the :meth:`_record_batch` path from this many events on.
    batch_from = 2

    def __init__(self, url: str) -> None:
        self.url = url
        self._lock = threading.RLock()
        self._conn: Any = None

    # -- back-end hooks -------------------------------------------------------------
    @abstractmethod
    def _connect(self) -> Any: ...

    @abstractmethod
    def _begin(self, conn: Any, write: bool) -> None: ...

    @abstractmethod
    def _translate(self, exc: BaseException) -> StoreError | None:
        """Map a driver error to StoreError/StoreUnavailable, or None if it is not a DB error."""

    def _lock_deploys(self, cur: Any, deploy_ids: Sequence[str]) -> None:  # noqa: B027 - optional hook
        """Serialise writers of these deploys, locking them in the order given (SQLite: BEGIN
        IMMEDIATE already does). Callers pass the ids sorted: one lock order, no deadlocks."""

    def describe(self) -> str:
        """The URL without its password (safe to log and show)."""
        import re

        return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", self.url)

    # -- plumbing -------------------------------------------------------------------
    def _sql(self, sql: str) -> str:
        return sql if self.placeholder == "?" else sql.replace("?", self.placeholder)

    @contextmanager
    def _tx(self, write: bool, *, begin: bool = True) -> Iterator[Any]:
        """One transaction on the store's connection; ``begin=False``: the body sends its own
        BEGIN (and may send its own COMMIT: committing an ended transaction does nothing)."""
        with self._lock:
            try:
                if self._conn is None:
                    self._conn = self._connect()
                conn = self._conn
                if begin:
                    self._begin(conn, write)
                cur = conn.cursor()
            except Exception as exc:
                self._drop()
                self._raise_translated(exc)
            try:
                yield cur
                conn.commit()
            except BaseException as exc:
                try:
                    conn.rollback()
                except Exception:
                    self._drop()
                err = self._translate(exc)
                if err is None:
                    raise
                if getattr(err, "broken", False):
                    self._drop()
                raise err from exc

    def _raise_translated(self, exc: BaseException) -> NoReturn:
        """Raise ``exc`` as the store's StoreError/StoreUnavailable, or unchanged if it is no DB error."""
        err = self._translate(exc)
        if err is None:
            raise exc
        raise err from exc

    def _start(self) -> None:
        """Connect and migrate now, so a bad URL or a down server fails at construction."""
        with self._lock:
            try:
                self._conn = self._connect()
                self._migrate(self._conn)
            except Exception as exc:
                self._drop()
                self._raise_translated(exc)

    def _migrate(self, conn: Any) -> None:  # noqa: B027 - back ends with a schema override it
        """Create or upgrade the schema on a fresh connection."""

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def _exec(self, cur: Any, sql: str, params: Sequence[Any] = ()) -> Any:
        cur.execute(self._sql(sql), tuple(params))
        return cur

    # -- public API -----------------------------------------------------------------
    def record_event(self, source: str, event_id: str, payload: dict[str, Any], deploy: Deploy) -> tuple[Deploy, bool]:
        """Store one event and merge it into its deploy, atomically; (deploy, False) if seen."""
        result = self.record_events([(source, event_id, payload, deploy)])[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def record_events(self, items: Sequence[EventItem]) -> list[tuple[Deploy, bool] | StoreError]:
        """Group commit: record several events in one transaction (one fsync), each in a savepoint.

        Returns one result per item, in order: ``(deploy, new)`` or the :class:`StoreError`
        that refused that item alone (its savepoint is rolled back, the others commit).
        Raises :class:`StoreUnavailable` when the whole batch could not be committed: then
        nothing of it is stored. The same event twice in one batch is a duplicate the second
        time, exactly as in two transactions.
        """
        if len(items) >= self.batch_from:
            try:
                return self._record_batch(items)
            except StoreUnavailable:
                raise
            except (StoreError, TypeError, ValueError):  # some item is refused: one savepoint each below
                pass
        out: list[tuple[Deploy, bool] | StoreError] = []
        with self._tx(write=True) as cur:
            self._lock_deploys(cur, sorted({item[3].deploy_id for item in items}))  # one lock order: no deadlocks
            for source, event_id, payload, deploy in items:
                if len(items) == 1:  # no savepoint needed: the transaction is the item
                    try:
                        out.append(self._record(cur, source, event_id, payload, deploy))
                    except (TypeError, ValueError) as exc:  # incl. UnicodeEncodeError: not a DB fault
                        raise StoreError(f"event {source}/{event_id[:80]} cannot be stored: {exc}") from exc
                    continue
                self._exec(cur, "SAVEPOINT event")
                try:
                    out.append(self._record(cur, source, event_id, payload, deploy))
                except Exception as exc:
                    err = self._translate(exc)
                    if err is None and isinstance(exc, TypeError | ValueError):  # incl. UnicodeEncodeError
                        err = StoreError(f"event {source}/{event_id[:80]} cannot be stored: {exc}")
                    if err is None or isinstance(err, StoreUnavailable):
                        raise
                    self._exec(cur, "ROLLBACK TO SAVEPOINT event")
                    out.append(err)
                self._exec(cur, "RELEASE SAVEPOINT event")
        return out

    def record_events_joining(self, items: Sequence[EventItem],
                              more: Callable[[], Sequence[EventItem]]) -> list[tuple[Deploy, bool] | StoreError]:
        """:meth:`record_events` of ``items`` and of the events ``more()`` returns, called once when the
        write transaction can start without waiting (a group commit's late arrivals join it): one
        result per event, ``items`` first. Here (no write lock to wait for up front) ``more`` is
        called at once; SQLite calls it after taking its write lock (:meth:`.SQLiteStore.record_events_joining`)."""
        return self.record_events([*items, *more()])

    def _record_batch(self, items: Sequence[EventItem]) -> list[tuple[Deploy, bool] | StoreError]:
        """The same outcome as one :meth:`_record` per item in order, in a handful of statements.

        One multi-row INSERT of the events, one SELECT of the deploys they touch, the merges
        in Python, one multi-row upsert of the deploys: a few statements per batch instead of
        five per event (each statement is a driver round trip, and in a thread a GIL hand-off).
        Any error aborts the whole transaction; the caller then redoes the batch one savepoint
        per item, which isolates the refused item.
        """
        payloads = [payload_text(payload) for _, _, payload, _ in items]  # TypeError/ValueError: caller falls back
        with self._tx(write=True) as cur:
            self._lock_deploys(cur, sorted({item[3].deploy_id for item in items}))  # one lock order: no deadlocks
            sql, rows, stamps = insert_events(items, payloads)
            inserted = {(r[0], r[1]) for r in self._exec(cur, sql, rows).fetchall()}
            first_seen: dict[tuple[str, str], str] = {}  # event -> deploy_id it was first stored under
            for source, event_id, _, deploy in items:
                key = (source, event_id)
                if key in inserted:
                    first_seen.setdefault(key, deploy.deploy_id)
                elif key not in first_seen:  # stored by an earlier transaction
                    row = self._exec(cur, "SELECT deploy_id FROM events WHERE source = ? AND event_id = ?",
                                     key).fetchone()
                    if row is not None:
                        first_seen[key] = row[0]
            wanted = sorted({item[3].deploy_id for item in items} | set(first_seen.values()))
            state: dict[str, Deploy] = {
                r[0]: Deploy.from_dict(json.loads(r[1])) for r in self._exec(
                    cur, f"SELECT deploy_id, data FROM deploys WHERE deploy_id IN ({', '.join('?' * len(wanted))})",
                    wanted,
                ).fetchall()
            }
            out, upserts = merge_batch(items, stamps, inserted, first_seen, state)
            if upserts:
                self._exec(cur, upsert_deploys_sql(len(upserts)), [v for row in upserts for v in row])
        return out

    def _record(self, cur: Any, source: str, event_id: str, payload: dict[str, Any], deploy: Deploy) -> tuple[Deploy, bool]:
        # received_us is taken inside the write transaction: on SQLite (writers serialised) it
        # then grows in commit order, so a scanner keeping a high-water mark misses nothing.
        # On PostgreSQL concurrent transactions may commit out of timestamp order: scan with overlap.
        now = datetime.now(UTC)
        row = self._exec(
            cur,
            "INSERT INTO events (source, event_id, deploy_id, received_us, payload) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (source, event_id) DO NOTHING RETURNING deploy_id",
            (source, event_id, deploy.deploy_id, to_us(now), payload_text(payload)),
        ).fetchone()
        if row is None:
            first = self._exec(
                cur, "SELECT deploy_id FROM events WHERE source = ? AND event_id = ?", (source, event_id)
            ).fetchone()
            stored = self._get(cur, first[0]) if first else None
            return (stored or deploy), False
        old = self._get(cur, deploy.deploy_id)
        merged = deploy if old is None else merge_deploys(old, deploy)
        self._exec(
            cur,
            "INSERT INTO deploys (deploy_id, service, environment, started_us, status, updated_us, data) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (deploy_id) DO UPDATE SET "
            "started_us = excluded.started_us, status = excluded.status, "
            "updated_us = excluded.updated_us, data = excluded.data",
            (merged.deploy_id, merged.service, merged.environment, to_us(merged.started_at),
             merged.status, to_us(merged.updated_at or now), deploy_text(merged)),
        )
        return merged, True

    def _get(self, cur: Any, deploy_id: str) -> Deploy | None:
        row = self._exec(cur, "SELECT data FROM deploys WHERE deploy_id = ?", (deploy_id,)).fetchone()
        return Deploy.from_dict(json.loads(row[0])) if row else None

    def services(self) -> list[str]:
        """Every service that has a stored deploy, sorted (one indexed query, no deploy bodies)."""
        with self._tx(write=False) as cur:
            rows = self._exec(cur, "SELECT DISTINCT service FROM deploys ORDER BY service").fetchall()
        return [str(r[0]) for r in rows]

    def get_deploy(self, deploy_id: str) -> Deploy | None:
        with self._tx(write=False) as cur:
            return self._get(cur, deploy_id)

    def list_deploys(self, service: str | None = None, environment: str | None = None,
                     since: datetime | None = None, until: datetime | None = None,
                     limit: int = 1000) -> list[Deploy]:
        """Deploys started in ``[since, until)``, newest first, at most ``limit`` (<= 10,000)."""
        where: list[str] = []
        params: list[Any] = []
        if service is not None:
            where.append("service = ?")
            params.append(service)
        if environment is not None:
            where.append("environment = ?")
            params.append(environment)
        if since is not None:
            where.append("started_us >= ?")
            params.append(to_us(since))
        if until is not None:
            where.append("started_us < ?")
            params.append(to_us(until))
        sql = "SELECT data FROM deploys"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY started_us DESC, deploy_id LIMIT ?"
        params.append(max(0, min(int(limit), MAX_LIMIT)))
        with self._tx(write=False) as cur:
            rows = self._exec(cur, sql, params).fetchall()
        return [Deploy.from_dict(json.loads(r[0])) for r in rows]

    def save_verdict(self, verdict: DeployVerdict) -> None:
        """Append a verdict (history is kept; the newest by insertion is the latest)."""
        with self._tx(write=True) as cur:
            self._exec(
                cur,
                "INSERT INTO verdicts (deploy_id, checked_us, overall, check_kind, data) VALUES (?, ?, ?, ?, ?)",
                (verdict.deploy_id, to_us(verdict.checked_at), verdict.overall, verdict.check_kind,
                 _dumps(verdict.to_dict())),
            )

    def latest_verdict(self, deploy_id: str) -> DeployVerdict | None:
        return self.latest_verdicts([deploy_id]).get(deploy_id)

    def latest_verdicts(self, deploy_ids: Sequence[str]) -> dict[str, DeployVerdict]:
        """Each deploy's one answer: its latest canary and before/after verdicts combined
        (:func:`analyzers.events.combined.combined_verdict`), whichever was stored last.

        The two latest rows per deploy are found by the ``check_kind`` column (index
        ``verdicts_kind``), never by matching text inside the stored JSON."""
        from analyzers.events.combined import ROLLED_OUT, combined_verdict

        ids = list(dict.fromkeys(deploy_ids))
        got: dict[str, list[Any]] = {}  # deploy id -> [canary, before/after, rolled out]
        sql = "SELECT deploy_id, MAX(id) AS id FROM verdicts WHERE deploy_id IN ({}) AND check_kind {} 'canary' GROUP BY deploy_id"
        with self._tx(write=False) as cur:
            for i in range(0, len(ids), 500):
                chunk = ids[i:i + 500]
                marks = ", ".join("?" * len(chunk))
                for dep_id, data, status in self._exec(
                        cur, f"SELECT v.deploy_id, v.data, d.status FROM verdicts v JOIN ({sql.format(marks, '=')} UNION "
                        f"{sql.format(marks, '<>')}) m ON v.id = m.id LEFT JOIN deploys d ON d.deploy_id = v.deploy_id",
                        [*chunk, *chunk]).fetchall():
                    v = DeployVerdict.from_dict(json.loads(data))
                    got.setdefault(dep_id, [None, None, status in ROLLED_OUT])[v.check_kind != "canary"] = v
        return {k: both for k, (c, ba, done) in got.items() if (both := combined_verdict(c, ba, rolled_out=done))}

    def verdict_history(self, deploy_id: str) -> list[DeployVerdict]:
        """Every verdict of one deploy, oldest first."""
        with self._tx(write=False) as cur:
            rows = self._exec(cur, "SELECT data FROM verdicts WHERE deploy_id = ? ORDER BY id", (deploy_id,)).fetchall()
        return [DeployVerdict.from_dict(json.loads(r[0])) for r in rows]

    def event_payload(self, source: str, event_id: str) -> dict[str, Any] | None:
        """The JSON body exactly as first received for ``(source, event_id)`` (audit, re-mapping)."""
        with self._tx(write=False) as cur:
            row = self._exec(cur, "SELECT payload FROM events WHERE source = ? AND event_id = ?",
                             (source, event_id)).fetchone()
        return json.loads(row[0]) if row else None

    def count_events(self) -> int:
        """How many distinct events were ever accepted (duplicates excluded)."""
        with self._tx(write=False) as cur:
            return int(self._exec(cur, "SELECT COUNT(*) FROM events").fetchone()[0])

    def event_ids(self, source: str | None = None) -> set[tuple[str, str]]:
        """All stored (source, event_id) pairs (tests and crash checks)."""
        sql, params = "SELECT source, event_id FROM events", []
        if source is not None:
            sql += " WHERE source = ?"
            params.append(source)
        with self._tx(write=False) as cur:
            return {(r[0], r[1]) for r in self._exec(cur, sql, params).fetchall()}

    def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers a query now."""
        with self._tx(write=False) as cur:
            self._exec(cur, "SELECT 1").fetchone()

    def close(self) -> None:
        with self._lock:
            self._drop()

    def __enter__(self) -> SQLStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
