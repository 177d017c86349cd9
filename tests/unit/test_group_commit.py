"""The receiver's group commit on a real SQLite store, held up as a slow fsync would hold it.

What a sender relies on: its answer comes after the commit that holds its event; after a
stall, everything queued behind it is committed as one group (not one event per turn); and
the queued group is already on its way to the store when the stalled batch's answers go out.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from analyzers.errors import StoreUnavailable
from analyzers.events.store.sqlite import SQLiteStore
from analyzers.model import Deploy
from analyzers.server.commit import GroupCommitter
from tests.fixtures.held_store import HeldCommits

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def _deploy(i: int) -> Deploy:
    return Deploy(deploy_id=f"d{i}", service="checkout", environment="production", version=f"v{i}", started_at=T0,
                  status="succeeded", received_at=T0, updated_at=T0)


class HeldStore(HeldCommits, SQLiteStore):
    """A real SQLite store whose first commit waits for ``release`` (a stalled fsync); it
    records the size of every batch it is given."""


def test_after_a_stall_the_queue_commits_as_one_group_before_the_stalled_batch_is_answered(tmp_path: Any) -> None:
    store = HeldStore(str(tmp_path / "held.db"))
    seen_when_first_answered: dict[str, Any] = {}

    async def scenario() -> list[tuple[Deploy, bool]]:
        committer = GroupCommitter(store)

        async def first() -> tuple[Deploy, bool]:
            result = await committer.record("ci", "e0", {"n": 0}, _deploy(0))
            # answered: its event is committed, and the 20 queued behind it are no longer waiting
            # for this answer to go out (they were handed to the writer first)
            seen_when_first_answered["pending"] = len(committer.pending)
            return result

        head = asyncio.create_task(first())
        while not store.batches:  # the first commit has started and is held
            await asyncio.sleep(0.001)
        queued = [asyncio.create_task(committer.record("ci", f"e{i}", {"n": i}, _deploy(i))) for i in range(1, 21)]
        await asyncio.sleep(0.05)
        assert store.batches == [1] and not any(t.done() for t in [head, *queued])  # nothing answered mid-stall
        store.release.set()
        results = await asyncio.gather(head, *queued)
        committer.executor.shutdown(wait=True)
        return results

    try:
        results = asyncio.run(scenario())
        assert store.batches == [1, 20]  # the whole backlog in one group commit
        assert seen_when_first_answered == {"pending": 0}
        assert [(d.deploy_id, new) for d, new in results] == [(f"d{i}", True) for i in range(21)]
        assert store.count_events() == 21
    finally:
        store.close()


def test_a_failed_group_answers_each_of_its_callers_with_the_error_and_the_next_group_still_commits(tmp_path: Any) -> None:
    store = HeldStore(str(tmp_path / "held.db"))

    async def scenario() -> list[Any]:
        committer = GroupCommitter(store)
        head = asyncio.create_task(committer.record("ci", "e0", {}, _deploy(0)))
        while not store.batches:
            await asyncio.sleep(0.001)
        doomed = [asyncio.create_task(committer.record("ci", f"e{i}", {}, _deploy(i))) for i in range(1, 4)]
        await asyncio.sleep(0.02)
        store.fail_next = True  # the first batch (held) fails when released; the queued one was not sent yet
        store.release.set()
        out = await asyncio.gather(head, *doomed, return_exceptions=True)
        later = await committer.record("ci", "e9", {}, _deploy(9))
        committer.executor.shutdown(wait=True)
        return [*out, later]

    try:
        results = asyncio.run(scenario())
        assert isinstance(results[0], StoreUnavailable)  # nothing of the failed batch was stored
        assert [r[1] for r in results[1:]] == [True, True, True, True]
        assert store.event_ids() == {("ci", f"e{i}") for i in (1, 2, 3, 9)}
        assert store.batches == [1, 3, 1]
    finally:
        store.close()


def test_the_commit_log_times_every_group_commit_when_asked_and_stays_off_by_default(tmp_path: Any,
                                                                                     monkeypatch: Any) -> None:
    """``$ANALYZERS_COMMIT_LOG`` (bench_ingest's diagnosis): one line per group commit, in the
    order submitted <= started <= ended <= answered, with the batch's size; no file without it."""
    import os
    import time

    from analyzers.server.settings import ENV_COMMIT_LOG

    store = HeldStore(str(tmp_path / "held.db"))
    store.release.set()

    async def scenario(committer: GroupCommitter) -> None:
        await asyncio.gather(*(committer.record("ci", f"e{i}", {}, _deploy(i)) for i in range(5)))
        await committer.record("ci", "e9", {}, _deploy(9))

    try:
        monkeypatch.delenv(ENV_COMMIT_LOG, raising=False)
        quiet = GroupCommitter(store)
        assert quiet.commit_log is None
        quiet.close()

        monkeypatch.setenv(ENV_COMMIT_LOG, str(tmp_path / "commits"))
        before = time.perf_counter()
        committer = GroupCommitter(store)
        asyncio.run(scenario(committer))
        committer.close()
        lines = (tmp_path / f"commits.{os.getpid()}").read_text().splitlines()
        rows = [[float(x) for x in line.split()] for line in lines]
        assert [int(r[4]) for r in rows] == [5, 1]  # the five concurrent events in one commit
        assert [int(r[5]) for r in rows] == [0, 0]  # none joined: no other writer held the lock
        for submitted, started, ended, answered, _, _ in rows:
            assert before <= submitted <= started <= ended <= answered <= time.perf_counter()
        assert store.count_events() == 6
    finally:
        store.close()


def test_a_caller_cancelled_while_waiting_does_not_lose_its_event_or_disturb_the_others(tmp_path: Any) -> None:
    """Its event is committed with the batch it was queued in; the others get their answers;
    nothing is set on the cancelled caller's future (no error from the event loop)."""
    store = HeldStore(str(tmp_path / "held.db"))
    loop_errors: list[Any] = []

    async def scenario() -> list[Any]:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: loop_errors.append(ctx))
        committer = GroupCommitter(store)
        head = asyncio.create_task(committer.record("ci", "e0", {"n": 0}, _deploy(0)))
        while not store.batches:
            await asyncio.sleep(0.001)
        queued = [asyncio.create_task(committer.record("ci", f"e{i}", {"n": i}, _deploy(i))) for i in range(1, 4)]
        await asyncio.sleep(0.01)
        queued[1].cancel()
        store.release.set()
        results = await asyncio.gather(head, *queued, return_exceptions=True)
        await asyncio.sleep(0.05)
        committer.executor.shutdown(wait=True)
        return results

    try:
        results = asyncio.run(scenario())
        assert isinstance(results[2], asyncio.CancelledError)
        assert [(r[0].deploy_id, r[1]) for i, r in enumerate(results) if i != 2] == [("d0", True), ("d1", True),
                                                                                      ("d3", True)]
        assert store.batches == [1, 3] and store.count_events() == 4  # e2 committed with its batch
        assert loop_errors == []
    finally:
        store.close()


