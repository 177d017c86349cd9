"""Group commit: concurrent events of one receiver process share one store transaction.

:class:`GroupCommitter` queues each event with its answer (a future the caller awaits, or a
callback for the direct path of :mod:`analyzers.server.protocol`), hands the queue to one
writer thread as one batch, and answers every event of the batch after its commit. On
PostgreSQL (``chain_commits``) the thread then takes what queued meanwhile as the next batch
itself, before handing the answers to the event loop, so that under load it goes from one
commit to the next without waiting for a turn of the loop. Events that queue while the thread
waits for SQLite's write lock (the other receiver process's commit) join the batch once the
lock is held (``record_events_joining``), instead of waiting for one more commit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool

from analyzers.errors import StoreUnavailable
from analyzers.events.store import Store
from analyzers.server.settings import ENV_COMMIT_LOG


class GroupCommitter:
    """Batches concurrent ``record_event`` calls into one store transaction (one fsync).

    While a commit runs, new events queue; when it ends, the queue is committed together.
    An idle receiver commits each event at once (no added latency); a busy one pays one
    fsync per batch instead of one per event. Every caller still gets its own answer only
    after the commit that holds its event.
    """

    def __init__(self, store: Store, max_batch: int = 64) -> None:
        self.store = store
        self.max_batch = max_batch
        self.batched = hasattr(store, "record_events")
        self.joining = hasattr(store, "record_events_joining")
        self.chain = bool(getattr(store, "chain_commits", False))
        self.pending: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        # pending is appended to by the event loop and taken from by the writer thread (_take, _more)
        self._pending_lock = threading.Lock()
        self.writing = False  # the writer thread runs (_write); set and cleared under _pending_lock
        self.loop: Any = None  # the event loop the answers go to (set by the first event)
        # One writer thread per process (only one batch is ever in flight): a plain executor
        # hop costs less than anyio's thread pool, and the thread stays warm.
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="store-writer")
        # Diagnostic ($ANALYZERS_COMMIT_LOG=PREFIX): one line per group commit in PREFIX.PID,
        # ``submitted started ended answered events joined`` (perf_counter seconds: when the batch was
        # taken for the writer thread, when its commit started and ended, when the event loop set
        # the answers; its events, of which ``joined`` joined it while it waited for the write lock). Off by default: the hot path only reads the clock three times a batch.
        prefix = os.environ.get(ENV_COMMIT_LOG)
        self.commit_log = open(f"{prefix}.{os.getpid()}", "a") if prefix else None  # noqa: SIM115 - closed in close()
        # written by the event loop (commits) and SQLite's checkpoint thread: a text file object is
        # not safe for two writing threads (interleaved writes garbled a line in a benchmark run)
        self._log_lock = threading.Lock()

    def log_checkpoint(self, started: float, ended: float) -> None:
        """A line ``C started ended`` in the commit log: a WAL checkpoint (SQLite's background thread)."""
        if self.commit_log is not None:
            with self._log_lock:
                if not self.commit_log.closed:  # the store's checkpoint thread may outlive close()
                    self.commit_log.write(f"C {started:.6f} {ended:.6f}\n")

    def close(self) -> None:
        """Stop the writer thread (after the batch in flight) and close the commit log."""
        self.executor.shutdown(wait=False)
        if self.commit_log is not None:
            with self._log_lock:
                self.commit_log.close()

    def _timed(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> tuple[float, float, Any]:
        """In the writer thread: commit ``batch``, which grows by the events that join it (:meth:`_more`)."""
        t0 = time.perf_counter()
        items = [item for item, _ in batch]
        if self.joining:
            results = self.store.record_events_joining(items, lambda: self._more(batch))  # type: ignore[attr-defined]
        else:
            results = self.store.record_events(items)  # type: ignore[attr-defined]
        return t0, time.perf_counter(), results

    def _more(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> list[tuple[Any, ...]]:
        """In the writer thread, once the store holds its write lock: the events queued since ``batch``
        was handed over (up to ``max_batch`` in all), moved into it; their answers come with its own."""
        with self._pending_lock:
            room = self.max_batch - len(batch)
            if room <= 0 or not self.pending:
                return []
            extra = self.pending[:room]
            del self.pending[:room]
        batch.extend(extra)
        return [item for item, _ in extra]

    def submit(self, item: tuple[str, str, Any, Any], done: Callable[[Any], None]) -> None:
        """Queue one event for the next group commit; ``done(result)`` is called in the event loop
        with ``(deploy, new)`` or the exception, as :meth:`record` would return or raise it
        (the direct path: no future and no task per event). Needs a store with ``record_events``."""
        self._queue(item, _Callback(done))  # type: ignore[arg-type]

    def _queue(self, item: tuple[Any, ...], answer: asyncio.Future[Any]) -> None:
        """Add an event and its answer to the next batch; start the writer thread unless it runs."""
        with self._pending_lock:
            self.pending.append((item, answer))
            if self.writing:
                return
            self.writing = True
        self.loop = asyncio.get_running_loop()
        # One turn of the loop first: requests already read and parsed in this turn join the
        # first batch (an idle receiver's first event waits microseconds for it).
        self.loop.call_soon(self._start)

    def _start(self) -> None:
        """In the event loop: hand the queue to the writer thread as one batch (none queued: it stays idle)."""
        batch = self._take()
        if not batch:
            return
        try:
            self.executor.submit(self._write, batch, time.perf_counter())
        except RuntimeError:  # closed (shutting down): nothing queued will be committed
            down = StoreUnavailable("receiver shutting down: retry later")
            while batch:
                self._answer(batch, down, (0.0, 0.0, 0.0, 0))
                batch = self._take()

    async def record(self, source: str, event_id: str, payload: Any, deploy: Any) -> tuple[Any, bool]:
        if not self.batched:
            return await run_in_threadpool(self.store.record_event, source, event_id, payload, deploy)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue((source, event_id, payload, deploy), fut)
        # Not shielded: a caller cancelled while it waits cancels only its own future (its event
        # stays in the batch and is committed; _answer skips it).
        return await fut  # type: ignore[no-any-return]

    def _take(self) -> list[tuple[tuple[Any, ...], asyncio.Future[Any]]]:
        """The next batch (up to ``max_batch`` queued events); empty: the writer goes idle."""
        with self._pending_lock:
            batch = self.pending[: self.max_batch]
            del self.pending[: self.max_batch]
            if not batch:
                self.writing = False
        return batch

    def _write(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]], submitted: float) -> None:
        """The writer thread: commit ``batch``. Chained (``chain_commits``, PostgreSQL): then take what
        queued meanwhile as the next batch, hand the answers to the event loop, commit the next,
        without waiting for a turn of the loop. Otherwise (SQLite) the loop answers and hands the
        next batch over (:meth:`_turn`): the moment that takes lets the other receiver process's
        writer, polling for SQLite's write lock, have it."""
        while batch:
            handed = len(batch)
            try:
                started, ended, results = self._timed(batch)
            except BaseException as exc:  # the whole batch failed: nothing of it was committed
                started = ended = time.perf_counter()
                results = exc if isinstance(exc, Exception) else StoreUnavailable(str(exc))
            following = self._take() if self.chain else []
            try:
                self.loop.call_soon_threadsafe(self._answer if self.chain else self._turn, batch, results,
                                               (submitted, started, ended, len(batch) - handed))
            except RuntimeError:  # the event loop is closed (shutdown): nobody is waiting
                with self._pending_lock:
                    self.pending.clear()
                    self.writing = False
                return
            batch, submitted = following, time.perf_counter()

    def _turn(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]], results: Any,
              times: tuple[float, float, float, int]) -> None:
        """In the event loop, after an unchained commit: the queue goes to the writer thread first,
        then the answers (whose callers resume after both)."""
        self._start()
        self._answer(batch, results, times)

    def _answer(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]], results: Any,
                times: tuple[float, float, float, int]) -> None:
        """In the event loop: each caller's answer (``results`` per event, or the batch's exception)."""
        if self.commit_log is not None and not isinstance(results, BaseException):
            line = f"{times[0]:.6f} {times[1]:.6f} {times[2]:.6f} {time.perf_counter():.6f} {len(batch)} {times[3]}\n"
            with self._log_lock:
                self.commit_log.write(line)
        if isinstance(results, BaseException):
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(results)
            return
        for (_, fut), result in zip(batch, results, strict=True):
            if fut.done():
                continue
            if isinstance(result, BaseException):
                fut.set_exception(result)
            else:
                fut.set_result(result)


class _Callback:
    """A queued event's answer as a callback: what :meth:`GroupCommitter._answer`
    call on a future (``done``, ``set_result``, ``set_exception``), without the future."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[Any], None]) -> None:
        self.fn = fn

    def done(self) -> bool:
        return False

    def set_result(self, result: Any) -> None:
        self.fn(result)

    set_exception = set_result


__all__ = ["GroupCommitter"]
