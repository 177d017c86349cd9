"""SQLite back end: one file, safe for several processes on the same machine.

- ``journal_mode=WAL``: readers never block the writer.
- ``synchronous=FULL``: a commit is on disk before ``record_event`` returns (NORMAL can
  lose acknowledged commits on power loss), so a 2xx really means stored.
- writes in ``BEGIN IMMEDIATE`` (the write lock is taken up front, so two receiver
  processes never deadlock on a lock upgrade) with a busy timeout; when the lock stays
  busy longer, :class:`StoreUnavailable` (the receiver answers 503 + Retry-After).
  Waiting for the write lock polls every 0.1-1 ms instead of SQLite's default busy
  handler, whose sleeps grow to 100 ms (1, 2, 5, 10, 15, 20, 25, ...): with two receiver
  processes taking turns every millisecond, those sleeps were the 40-50 ms latency tail.
- ``wal_autocheckpoint`` stays on (the WAL never grows without bound), and a checkpoint is
  a PASSIVE one run by the committing connection: it never waits for readers.
- Not on network file systems (NFS/SMB locking breaks SQLite); use PostgreSQL there.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from analyzers.errors import ConfigError, StoreError, StoreUnavailable
from analyzers.events.store.base import SQLStore
from analyzers.events.store.merge import EventItem
from analyzers.events.store.scheduling import SCHEDULER_DDL
from analyzers.model import Deploy

log = logging.getLogger(__name__)

SCHEMA_VERSION = 3
#: The statements that take a store from version ``v`` to ``v + 1``, at ``_MIGRATIONS[v]``.
_MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE IF NOT EXISTS events (
            source TEXT NOT NULL, event_id TEXT NOT NULL, deploy_id TEXT NOT NULL,
            received_us INTEGER NOT NULL, payload TEXT NOT NULL,
            PRIMARY KEY (source, event_id))""",
        """CREATE TABLE IF NOT EXISTS deploys (
            deploy_id TEXT PRIMARY KEY, service TEXT NOT NULL, environment TEXT NOT NULL,
            started_us INTEGER NOT NULL, status TEXT NOT NULL, updated_us INTEGER NOT NULL, data TEXT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS deploys_started ON deploys (started_us)",
        "CREATE INDEX IF NOT EXISTS deploys_service ON deploys (service, environment, started_us)",
        """CREATE TABLE IF NOT EXISTS verdicts (
            id INTEGER PRIMARY KEY AUTOINCREMENT, deploy_id TEXT NOT NULL,
            checked_us INTEGER NOT NULL, overall TEXT NOT NULL, data TEXT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS verdicts_deploy ON verdicts (deploy_id, id)",
    ],
    list(SCHEDULER_DDL),  # 2: the verification scheduler's tables
    [  # 3: which check a verdict came from, as a column (canary vs before/after), backfilled from
        # the stored JSON's top-level key; json_extract reads that key only, never a nested one
        "ALTER TABLE verdicts ADD COLUMN check_kind TEXT NOT NULL DEFAULT 'manual'",
        "UPDATE verdicts SET check_kind = json_extract(data, '$.check_kind') WHERE json_type(data, '$.check_kind') = 'text'",
        "CREATE INDEX IF NOT EXISTS verdicts_kind ON verdicts (deploy_id, check_kind, id)",
    ],
]
#: Steps skipped when the column they add is there already (SQLite has no ADD COLUMN IF NOT
#: EXISTS), so that a store whose version was set back, or one an interrupted upgrade
#: half-migrated, opens again. Keyed by (the version the step leads to, its index in
#: ``_MIGRATIONS[version - 1]``); the value is the (table, column) the step adds.
_DONE_IF_COLUMN: dict[tuple[int, int], tuple[str, str]] = {(3, 0): ("verdicts", "check_kind")}

#: Write-lock polling: first sleep and the longest one (seconds).
_POLL_FIRST_S = 0.0001
_POLL_MAX_S = 0.001

_UNAVAILABLE = ("locked", "busy", "disk i/o", "full", "unable to open", "readonly", "read-only", "no such table")


def _already(conn: sqlite3.Connection, version: int, index: int) -> bool:
    """Whether step ``index`` of the migration to ``version`` has nothing left to do."""
    adds = _DONE_IF_COLUMN.get((version, index))
    if adds is None:
        return False
    table, column = adds
    return any(row[1] == column for row in conn.execute(f"PRAGMA table_info({table})"))


