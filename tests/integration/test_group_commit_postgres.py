"""The receiver's group commit on a real PostgreSQL store, whose writer thread chains its commits.

On PostgreSQL (``chain_commits``) the writer thread takes the events queued during a commit as
the next batch itself, before the answers of the first go out. What a sender relies on stays:
its answer comes after the commit that holds its event, a backlog commits as one group, a
failed group answers each of its callers with the error and the next group still commits.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from analyzers.errors import StoreUnavailable
from analyzers.events.store.postgres import PostgresStore
from analyzers.model import Deploy
from analyzers.server.commit import GroupCommitter
from tests.fixtures.held_store import HeldCommits
from tests.fixtures.postgres import new_database

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def _deploy(i: int) -> Deploy:
    return Deploy(deploy_id=f"d{i}", service="checkout", environment="production", version=f"v{i}", started_at=T0,
                  status="succeeded", received_at=T0, updated_at=T0)


class HeldPostgres(HeldCommits, PostgresStore):
    """A real PostgreSQL store whose first commit waits for ``release`` (a stalled WAL flush); it
    records the size of every batch and, per batch, whether the batch before it was answered."""


def test_a_chained_writer_commits_the_backlog_as_one_group_before_the_stalled_batch_is_answered(
        postgres_url: str) -> None:
    store = HeldPostgres(new_database(postgres_url))
    seen: dict[str, Any] = {}

    async def scenario() -> list[tuple[Deploy, bool]]:
        committer = GroupCommitter(store)

        async def first() -> tuple[Deploy, bool]:
            result = await committer.record("ci", "e0", {"n": 0}, _deploy(0))
            seen["pending"] = len(committer.pending)  # the writer took the backlog before answering
            return result

        head = asyncio.create_task(first())
        while not store.batches:
            await asyncio.sleep(0.001)
        queued = [asyncio.create_task(committer.record("ci", f"e{i}", {"n": i}, _deploy(i))) for i in range(1, 21)]
        await asyncio.sleep(0.05)
        assert store.batches == [1] and not any(t.done() for t in [head, *queued])  # nothing answered mid-stall
        store.release.set()
        # The event loop is held up (a slow callback): the chained writer still moves on to the
        # backlog without it; the answers wait for the loop.
        deadline = time.monotonic() + 10
        while store.batches != [1, 20] and time.monotonic() < deadline:
            time.sleep(0.005)
        seen["batches while the loop was held"] = list(store.batches)
        results = await asyncio.gather(head, *queued)
        committer.executor.shutdown(wait=True)
        return results

    try:
        results = asyncio.run(scenario())
        assert store.batches == [1, 20]
        assert seen == {"pending": 0, "batches while the loop was held": [1, 20]}
        assert [(d.deploy_id, new) for d, new in results] == [(f"d{i}", True) for i in range(21)]
        assert store.count_events() == 21
    finally:
        store.close()


def test_a_chained_writer_answers_a_failed_group_with_the_error_and_commits_the_next(postgres_url: str) -> None:
    store = HeldPostgres(new_database(postgres_url))

    async def scenario() -> list[Any]:
        committer = GroupCommitter(store)
        head = asyncio.create_task(committer.record("ci", "e0", {}, _deploy(0)))
        while not store.batches:
            await asyncio.sleep(0.001)
        queued = [asyncio.create_task(committer.record("ci", f"e{i}", {}, _deploy(i))) for i in range(1, 4)]
        await asyncio.sleep(0.02)
        store.fail_next = True  # the held batch fails when released; the queued one commits after it
        store.release.set()
        out = await asyncio.gather(head, *queued, return_exceptions=True)
        later = await committer.record("ci", "e9", {}, _deploy(9))
        committer.executor.shutdown(wait=True)
        return [*out, later]

    try:
        results = asyncio.run(scenario())
        assert isinstance(results[0], StoreUnavailable)
        assert [r[1] for r in results[1:]] == [True, True, True, True]
        assert store.event_ids() == {("ci", f"e{i}") for i in (1, 2, 3, 9)}
        assert store.batches == [1, 3, 1]
    finally:
        store.close()
