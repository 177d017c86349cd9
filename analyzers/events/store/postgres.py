"""PostgreSQL back end (psycopg 3): for several receivers at once, or storage off the host.

- Dedup is ``INSERT ... ON CONFLICT (source, event_id) DO NOTHING RETURNING``: atomic
  insert-or-skip even with many receivers racing on the same delivery.
- Writers of one deploy are serialised with ``pg_advisory_xact_lock`` on its id, so two
  status updates arriving at once merge instead of overwriting each other (a group commit
  takes the locks of all its deploys in one statement, in sorted order).
- Migrations run on start under an advisory lock (several receivers may start together);
  the applied version is kept in ``schema_version``.
- Connection loss -> :class:`StoreUnavailable`; the next call reconnects.
- A group commit (:meth:`PostgresStore._record_batch`) of new events of deploys not stored
  before is one round trip: the deploy locks and plain INSERTs of the events and the deploys in
  one message, one implicit transaction (the outcome is known before anything is sent). When
  the batch updates a deploy this store wrote lately, or after a wrong guess (a unique
  violation: nothing of it is kept), it is two: ``BEGIN``, the deploy locks, the events INSERT
  and the SELECT of the deploys travel as one message, the deploys upsert and ``COMMIT`` as a
  second (three when the batch holds events stored before). Parameters are bound on the client for these (the server takes several
  statements per message only without server-side parameters): each value is quoted by
  psycopg's own adapters (``Transformer.as_literal``, as ``psycopg.sql.Literal`` and
  ``ClientCursor`` do it) into a message template built once per batch size
  (:func:`_message`); every other query binds on the server as usual.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from analyzers.errors import StoreError, StoreUnavailable
from analyzers.events.store.base import SQLStore
from analyzers.events.store.codec import payload_text
from analyzers.events.store.merge import (
    EventItem,
    insert_events,
    insert_events_sql,
    merge_batch,
    new_rows_sql,
    upsert_deploys_sql,
)
from analyzers.events.store.scheduling import SCHEDULER_DDL
from analyzers.model import Deploy

#: Takes the advisory locks of a transaction's deploys in the order of the array given.
_LOCK_SQL = "SELECT pg_advisory_xact_lock(k) FROM unnest(%s::bigint[]) WITH ORDINALITY AS t(k, n) ORDER BY n"


@lru_cache(maxsize=256)
def _message(kind: str, n: int, m: int = 0) -> bytes:
    """A group commit's message for ``n`` rows as a template: ``%s`` where each quoted value goes
    (``bytes % literals``). Built once per size: psycopg's own placeholder parsing of a message
    of 50 values or more is not cached and took about a third of the writer thread's CPU.

    - ``first``: ``BEGIN``, the deploy locks (one array), the INSERT of ``n`` events (five
      values each), the SELECT of the batch's deploys (one array);
    - ``before``: the deploys ``n`` events stored by earlier transactions were stored under
      (two values each);
    - ``upsert``: the upsert of ``n`` deploys (seven values each) and ``COMMIT``;
    - ``new``: a whole group commit of ``n`` new events of ``m`` deploys not stored before, in
      one message without ``BEGIN`` (one implicit transaction, committed when the message ends):
      the deploy locks, then plain INSERTs of the events and the deploys (no ``ON CONFLICT``),
      so an event or a deploy stored before raises a unique violation and nothing is kept.
    """
    if kind == "new":
        sql = _LOCK_SQL + "; " + new_rows_sql("events", n) + "; " + new_rows_sql("deploys", m)
    elif kind == "first":
        sql = ("BEGIN; " + _LOCK_SQL + "; " + insert_events_sql(n) + "; "
               "SELECT deploy_id, data FROM deploys WHERE deploy_id = ANY(%s::text[])")
    elif kind == "before":
        sql = ("SELECT e.source, e.event_id, e.deploy_id, d.data FROM events e LEFT JOIN deploys d "
               "ON d.deploy_id = e.deploy_id WHERE (e.source, e.event_id) IN (" + ", ".join(["(?, ?)"] * n) + ")")
    else:
        sql = upsert_deploys_sql(n) + "; COMMIT"
    return sql.replace("?", "%s").encode()


def _bound(template: bytes, values: Sequence[Any], literal: Any) -> bytes:
    """``template`` with each value quoted by ``literal`` (psycopg's ``Transformer.as_literal``)."""
    return template % tuple(b"NULL" if v is None else literal(v) for v in values)

SCHEMA_VERSION = 3
_MIGRATION_LOCK = 0x6465706C  # "depl"
_MIGRATIONS = [
    [
        """CREATE TABLE IF NOT EXISTS events (
            source TEXT NOT NULL, event_id TEXT NOT NULL, deploy_id TEXT NOT NULL,
            received_us BIGINT NOT NULL, payload TEXT NOT NULL,
            PRIMARY KEY (source, event_id))""",
        """CREATE TABLE IF NOT EXISTS deploys (
            deploy_id TEXT PRIMARY KEY, service TEXT NOT NULL, environment TEXT NOT NULL,
            started_us BIGINT NOT NULL, status TEXT NOT NULL, updated_us BIGINT NOT NULL, data TEXT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS deploys_started ON deploys (started_us)",
        "CREATE INDEX IF NOT EXISTS deploys_service ON deploys (service, environment, started_us)",
        """CREATE TABLE IF NOT EXISTS verdicts (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, deploy_id TEXT NOT NULL,
            checked_us BIGINT NOT NULL, overall TEXT NOT NULL, data TEXT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS verdicts_deploy ON verdicts (deploy_id, id)",
    ],
    list(SCHEDULER_DDL),  # 2: the verification scheduler's tables
    [  # 3: which check a verdict came from, as a column, backfilled from the JSON's top-level key
        "ALTER TABLE verdicts ADD COLUMN IF NOT EXISTS check_kind TEXT NOT NULL DEFAULT 'manual'",
        "UPDATE verdicts SET check_kind = data::jsonb->>'check_kind' "
        "WHERE jsonb_typeof(data::jsonb->'check_kind') = 'string'",
        "CREATE INDEX IF NOT EXISTS verdicts_kind ON verdicts (deploy_id, check_kind, id)",
    ],
]


class PostgresStore(SQLStore):
    """PostgreSQL store at a ``postgresql://`` URL; migrates on construction."""

    placeholder = "%s"
    batch_from = 1  # two round trips for a single event too, instead of six

    #: Deploy ids this store wrote lately (a bounded, insertion-ordered set): a batch touching
    #: one of them is no new-deploys batch, so :meth:`_record_batch` does not guess it is.
    _RECENT = 4096

    def __init__(self, url: str, *, connect_timeout_s: float = 5.0) -> None:
        super().__init__(url.replace("postgres://", "postgresql://", 1))
        self.connect_timeout_s = connect_timeout_s
        self.recent: dict[str, None] = {}
        self.guesses_missed = 0  # new-deploys guesses that met a stored event or deploy
        self._skip = self._backoff = 0  # after a missed guess, batches not guessed (doubling up to 64)
        self._start()

    def _connect(self) -> Any:
        import psycopg

        # autocommit: psycopg sends no BEGIN of its own; every transaction starts with an explicit
        # one (``_begin``), or inside a group commit's first message (``_record_batch``).
        return psycopg.connect(self.url, connect_timeout=max(1, int(self.connect_timeout_s)), autocommit=True)

    def _migrate(self, conn: Any) -> None:
        with conn.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            cur.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            cur.execute("SELECT MAX(version) FROM schema_version")
            row = cur.fetchone()
            version = int(row[0]) if row and row[0] is not None else 0
            if version > SCHEMA_VERSION:
                conn.rollback()
                raise StoreError(f"database has schema version {version}, newer than this program: upgrade")
            for v in range(version, SCHEMA_VERSION):
                for stmt in _MIGRATIONS[v]:
                    cur.execute(stmt)
                cur.execute("INSERT INTO schema_version (version) VALUES (%s)", (v + 1,))
        conn.commit()

    def _begin(self, conn: Any, write: bool) -> None:
        if conn.closed:
            raise StoreUnavailable(f"PostgreSQL store {self.describe()} connection closed: retry later")
        conn.execute("BEGIN")

    def _lock_deploys(self, cur: Any, deploy_ids: Sequence[str]) -> None:
        # One statement (one round trip) for the whole batch instead of one per deploy; the
        # function scan takes the locks in the array's order, the ids' sorted order as before.
        if deploy_ids:
            cur.execute(_LOCK_SQL, ([zlib.crc32(d.encode()) for d in deploy_ids],))

    def _record_batch(self, items: Sequence[EventItem]) -> list[tuple[Deploy, bool] | StoreError]:
        """:meth:`SQLStore._record_batch`'s outcome in one or two round trips instead of six.

        A batch of distinct events whose deploys this store has not written lately is first
        guessed new: its outcome (``merge_batch`` with nothing stored) is sent as one message
        (:func:`_message` ``new``); a unique violation means some event or deploy was stored
        before, the implicit transaction is rolled back whole, and the batch goes the two-message
        way below. After a wrong guess the next batches are not guessed (1, 2, 4 ... up to 64).

        The two-message way. The first message: ``BEGIN``; the deploy locks (sorted ids, as every writer takes them);
        the multi-row events INSERT (``ON CONFLICT DO NOTHING RETURNING``); the SELECT of the
        batch's deploys. Each statement of a message runs with its own snapshot (READ
        COMMITTED), so the SELECT sees every commit made before its locks were granted. When
        some events were stored before, one more query reads the deploys they were stored
        under. The merges run here; the second message is the deploys upsert and ``COMMIT``.
        Any error rolls the whole batch back (the caller then isolates the refused item); a
        value psycopg cannot send (a NUL character, a lone surrogate) is refused while quoting,
        before anything is sent.
        """
        from psycopg.adapt import Transformer
        from psycopg.errors import UniqueViolation

        payloads = [payload_text(payload) for _, _, payload, _ in items]  # TypeError/ValueError: caller falls back
        ids = sorted({item[3].deploy_id for item in items})
        locks = [zlib.crc32(d.encode()) for d in ids]
        with self._tx(write=True, begin=False) as cur:
            literal = Transformer.from_context(cur.connection).as_literal
            _, rows, stamps = insert_events(items, payloads)
            keys = {(s, e) for s, e, _, _ in items}
            if self._guess(ids) and len(keys) == len(items):
                # Guess: every event and every deploy is new (a deploy's first event). Then the
                # outcome is known before anything is sent, and the whole group commit is one
                # message (see _message "new"). Wrong guess: a unique violation, nothing kept,
                # and the batch takes the path below (one round trip lost).
                out, upserts = merge_batch(items, stamps, keys, {(s, e): d.deploy_id for s, e, _, d in items}, {})
                try:
                    cur.execute(_bound(_message("new", len(items), len(upserts)),
                                       [locks, *rows, *(v for row in upserts for v in row)], literal), prepare=False)
                except UniqueViolation:  # the implicit transaction is rolled back; the connection is idle
                    self.guesses_missed += 1
                    self._skip = self._backoff = min(64, 2 * self._backoff or 1)
                else:
                    self._backoff = 0
                    self._remember(ids)
                    return out
            cur.execute(_bound(_message("first", len(items)), [locks, *rows, ids], literal), prepare=False)
            cur.nextset()  # past BEGIN
            cur.nextset()  # past the locks
            inserted = {(r[0], r[1]) for r in cur.fetchall()}
            cur.nextset()
            state: dict[str, Deploy] = {r[0]: Deploy.from_dict(json.loads(r[1])) for r in cur.fetchall()}
            first_seen: dict[tuple[str, str], str] = {}  # event -> deploy_id it was first stored under
            for source, event_id, _, deploy in items:
                if (source, event_id) in inserted:
                    first_seen.setdefault((source, event_id), deploy.deploy_id)
            before = list(dict.fromkeys((s, e) for s, e, _, _ in items if (s, e) not in inserted))
            if before:  # stored by an earlier transaction: the deploy each was stored under
                cur.execute(_bound(_message("before", len(before)), [v for key in before for v in key], literal),
                            prepare=False)
                for source, event_id, deploy_id, data in cur.fetchall():
                    first_seen[source, event_id] = deploy_id
                    if data is not None and deploy_id not in state:
                        state[deploy_id] = Deploy.from_dict(json.loads(data))
            out, upserts = merge_batch(items, stamps, inserted, first_seen, state)
            cur.execute(_bound(_message("upsert", len(upserts)), [v for row in upserts for v in row], literal)
                        if upserts else b"COMMIT", prepare=False)
            self._remember(ids)
        return out

    def _guess(self, ids: Sequence[str]) -> bool:
        """Whether to send a batch of these deploys as new (one message): not after a recent
        missed guess, nor when this store wrote one of them lately."""
        if self._skip:
            self._skip -= 1
            return False
        return not any(d in self.recent for d in ids)

    def _remember(self, ids: Sequence[str]) -> None:
        recent = self.recent
        for d in ids:
            recent[d] = None
        while len(recent) > self._RECENT:
            del recent[next(iter(recent))]

    def _translate(self, exc: BaseException) -> StoreError | None:
        import psycopg

        if isinstance(exc, StoreError):
            return exc
        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
            err = StoreUnavailable(
                f"PostgreSQL store {self.describe()} unavailable ({str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}): retry later"
            )
            err.broken = True  # type: ignore[attr-defined]
            return err
        if isinstance(exc, psycopg.errors.LockNotAvailable | psycopg.errors.QueryCanceled):
            return StoreUnavailable(f"PostgreSQL store {self.describe()} busy ({exc}): retry later")
        if isinstance(exc, psycopg.Error):
            return StoreError(f"PostgreSQL store {self.describe()}: {exc}")
        return None
