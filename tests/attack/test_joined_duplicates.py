"""A sender's retry that joins the commit of its own first attempt (SQLite, two receiver processes).

Senders retry when an answer is slow (GitHub, Svix): the retry of an event can reach the receiver
while the first copy still waits, with the events queued behind it, for the write lock another
receiver process holds. Once the lock is had, the retry joins that same commit
(``record_events_joining``). What the sender relies on: both copies are answered after the commit,
the first as new and the retry as a duplicate of the same deploy; the event is stored once; and a
status update queued behind them in the same commit still merges into the deploy.
"""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

from analyzers.server.commit import GroupCommitter
from tests.unit.test_group_commit import OtherWriterStore, _deploy


def test_a_retry_that_joins_its_first_attempts_commit_is_a_duplicate_and_nothing_is_lost(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    store = OtherWriterStore(path)
    other = sqlite3.connect(path, isolation_level=None)  # the other receiver process: its commit in flight

    async def scenario() -> list[Any]:
        committer = GroupCommitter(store)
        other.execute("BEGIN IMMEDIATE")
        first = asyncio.create_task(committer.record("ci", "e1", {"n": 1}, _deploy(1)))
        assert await asyncio.to_thread(store.waiting.wait, 10), "the writer never tried to begin"
        joined = [asyncio.create_task(committer.record("ci", "e1", {"n": 1}, _deploy(1))),  # the retry
                  asyncio.create_task(committer.record("ci", "e2", {"n": 2}, replace(_deploy(1), status="failed"))),
                  asyncio.create_task(committer.record("ci", "e1", {"n": 1}, _deploy(1)))]  # a second retry
        await asyncio.sleep(0.05)
        assert not any(t.done() for t in [first, *joined])  # nothing answered before its commit
        other.execute("COMMIT")
        out = await asyncio.gather(first, *joined, return_exceptions=True)
        committer.executor.shutdown(wait=True)
        committer.close()
        return out

    try:
        results = asyncio.run(scenario())
        assert not [r for r in results if isinstance(r, BaseException)], results
        assert store.batches == [4]  # the retries joined the first attempt's commit
        assert [new for _, new in results] == [True, False, True, False]
        assert all(d.deploy_id == "d1" for d, _ in results)
        assert store.event_ids() == {("ci", "e1"), ("ci", "e2")}  # each event once
        assert store.get_deploy("d1").status == "failed"  # the update queued behind the retry merged
    finally:
        other.close()
        store.close()