class OtherWriterStore(SQLiteStore):
    """A real SQLite store that says when its writer starts waiting for the write lock, and records
    the size of every batch it commits."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.waiting = threading.Event()
        self.batches: list[int] = []

    def _begin(self, conn: Any, write: bool) -> None:
        if write and not self._begun:
            self.waiting.set()
        super()._begin(conn, write)

    def record_events(self, items: Sequence[Any]) -> list[Any]:
        self.batches.append(len(items))
        return super().record_events(items)


def test_events_queued_while_the_writer_waits_for_the_write_lock_join_its_commit(tmp_path: Any,
                                                                                 monkeypatch: Any) -> None:
    """With two receiver processes on one SQLite file, one's commit often waits for the other's
    (its fsync). The events that arrive meanwhile are committed with the waiting batch, once the
    lock is had, instead of waiting for one more commit after it; each is answered after that
    commit. The commit log counts them (its last field)."""
    import os
    import sqlite3

    from analyzers.server.settings import ENV_COMMIT_LOG

    monkeypatch.setenv(ENV_COMMIT_LOG, str(tmp_path / "commits"))

    path = str(tmp_path / "shared.db")
    store = OtherWriterStore(path)
    other = sqlite3.connect(path, isolation_level=None)  # the other receiver process's connection

    async def scenario() -> list[tuple[Deploy, bool]]:
        committer = GroupCommitter(store)
        other.execute("BEGIN IMMEDIATE")  # its commit in flight: holds the write lock
        head = asyncio.create_task(committer.record("ci", "e0", {"n": 0}, _deploy(0)))
        assert await asyncio.to_thread(store.waiting.wait, 10), "the writer never tried to begin"
        queued = [asyncio.create_task(committer.record("ci", f"e{i}", {"n": i}, _deploy(i))) for i in range(1, 10)]
        await asyncio.sleep(0.05)
        assert not any(t.done() for t in [head, *queued])  # nothing answered before its commit
        other.execute("COMMIT")  # the other process's commit ends
        results = await asyncio.gather(head, *queued)
        committer.executor.shutdown(wait=True)
        committer.close()
        return results

    try:
        results = asyncio.run(scenario())
        assert store.batches == [10]  # one commit for all ten, not [1, 9]
        assert [line.split()[4:] for line in (tmp_path / f"commits.{os.getpid()}").read_text().splitlines()] == [
            ["10", "9"]]
        assert [(d.deploy_id, new) for d, new in results] == [(f"d{i}", True) for i in range(10)]
        assert store.count_events() == 10
    finally:
        other.close()
        store.close()


def test_a_failed_joined_commit_answers_the_events_that_joined_it_too(tmp_path: Any) -> None:
    """Events that joined a batch share its fate: when its commit fails, each of them gets the
    error (nothing of it was stored), and the write lock is released for the next commit."""
    import sqlite3

    path = str(tmp_path / "shared.db")

    class FailingStore(OtherWriterStore):
        fail = True

        def record_events(self, items: Sequence[Any]) -> list[Any]:
            self.batches.append(len(items))
            if self.fail:
                self.fail = False
                raise StoreUnavailable("disk I/O error (test)")
            return super(OtherWriterStore, self).record_events(items)

    store = FailingStore(path)
    other = sqlite3.connect(path, isolation_level=None)

    async def scenario() -> list[Any]:
        committer = GroupCommitter(store)
        other.execute("BEGIN IMMEDIATE")
        head = asyncio.create_task(committer.record("ci", "e0", {}, _deploy(0)))
        assert await asyncio.to_thread(store.waiting.wait, 10)
        joined = [asyncio.create_task(committer.record("ci", f"e{i}", {}, _deploy(i))) for i in range(1, 4)]
        await asyncio.sleep(0.05)
        other.execute("COMMIT")
        out = await asyncio.gather(head, *joined, return_exceptions=True)
        later = await committer.record("ci", "e9", {}, _deploy(9))
        committer.executor.shutdown(wait=True)
        return [*out, later]

    try:
        results = asyncio.run(scenario())
        assert all(isinstance(r, StoreUnavailable) for r in results[:4])
        assert results[4][1] is True
        assert store.batches == [4, 1]
        assert store.event_ids() == {("ci", "e9")}
        other.execute("BEGIN IMMEDIATE")  # the lock is free again: the failed commit left nothing behind
        other.execute("ROLLBACK")
    finally:
        other.close()
        store.close()


def test_the_commit_log_stays_line_by_line_when_checkpoints_and_commits_are_logged_at_once(tmp_path: Any,
                                                                                         monkeypatch: Any) -> None:
    """SQLite's checkpoint thread logs beside the event loop's commit lines: every line stays whole
    (a garbled line once stopped a benchmark run), and a checkpoint logged after close() is dropped."""
    import os

    from analyzers.server.settings import ENV_COMMIT_LOG

    monkeypatch.setenv(ENV_COMMIT_LOG, str(tmp_path / "commits"))
    store = HeldStore(str(tmp_path / "held.db"))
    store.release.set()
    committer = GroupCommitter(store)

    def checkpoints() -> None:
        for i in range(20000):
            committer.log_checkpoint(i * 1e-3, i * 1e-3 + 5e-4)

    async def commits() -> None:
        for i in range(300):
            await asyncio.gather(*(committer.record("ci", f"e{i}-{j}", {}, _deploy(j)) for j in range(3)))

    threads = [threading.Thread(target=checkpoints) for _ in range(3)]
    try:
        for t in threads:
            t.start()
        asyncio.run(commits())
        for t in threads:
            t.join()
        committer.close()
        committer.log_checkpoint(1.0, 2.0)  # after close: nothing written, no error
        lines = (tmp_path / f"commits.{os.getpid()}").read_text().splitlines()
        marks = [line for line in lines if line.startswith("C ")]
        rows = [line.split() for line in lines if not line.startswith("C ")]
        assert len(marks) == 60000 and all(len(m.split()) == 3 for m in marks)
        assert sum(int(r[4]) for r in rows) == 900 and all(len(r) == 6 for r in rows)
    finally:
        store.close()
