"""PostgreSQL back end (psycopg 3): for several receivers at once, or storage off the host.

- Dedup is ``INSERT ... ON CONFLICT (source, event_id) DO NOTHING RETURNING``: atomic
  insert-or-skip even with many receivers racing on the same delivery.
- Writers of one deploy are serialised with ``pg_advisory_xact_lock`` on its id, so two
  status updates arriving at once merge instead of overwriting each other (a group commit
  takes the locks of all its deploys in one statement, in sorted order).
- Migrations run on start under an advisory lock (several receivers may start together);
  the applied version is kept in ``schema_version``.
- Connection loss -> :class:`StoreUnavailable`; the next call reconnects.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

from analyzers.errors import StoreError, StoreUnavailable
from analyzers.events.store.base import SQLStore
from analyzers.events.store.scheduling import SCHEDULER_DDL

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
