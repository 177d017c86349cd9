"""The receiver's group committer on a real PostgreSQL: a second writer connection lets a batch
commit while the previous one is still waiting (double buffering), and with one writer the
next batch waits for it; every event is answered only after its own commit."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest

from analyzers.events.store import open_store
from analyzers.model import Deploy
from analyzers.server.ingest import GroupCommitter
from tests.fixtures.postgres import new_database

pytestmark = pytest.mark.postgres

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def deploy(deploy_id: str) -> Deploy:
    return Deploy(deploy_id=deploy_id, service="checkout", environment="production", version="v1",
                  started_at=T0, status="succeeded", received_at=T0, updated_at=T0)


@pytest.fixture
def pg(postgres_url: str) -> Iterator[tuple[str, psycopg.Connection]]:
    """A fresh database and a connection holding the per-deploy lock of deploy "held" (the
    store's batches lock each deploy they write, so a batch with "held" waits for it)."""
    url = new_database(postgres_url)
    with psycopg.connect(url, autocommit=True) as blocker:
        blocker.execute("SELECT pg_advisory_lock(%s)", (zlib.crc32(b"held"),))
        yield url, blocker


def _unlock(blocker: psycopg.Connection) -> None:
    blocker.execute("SELECT pg_advisory_unlock(%s)", (zlib.crc32(b"held"),))


def test_second_writer_commits_a_batch_while_the_first_waits(pg: tuple[str, psycopg.Connection]) -> None:
    url, blocker = pg
    store = open_store(url)
    committer = GroupCommitter(store)
    committer.add_writer(open_store(url))

    async def scenario() -> None:
        first = asyncio.ensure_future(committer.record("ci", "e-held", {}, deploy("held")))
        await asyncio.sleep(0.3)
        assert not first.done()  # its batch waits for the lock
        stored, new = await asyncio.wait_for(committer.record("ci", "e-free", {}, deploy("free")), 30)
        assert new and stored.deploy_id == "free"
        assert not first.done()  # answered after its own commit only
        assert store.count_events() == 1  # what was answered is committed; the waiting batch is not
        _unlock(blocker)
        stored, new = await asyncio.wait_for(first, 30)
        assert new and stored.deploy_id == "held"

    try:
        asyncio.run(scenario())
        assert store.count_events() == 2
        assert committer.overlapped == 1 and committer.commits == 2
    finally:
        committer.close()
        store.close()


def test_with_one_writer_the_next_batch_waits_for_the_previous_commit(pg: tuple[str, psycopg.Connection]) -> None:
    url, blocker = pg
    store = open_store(url)
    committer = GroupCommitter(store)

    async def scenario() -> None:
        first = asyncio.ensure_future(committer.record("ci", "e-held", {}, deploy("held")))
        await asyncio.sleep(0.3)
        second = asyncio.ensure_future(committer.record("ci", "e-free", {}, deploy("free")))
        await asyncio.sleep(0.5)
        assert not first.done() and not second.done()  # one writer, busy: the newcomer queues
        _unlock(blocker)
        assert (await asyncio.wait_for(first, 30))[1] and (await asyncio.wait_for(second, 30))[1]

    try:
        asyncio.run(scenario())
        assert store.count_events() == 2 and committer.overlapped == 0
    finally:
        committer.close()
        store.close()