class SQLiteStore(SQLStore):
    """SQLite store at ``path``; the schema is created (migrated) on first use."""

    #: Not chained: a receiver process's writer that asks for the write lock again the moment its
    #: commit ends can win it over and over from the other process's writer, which polls for it
    #: (chained, SQLite's commit p99 rose in side-by-side runs: docs/benchmarks.md).
    chain_commits = False

    def __init__(self, path: str, *, busy_timeout_s: float = 5.0, url: str | None = None) -> None:
        super().__init__(url or f"sqlite:///{path}")
        if path in ("", ":memory:"):
            raise ConfigError("an in-memory SQLite store loses every deploy on exit: give a file path")
        self.path = path
        self.busy_timeout_s = busy_timeout_s
        self._autocheckpoint_pages = 1000  # SQLite's default
        self._checkpointer: tuple[threading.Thread, threading.Event] | None = None
        self._begun = False  # a write transaction begun by record_events_joining, not yet used
        self._start()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SQLiteStore:
        """``sqlite:///rel/path.db`` (relative) or ``sqlite:////abs/path.db`` (absolute)."""
        if not url.startswith("sqlite:///"):
            raise ConfigError(f"SQLite store URL must look like sqlite:///path/to/deploys.db, got {url!r}")
        return cls(url[len("sqlite:///"):], url=url, **options)

    def _connect(self) -> sqlite3.Connection:
        parent = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(parent):
            os.makedirs(parent, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None,
                               check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            conn.close()
            raise StoreUnavailable(f"SQLite at {self.path} refused WAL mode ({mode}): is it on a network file system?")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute(f"PRAGMA wal_autocheckpoint = {self._autocheckpoint_pages}")
        return conn

    def start_background_checkpoints(self, interval_s: float = 0.25, safety_pages: int = 20000,
                                     on_checkpoint: Callable[[float, float], object] | None = None) -> None:
        """Checkpoint the WAL from a background thread every ``interval_s``, off the request path.

        By default the connection whose commit crosses 1,000 WAL pages copies them into the
        database and fsyncs it before its commit returns: a stall of several to tens of ms for
        the events of that batch, about one commit in a hundred under load (the p99). Here a
        thread with its own connection runs PASSIVE checkpoints (they never block writers or
        readers; with ``synchronous=FULL`` they fsync like the default ones), and commits
        checkpoint themselves only past ``safety_pages`` (if this thread could not keep up).
        ``on_checkpoint(started, ended)`` (``time.perf_counter``) is called after each checkpoint
        that ran (a diagnostic: the receiver's commit log).
        """
        with self._lock:
            if self._checkpointer is not None:
                return
            self._autocheckpoint_pages = safety_pages
            if self._conn is not None:
                self._conn.execute(f"PRAGMA wal_autocheckpoint = {safety_pages}")
            stop = threading.Event()
            thread = threading.Thread(target=self._checkpoint_loop, args=(stop, interval_s),
                                      name="sqlite-checkpoint", daemon=True, kwargs={"on_checkpoint": on_checkpoint})
            self._checkpointer = (thread, stop)
        thread.start()

    def _checkpoint_loop(self, stop: threading.Event, interval_s: float,
                         on_checkpoint: Callable[[float, float], object] | None = None) -> None:
        conn: sqlite3.Connection | None = None
        while not stop.wait(interval_s):
            try:
                if conn is None:
                    conn = sqlite3.connect(self.path, timeout=0, isolation_level=None, check_same_thread=False)
                    conn.execute("PRAGMA busy_timeout = 0")  # another checkpoint running: skip this turn
                    conn.execute("PRAGMA synchronous = FULL")
                t0 = time.perf_counter()
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                if on_checkpoint is not None:
                    on_checkpoint(t0, time.perf_counter())
            except sqlite3.Error as exc:  # busy, or the file is gone: the commits' safety net remains
                log.debug("background checkpoint of %s skipped: %s", self.path, exc)
                if conn is not None and "busy" not in str(exc).lower() and "locked" not in str(exc).lower():
                    conn.close()
                    conn = None
        if conn is not None:
            conn.close()

    def close(self) -> None:
        with self._lock:
            checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            checkpointer[1].set()
            checkpointer[0].join(5)
        super().close()

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} has schema version {version}, newer than this program ({SCHEMA_VERSION}): upgrade"
                )
            for v in range(version, SCHEMA_VERSION):
                for i, stmt in enumerate(_MIGRATIONS[v]):
                    if not _already(conn, v + 1, i):
                        conn.execute(stmt)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # a failed COMMIT (disk full) has already ended it
                conn.execute("ROLLBACK")
            raise

    def record_events_joining(self, items: Sequence[EventItem],
                              more: Callable[[], Sequence[EventItem]]) -> list[tuple[Deploy, bool] | StoreError]:
        """:meth:`record_events` of ``items`` and of the events ``more()`` returns once the write lock
        is held: with two receiver processes the lock is often held by the other one's commit
        (its fsync), and the events queued meanwhile then join this commit instead of waiting for
        one more. If the lock cannot be had, nothing is taken from ``more`` and the error is raised."""
        with self._lock:
            try:
                if self._conn is None:
                    self._conn = self._connect()
                self._begin(self._conn, True)
            except Exception as exc:
                self._drop()
                self._raise_translated(exc)
            self._begun = True  # the next write transaction (_tx) is this one
            try:
                return self.record_events([*items, *more()])
            finally:
                if self._begun:  # not used (an error before it): end it, releasing the lock
                    self._begun = False
                    try:
                        self._conn.rollback()
                    except Exception:
                        self._drop()

    def _begin(self, conn: sqlite3.Connection, write: bool) -> None:
        if write and self._begun:  # record_events_joining took the write lock already
            self._begun = False
            return
        if not write:
            conn.execute("BEGIN")
            return
        # First try without SQLite's busy handler, then poll with short sleeps until the
        # busy timeout: the lock is typically held for about a millisecond (one group commit).
        conn.execute("PRAGMA busy_timeout = 0")
        try:
            delay, deadline = _POLL_FIRST_S, 0.0
            while True:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    msg = str(exc).lower()
                    if "locked" not in msg and "busy" not in msg:
                        raise
                    now = time.monotonic()
                    if not deadline:
                        deadline = now + self.busy_timeout_s
                    elif now >= deadline:
                        raise
                    time.sleep(delay)
                    delay = min(delay * 2, _POLL_MAX_S)
        finally:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")

    def _translate(self, exc: BaseException) -> StoreError | None:
        if isinstance(exc, StoreError):
            return exc
        if isinstance(exc, sqlite3.OperationalError):
            msg = str(exc)
            if any(word in msg.lower() for word in _UNAVAILABLE):
                err = StoreUnavailable(f"SQLite store {self.path} unavailable ({msg}{self._room()}): retry later")
                err.broken = "locked" not in msg.lower() and "busy" not in msg.lower()  # type: ignore[attr-defined]
                return err
            return StoreError(f"SQLite store {self.path}: {msg}")
        if isinstance(exc, sqlite3.Error):
            return StoreError(f"SQLite store {self.path}: {exc}")
        return None

    def _room(self) -> str:
        """``; 12 KiB free on /data`` when the disk is nearly full, or the folder/files cannot be
        written (SQLite needs the -wal and -shm files beside the database), else ``""``."""
        folder = os.path.dirname(os.path.abspath(self.path))
        try:
            st = os.statvfs(folder)
        except OSError:
            return f"; folder {folder} is not reachable"
        free = st.f_bavail * st.f_frsize
        if free < 1 << 20:
            return (f"; only {free // 1024} KiB free on {folder}: free space or move the store "
                    "(nothing acknowledged was lost)")
        for name in (self.path, self.path + "-wal", self.path + "-shm"):
            if os.path.exists(name) and not os.access(name, os.R_OK | os.W_OK):
                return f"; {name} is not writable by this process: fix its owner or mode"
        if not os.access(folder, os.W_OK):
            return f"; folder {folder} is not writable (SQLite creates its -wal and -shm files there)"
        return ""

    def integrity_check(self) -> str:
        """``PRAGMA integrity_check`` result (``"ok"`` when the file is sound)."""
        with self._tx(write=False) as cur:
            return str(cur.execute("PRAGMA integrity_check").fetchone()[0])
