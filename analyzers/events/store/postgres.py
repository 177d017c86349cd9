"""PostgreSQL back end (psycopg 3): for several receivers at once, or storage off the host.

- Dedup is ``INSERT ... ON CONFLICT (source, event_id) DO NOTHING RETURNING``: atomic
  insert-or-skip even with many receivers racing on the same delivery.
- Writers of one deploy are serialised with ``pg_advisory_xact_lock`` on its id, so two
  status updates arriving at once merge instead of overwriting each other (a group commit
  takes the locks of all its deploys in one statement, in sorted order).
- Migrations run on start under an advisory lock (several receivers may start together);
  the applied version is kept in ``schema_version``.
- A group commit is two round trips (psycopg pipeline mode): the locks, the events'
  INSERT and the two SELECTs the merge needs go out together, then the deploys' upsert and
  COMMIT; one statement at a time it was five or more, each a wait for the server and, in
  the receiver's writer thread, a wait to get the GIL back from the event loop.
- Connection loss -> :class:`StoreUnavailable`; the next call reconnects.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Sequence
from typing import Any

from analyzers.errors import StoreError, StoreUnavailable
from analyzers.events.store.base import EventItem, SQLStore, merge_batch, upsert_deploys_sql
from analyzers.events.store.codec import payload_text
from analyzers.events.store.scheduling import SCHEDULER_DDL
from analyzers.model import Deploy

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
    #: Two connections may commit batches at once (the receiver's group committer opens a
    #: second one): PostgreSQL flushes their WAL together, and the advisory locks keep
    #: writers of one deploy in order.
    concurrent_writers = True

    def __init__(self, url: str, *, connect_timeout_s: float = 5.0) -> None:
        super().__init__(url.replace("postgres://", "postgresql://", 1))
        self.connect_timeout_s = connect_timeout_s
        self._start()

    def _connect(self) -> Any:
        import psycopg

        return psycopg.connect(self.url, connect_timeout=max(1, int(self.connect_timeout_s)), autocommit=False)

    def _migrate(self, conn: Any) -> None:
        with conn.cursor() as cur:
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
        # psycopg opens the transaction on the first statement (autocommit=False).
        if conn.closed:
            raise StoreUnavailable(f"PostgreSQL store {self.describe()} connection closed: retry later")

    def _lock_deploys(self, cur: Any, deploy_ids: Sequence[str]) -> None:
        # One statement (one round trip) for the whole batch instead of one per deploy; the
        # function scan takes the locks in the array's order, the ids' sorted order as before.
        if deploy_ids:
            cur.execute("SELECT pg_advisory_xact_lock(k) FROM unnest(%s::bigint[]) WITH ORDINALITY AS t(k, n) ORDER BY n",
                        ([zlib.crc32(d.encode()) for d in deploy_ids],))

    def _record_batch(self, items: Sequence[EventItem]) -> list[Any]:
        """:meth:`SQLStore._record_batch` in two round trips (pipeline mode), with the same outcome.

        The events are inserted in (source, event_id) order (a stable sort: the first of two
        copies in the batch still wins), so two writers inserting overlapping batches wait
        on each other's rows in one order and cannot deadlock.
        """
        payloads = [payload_text(payload) for _, _, payload, _ in items]  # TypeError/ValueError: caller falls back
        with self._tx(write=True) as cur:
            conn = cur.connection
            with conn.pipeline():
                self._lock_deploys(cur, sorted({item[3].deploy_id for item in items}))  # one lock order
                stamps = [time.time_ns() // 1000 for _ in items]  # = to_us(datetime.now(UTC)), floored
                order = sorted(range(len(items)), key=lambda i: (items[i][0], items[i][1]))
                rows: list[Any] = []
                for i in order:
                    rows += (items[i][0], items[i][1], items[i][3].deploy_id, stamps[i], payloads[i])
                ins = conn.cursor()
                ins.execute("INSERT INTO events (source, event_id, deploy_id, received_us, payload) VALUES "
                            + ", ".join(["(%s, %s, %s, %s, %s)"] * len(items))
                            + " ON CONFLICT (source, event_id) DO NOTHING RETURNING source, event_id", rows)
                keys = ([item[0] for item in items], [item[1] for item in items])
                batch_keys = "SELECT * FROM unnest(%s::text[], %s::text[])"
                seen = conn.cursor()  # the deploy each event (new or earlier) was first stored under
                seen.execute(f"SELECT source, event_id, deploy_id FROM events WHERE (source, event_id) IN ({batch_keys})",
                             keys)
                deps = conn.cursor()
                # UNION, not OR: "deploy_id = ANY(...) OR deploy_id IN (subquery)" is planned as a
                # sequential scan of every deploy (8 ms per batch at 50,000 deploys, and growing);
                # each half here is an index lookup.
                deps.execute("SELECT deploy_id, data FROM deploys WHERE deploy_id = ANY(%s::text[]) UNION "
                             "SELECT d.deploy_id, d.data FROM unnest(%s::text[], %s::text[]) AS k(s, i) "
                             "JOIN events e ON e.source = k.s AND e.event_id = k.i JOIN deploys d ON d.deploy_id = e.deploy_id",
                             ([item[3].deploy_id for item in items], *keys))
                inserted = {(r[0], r[1]) for r in ins.fetchall()}  # the first round trip ends here
                first_seen = {(r[0], r[1]): r[2] for r in seen.fetchall()}
                state = {r[0]: Deploy.from_dict(json.loads(r[1])) for r in deps.fetchall()}
                out, values = merge_batch(items, stamps, inserted, first_seen, state)
                if values:
                    self._exec(cur, upsert_deploys_sql(len(values) // 7), values)
                conn.commit()  # the second: upsert and COMMIT together (_tx's commit then finds nothing to do)
        return out

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
