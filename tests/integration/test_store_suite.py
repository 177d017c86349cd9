"""One store suite, run against SQLite (temp file) and a real PostgreSQL (fixture)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from analyzers.errors import StoreUnavailable
from analyzers.events.store import Store, open_store
from analyzers.model import Deploy, DeployVerdict, Expectation, MetricVerdict
from tests.fixtures.postgres import new_database

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'deploys.db'}"
    return new_database(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = open_store(store_url)
    yield s
    s.close()


def deploy(deploy_id: str = "d1", *, status: str = "succeeded", at: datetime = T0, **kw: object) -> Deploy:
    base: dict[str, Any] = dict(deploy_id=deploy_id, service="checkout", environment="production",
                                   version="v1", started_at=at, status=status, received_at=at, updated_at=at)
    base.update(kw)
    return Deploy(**base)  # type: ignore[arg-type]


def verdict(deploy_id: str, overall: str, minute: int) -> DeployVerdict:
    m = MetricVerdict(metric="error_ratio", role="guard", expect="unchanged", outcome="ok", reason="flat")
    return DeployVerdict(deploy_id=deploy_id, overall=overall, reason=f"r{minute}", metrics=(m,),  # type: ignore[arg-type]
                         checked_at=T0 + timedelta(minutes=minute))


def test_new_event_is_stored_and_read_back_whole(store: Store) -> None:
    d = deploy(expectations=(Expectation("latency_p99", "decrease", 0.05),), labels={"team": "pay"},
               description="<script>alert(1)</script> \u00e9\U0001F680", commit_sha="abc")
    stored, new = store.record_event("generic", "e1", {"service": "checkout"}, d)
    assert new is True
    assert store.get_deploy("d1") == stored == d
    assert store.event_payload("generic", "e1") == {"service": "checkout"}
    assert store.event_payload("generic", "nope") is None


def test_duplicate_event_changes_nothing_and_returns_the_stored_deploy(store: Store) -> None:
    store.record_event("generic", "e1", {}, deploy(version="v1"))
    again, new = store.record_event("generic", "e1", {}, deploy(version="v1", commit_sha="changed"))
    assert new is False
    assert again.commit_sha is None
    assert store.count_events() == 1
    assert store.get_deploy("d1").commit_sha is None  # type: ignore[union-attr]


def test_same_event_id_from_another_source_is_a_different_event(store: Store) -> None:
    store.record_event("generic", "e1", {}, deploy("d1"))
    _, new = store.record_event("github", "e1", {}, deploy("d2"))
    assert new is True
    assert store.count_events() == 2


def test_status_updates_merge_into_one_deploy(store: Store) -> None:
    store.record_event("ci", "a", {}, deploy(status="started", commit_sha="abc"))
    merged, _ = store.record_event("ci", "b", {}, deploy(status="succeeded", finished_at=T0 + timedelta(minutes=5)))
    assert merged.status == "succeeded"
    assert merged.commit_sha == "abc"
    assert merged.finished_at == T0 + timedelta(minutes=5)
    assert len(store.list_deploys()) == 1


def test_late_started_update_does_not_move_a_finished_deploy_backwards(store: Store) -> None:
    store.record_event("ci", "b", {}, deploy(status="succeeded", finished_at=T0 + timedelta(minutes=5)))
    merged, new = store.record_event("ci", "a", {}, deploy(status="started", author="ana"))
    assert new is True
    assert merged.status == "succeeded"
    assert merged.finished_at == T0 + timedelta(minutes=5)
    assert merged.author == "ana"  # the late update still fills what was missing
    assert store.get_deploy("d1").status == "succeeded"  # type: ignore[union-attr]


def test_rollback_after_success_is_forward(store: Store) -> None:
    store.record_event("ci", "a", {}, deploy(status="succeeded"))
    merged, _ = store.record_event("ci", "b", {}, deploy(status="rolled_back"))
    assert merged.status == "rolled_back"
    merged, _ = store.record_event("ci", "c", {}, deploy(status="succeeded"))
    assert merged.status == "rolled_back"


def test_an_unsigned_update_marks_the_deploy_unsigned(store: Store) -> None:
    store.record_event("ci", "a", {}, deploy(status="started"))
    merged, _ = store.record_event("ci", "b", {}, deploy(status="succeeded", signed=False))
    assert merged.signed is False


def test_list_filters_and_orders_newest_first(store: Store) -> None:
    for i, (svc, env) in enumerate([("checkout", "production"), ("search", "production"),
                                    ("checkout", "staging"), ("checkout", "production")]):
        store.record_event("ci", f"e{i}", {}, deploy(f"d{i}", service=svc, environment=env,
                                                     at=T0 + timedelta(hours=i)))
    assert [d.deploy_id for d in store.list_deploys()] == ["d3", "d2", "d1", "d0"]
    assert [d.deploy_id for d in store.list_deploys(service="checkout", environment="production")] == ["d3", "d0"]
    window = store.list_deploys(since=T0 + timedelta(hours=1), until=T0 + timedelta(hours=3))
    assert [d.deploy_id for d in window] == ["d2", "d1"]  # since inclusive, until exclusive
    assert [d.deploy_id for d in store.list_deploys(limit=1)] == ["d3"]
    assert store.list_deploys(service="nope") == []


def test_verdicts_keep_history_and_latest_is_newest(store: Store) -> None:
    store.record_event("ci", "a", {}, deploy("d1"))
    store.record_event("ci", "b", {}, deploy("d2"))
    store.save_verdict(verdict("d1", "inconclusive", 1))
    store.save_verdict(verdict("d1", "fail", 2))
    store.save_verdict(verdict("d2", "pass", 3))
    assert store.latest_verdict("d1").overall == "fail"  # type: ignore[union-attr]
    assert [v.overall for v in store.verdict_history("d1")] == ["inconclusive", "fail"]
    latest = store.latest_verdicts(["d1", "d2", "missing"])
    assert {k: v.overall for k, v in latest.items()} == {"d1": "fail", "d2": "pass"}
    assert store.latest_verdict("missing") is None
    assert store.verdict_history("d1")[1] == verdict("d1", "fail", 2)


def _canary(deploy_id: str, overall: str, minute: int, reason: str = "canary") -> DeployVerdict:
    m = MetricVerdict(metric="error_ratio", role="canary", expect="no worse than baseline",  # type: ignore[arg-type]
                      outcome="regressed" if overall == "fail" else "ok", reason=reason, result={"intervals": 10})
    return DeployVerdict(deploy_id=deploy_id, overall=overall, reason=reason, metrics=(m,),  # type: ignore[arg-type]
                         checked_at=T0 + timedelta(minutes=minute), check_kind="canary")


def test_latest_verdict_is_the_combined_answer_whichever_check_was_stored_last(store: Store) -> None:
    for d in ("d1", "d2", "d3", "d4"):
        store.record_event("ci", d, {}, deploy(d))
    # the worker saves the canary just before the before/after verdict: a failing canary still fails
    store.save_verdict(_canary("d1", "fail", 1))
    store.save_verdict(verdict("d1", "pass", 1))
    # the gate stores a passing canary after a failed before/after check: still a fail
    store.save_verdict(verdict("d2", "fail", 1))
    store.save_verdict(_canary("d2", "pass", 2))
    store.save_verdict(_canary("d3", "inconclusive", 1))  # a canary alone stands
    # event text that looks like the key does not make a before/after verdict a canary one
    store.save_verdict(_canary("d4", "fail", 1))
    store.save_verdict(DeployVerdict(deploy_id="d4", overall="pass", reason='"check_kind":"canary"', metrics=(),
                                     checked_at=T0 + timedelta(minutes=2)))
    latest = store.latest_verdicts(["d1", "d2", "d3", "d4"])
    assert {k: v.overall for k, v in latest.items()} == {"d1": "fail", "d2": "fail", "d3": "inconclusive", "d4": "fail"}
    assert latest["d1"].check_kind == "manual" and latest["d1"].reason.startswith("canary")  # the canary decided
    assert [m.role for m in latest["d1"].metrics] == ["guard", "canary"]  # both checks' evidence
    assert latest["d1"].checked_at == T0 + timedelta(minutes=1)
    assert latest["d2"].reason.startswith("Before/after: ")
    assert store.latest_verdict("d2") == latest["d2"]
    assert store.verdict_history("d2")[-1].check_kind == "canary"  # the history itself is untouched


def test_data_survives_reopening(store_url: str) -> None:
    s = open_store(store_url)
    s.record_event("ci", "a", {}, deploy())
    s.save_verdict(verdict("d1", "pass", 1))
    s.close()
    s2 = open_store(store_url)  # migrations are idempotent
    try:
        assert s2.get_deploy("d1") is not None
        assert s2.latest_verdict("d1").overall == "pass"  # type: ignore[union-attr]
        _, new = s2.record_event("ci", "a", {}, deploy())
        assert new is False
    finally:
        s2.close()


def test_concurrent_writers_store_each_event_once_and_merge(store_url: str) -> None:
    """Four store instances (as four receivers would) race on the same 40 events."""
    stores = [open_store(store_url) for _ in range(4)]
    results: list[bool] = []
    lock = threading.Lock()

    def work(s: Store) -> None:
        for i in range(40):
            status = "started" if i % 2 == 0 else "succeeded"
            _, new = s.record_event("ci", f"e{i}", {}, deploy(f"d{i // 2}", status=status))
            with lock:
                results.append(new)

    threads = [threading.Thread(target=work, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert sum(results) == 40
        assert stores[0].count_events() == 40
        deploys = stores[0].list_deploys()
        assert len(deploys) == 20
        assert {d.status for d in deploys} == {"succeeded"}
    finally:
        for s in stores:
            s.close()


def test_concurrent_group_commits_over_shared_deploys_merge_without_deadlock(store_url: str) -> None:
    """Four stores commit batches that each touch several of the same deploys, listed in
    different orders: the per-deploy locks are taken in one order (no deadlock), every event
    is stored once, and every deploy ends at its most advanced status."""
    stores = [open_store(store_url) for _ in range(4)]
    new_flags: list[bool] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(k: int, s: Store) -> None:
        try:
            for round_ in range(10):
                items = []
                for j in range(6):
                    d = (j * 7 + k * 3 + round_) % 8  # each batch spans 6 of 8 deploys, order varies by store
                    status = "started" if (round_ + j) % 2 else "succeeded"
                    items.append(("ci", f"r{round_}-d{d}-{status}", {}, deploy(f"d{d}", status=status)))
                for result in s.record_events(items[::-1] if k % 2 else items):
                    assert not isinstance(result, BaseException), result
                    with lock:
                        new_flags.append(result[1])
        except BaseException as exc:  # surfaced below with the thread's store
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k, s)) for k, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    try:
        assert not errors, errors
        assert not any(t.is_alive() for t in threads)
        distinct = {(r, (j * 7 + k * 3 + r) % 8, "started" if (r + j) % 2 else "succeeded")
                    for k in range(4) for r in range(10) for j in range(6)}
        assert sum(new_flags) == len(distinct) == stores[0].count_events()
        deploys = {d.deploy_id: d for d in stores[0].list_deploys()}
        assert len(deploys) == 8
        assert {d.status for d in deploys.values()} == {"succeeded"}  # a later 'started' never moved one back
    finally:
        for s in stores:
            s.close()


def test_sqlite_locked_database_is_unavailable_then_recovers(tmp_path) -> None:
    path = tmp_path / "locked.db"
    store = open_store(f"sqlite:///{path}", busy_timeout_s=0.2)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreUnavailable, match="retry later"):
            store.record_event("ci", "a", {}, deploy())
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    _, new = store.record_event("ci", "a", {}, deploy())  # no restart needed
    assert new is True
    assert store.integrity_check() == "ok"  # type: ignore[attr-defined]
    store.close()


def test_sqlite_writer_gets_the_lock_within_milliseconds_of_its_release(tmp_path) -> None:
    """Two receiver processes take turns on the write lock: a waiter must not oversleep it.

    SQLite's default busy handler sleeps 1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100 ms in
    turn: a lock released after 200 ms is noticed 28 ms late at best (cumulative 228 ms).
    The store polls every 0.1-1 ms instead, so the write follows the release closely.
    """
    import threading
    import time

    path = tmp_path / "turns.db"
    store = open_store(f"sqlite:///{path}", busy_timeout_s=5.0)
    lags = []
    try:
        for i in range(3):
            blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            blocker.execute("BEGIN IMMEDIATE")
            released: list[float] = []

            def release(conn: sqlite3.Connection = blocker, out: list[float] = released) -> None:
                time.sleep(0.2)
                conn.execute("ROLLBACK")
                out.append(time.perf_counter())

            t = threading.Thread(target=release)
            t.start()
            _, new = store.record_event("ci", f"turn-{i}", {}, deploy(f"d{i}"))
            done = time.perf_counter()
            t.join()
            blocker.close()
            assert new is True
            lags.append(done - released[0])
        assert min(lags) < 0.015, f"writer noticed the released lock {min(lags) * 1000:.1f} ms late (best of 3)"
        assert store.count_events() == 3
    finally:
        store.close()


def test_sqlite_background_checkpoints_copy_the_wal_into_the_database(tmp_path) -> None:
    """With checkpoints in a background thread, commits no longer checkpoint (until a safety
    limit), yet the WAL still reaches the database file: the data is there, integrity ok."""
    import os
    import time

    from analyzers.events.store.sqlite import SQLiteStore

    sizes = {}
    for background in (False, True):
        path = tmp_path / f"ckpt-{background}.db"
        store = SQLiteStore(str(path))
        store._autocheckpoint_pages = 100000  # no checkpoint on the commit path in either run
        store._drop()
        if background:
            store.start_background_checkpoints(interval_s=0.05, safety_pages=100000)
        start = os.path.getsize(path)
        for i in range(300):
            store.record_event("ci", f"e{i}", {"pad": "x" * 500}, deploy(f"d{i}"))
        time.sleep(0.5)
        sizes[background] = os.path.getsize(path) - start
        assert store.count_events() == 300 and store.integrity_check() == "ok"
        store.close()
    assert sizes[False] == 0, "without a checkpoint the database file does not grow"
    assert sizes[True] > 300 * 500, "the background thread copied the WAL into the database"


@pytest.mark.postgres
def test_postgres_dropped_connection_is_unavailable_then_reconnects(postgres_url: str) -> None:
    import psycopg

    url = new_database(postgres_url)
    store = open_store(url)
    store.ping()
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    with pytest.raises(StoreUnavailable):
        store.record_event("ci", "a", {}, deploy())
    _, new = store.record_event("ci", "a", {}, deploy())
    assert new is True
    store.close()


@pytest.mark.postgres
def test_postgres_group_commit_round_trips(postgres_url: str, tmp_path) -> None:
    """Each round trip is a wait on the network and, in the receiver, a GIL hand-off back to
    the writer thread: a group commit of new events of new deploys (or one such event) is one
    message to the server; one that updates a deploy this store wrote lately, or holds an
    event stored before, is two or three; a wrong guess (a deploy another receiver wrote)
    costs one more and keeps nothing of the guess. The answers are those of the six-statement
    path. Counted with libpq's protocol trace (messages that end in a wait: a simple Query, or
    Sync after an extended-protocol statement)."""
    from psycopg import pq

    url = new_database(postgres_url)
    store = open_store(url)
    trace = tmp_path / "trace.txt"

    def round_trips(items: list[tuple[str, str, dict[str, Any], Deploy]], on: Any = None) -> tuple[int, list[Any]]:
        on = on or store
        conn = on._conn
        with open(trace, "w") as f:
            conn.pgconn.trace(f.fileno())
            conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
            try:
                results = on.record_events(items)
            finally:
                conn.pgconn.untrace()
        sent = [line.split("\t") for line in trace.read_text().splitlines() if line.startswith("F\t")]
        return sum(1 for m in sent if m[2] in ("Query", "Sync")), results

    other = open_store(url)  # a second receiver: it has not written d0-d9
    try:
        store.ping()
        other.ping()
        n, results = round_trips([("ci", f"e{i}", {"i": i}, deploy(f"d{i % 3}", status="started")) for i in range(6)])
        assert n == 1 and [r[1] for r in results] == [True] * 6  # type: ignore[index]
        assert store.get_deploy("d0").status == "started"  # type: ignore[union-attr]
        assert store.event_payload("ci", "e5") == {"i": 5}
        n, results = round_trips([("ci", "e9", {}, deploy("d9"))])
        assert n == 1 and results[0][1] is True  # type: ignore[index]
        # d1 was written by this store: no guess, the two-message path (three: e1 was stored before)
        n, results = round_trips([("ci", "e1", {}, deploy("d7")), ("ci", "e10", {}, deploy("d1"))])
        assert n == 3
        assert [(r[0].deploy_id, r[1]) for r in results] == [("d1", False), ("d1", True)]  # type: ignore[index]
        assert store.get_deploy("d1").status == "succeeded"  # type: ignore[union-attr]
        assert store.get_deploy("d7") is None  # a duplicate creates nothing
        assert store.guesses_missed == 0  # type: ignore[attr-defined]

        # The other receiver guesses d2 is new: the unique violation rolls the guess back whole
        # (e11 and d8 are not kept twice), then the two-message path merges into the stored d2.
        n, results = round_trips([("ci", "e11", {"x": 1}, deploy("d8")),
                                  ("ci", "e12", {}, deploy("d2", status="succeeded", version="v2"))], other)
        assert n == 3 and other.guesses_missed == 1  # type: ignore[attr-defined]
        assert [(r[0].deploy_id, r[0].status, r[1]) for r in results] == [  # type: ignore[index]
            ("d8", "succeeded", True), ("d2", "succeeded", True)]
        assert results[1][0].version == "v1"  # identity stays as first stored (the merge rule)
        assert store.get_deploy("d2").status == "succeeded"  # type: ignore[union-attr]
        # After a missed guess the next batch is not guessed (then guessing resumes)
        n, _ = round_trips([("ci", "e13", {}, deploy("d13"))], other)
        assert n == 2
        n, _ = round_trips([("ci", "e14", {}, deploy("d14"))], other)
        assert n == 1
        # An event stored before under another deploy: the guess fails on the events INSERT,
        # the answer is a duplicate under the deploy it was first stored under, d15 not created
        n, results = round_trips([("ci", "e9", {}, deploy("d15"))], other)
        assert n == 4 and other.guesses_missed == 2  # type: ignore[attr-defined]
        assert (results[0][0].deploy_id, results[0][1]) == ("d9", False)  # type: ignore[index]
        assert store.get_deploy("d15") is None
        assert store.count_events() == 12
    finally:
        store.close()
        other.close()


@pytest.mark.postgres
def test_postgres_down_is_unavailable_with_a_clear_message() -> None:
    from tests.fixtures.receiver import free_port

    with pytest.raises(StoreUnavailable, match="unavailable"):
        open_store(f"postgresql://postgres@127.0.0.1:{free_port()}/postgres", connect_timeout_s=1)


def test_sqlite_full_database_is_unavailable_keeps_what_was_acknowledged_and_recovers(tmp_path) -> None:
    """SQLITE_FULL, produced for real by capping the file size on the store's connection."""
    store = open_store(f"sqlite:///{tmp_path / 'full.db'}")
    store.record_event("ci", "first", {}, deploy("d0"))
    pages = store._conn.execute("PRAGMA page_count").fetchone()[0]  # type: ignore[attr-defined]
    store._conn.execute(f"PRAGMA max_page_count = {pages}")  # type: ignore[attr-defined]
    with pytest.raises(StoreUnavailable, match="full"):
        for i in range(1, 200):
            store.record_event("ci", f"e{i}", {"pad": "x" * 2000}, deploy(f"d{i}", description="y" * 2000))
    acknowledged = store.count_events()
    _, new = store.record_event("ci", "after", {}, deploy("after"))  # reconnected: the cap is gone
    assert new is True
    assert store.count_events() == acknowledged + 1
    assert store.get_deploy("d0") is not None
    assert store.integrity_check() == "ok"  # type: ignore[attr-defined]
    store.close()


def test_group_commit_isolates_a_bad_item_and_sees_duplicates_within_the_batch(store: Store) -> None:
    from analyzers.errors import StoreError

    items: list[tuple[str, str, dict[str, Any], Deploy]] = [
        ("ci", "a", {}, deploy("d1", status="started")),
        ("ci", "bad", {}, deploy("d2", service="lone \ud800 surrogate")),
        ("ci", "a", {}, deploy("d1", status="started")),  # the same delivery twice in one batch
        ("ci", "b", {}, deploy("d1", status="succeeded")),
    ]
    results = store.record_events(items)  # type: ignore[attr-defined]
    assert isinstance(results[1], StoreError)
    assert [r[1] for r in (results[0], results[2], results[3]) if isinstance(r, tuple)] == [True, False, True]
    assert store.get_deploy("d1").status == "succeeded"  # type: ignore[union-attr]
    assert store.get_deploy("d2") is None
    assert store.count_events() == 2


def test_group_commit_guessed_new_then_stored_before(store: Store) -> None:
    """A batch is first written as if every event and deploy were new (plain INSERTs); when
    a deploy was stored before, its update is merged as usual, and when an event was, it is a
    duplicate under the deploy it was first stored under and nothing else of the guess stays."""
    assert [r[1] for r in store.record_events([  # type: ignore[attr-defined, index]
        ("ci", "e1", {"n": 1}, deploy("d1", status="started", commit_sha="abc")),
        ("ci", "e2", {"n": 2}, deploy("d2", status="started"))])] == [True, True]
    results = store.record_events([  # type: ignore[attr-defined]
        ("ci", "e3", {"n": 3}, deploy("d3")),
        ("ci", "e4", {"n": 4}, deploy("d1", status="succeeded", version="v9", at=T0 - timedelta(minutes=5)))])
    assert [(r[0].deploy_id, r[0].status, r[1]) for r in results] == [  # type: ignore[index]
        ("d3", "succeeded", True), ("d1", "succeeded", True)]
    d1 = store.get_deploy("d1")
    assert d1 is not None and (d1.version, d1.commit_sha, d1.started_at) == ("v1", "abc", T0 - timedelta(minutes=5))
    results = store.record_events([("ci", "e5", {"n": 5}, deploy("d5")),  # type: ignore[attr-defined]
                                   ("ci", "e2", {"n": 2}, deploy("d6"))])
    assert [(r[0].deploy_id, r[1]) for r in results] == [("d5", True), ("d2", False)]  # type: ignore[index]
    assert store.get_deploy("d6") is None and store.get_deploy("d2").status == "started"  # type: ignore[union-attr]
    assert store.event_payload("ci", "e5") == {"n": 5}
    assert store.count_events() == 5


def test_group_commit_gives_the_same_answers_and_rows_as_one_event_at_a_time(store_url: str, tmp_path) -> None:
    """A batch is written in a few multi-row statements: it must behave exactly like the
    events recorded one by one (merges in order, duplicates within the batch and from an
    earlier batch, out-of-order status updates). Random batches, seeded."""
    import random

    rng = random.Random(5)
    statuses = ["started", "succeeded", "failed", "rolled_back", "started"]
    batched = open_store(store_url)
    single = open_store(f"sqlite:///{tmp_path / 'one-by-one.db'}")
    try:
        for b in range(12):
            items: list[tuple[str, str, dict[str, Any], Deploy]] = []
            for _ in range(rng.randint(2, 12)):
                n = rng.randint(0, 15)  # small id spaces: many duplicates and updates of one deploy
                at = T0 + timedelta(minutes=rng.randint(0, 30))
                items.append((rng.choice(["ci", "github"]), f"e{n}", {"n": n, "b": b},
                              deploy(f"d{rng.randint(0, 5)}", status=rng.choice(statuses), at=at,
                                     commit_sha=rng.choice([None, f"sha{n}"]), labels={f"k{n % 3}": str(b)})))
            got = batched.record_events(items)  # type: ignore[attr-defined]
            want = [single.record_event(*item) for item in items]
            assert got == want, f"batch {b}"
        assert batched.count_events() == single.count_events()
        assert batched.list_deploys() == single.list_deploys()
        assert batched.event_ids() == single.event_ids()  # type: ignore[attr-defined]
    finally:
        batched.close()
        single.close()


def test_unstorable_single_event_is_a_store_error_and_stores_nothing(store: Store) -> None:
    from analyzers.errors import StoreError

    with pytest.raises(StoreError, match="cannot be stored"):
        store.record_event("ci", "bad", {}, deploy("d9", service="lone \ud800"))
    assert store.count_events() == 0 and store.get_deploy("d9") is None


def test_services_lists_each_deployed_service_once(store: Store) -> None:
    assert store.services() == []
    store.record_event("generic", "e1", {}, deploy("d1", service="search"))
    store.record_event("generic", "e2", {}, deploy("d2", service="checkout"))
    store.record_event("generic", "e3", {}, deploy("d3", service="search", version="v2"))
    assert store.services() == ["checkout", "search"]


#: Text that would break a message built by hand: quotes, backslashes, format and placeholder
#: syntax of both drivers, statement separators, comments, array braces, non-ASCII.
HOSTILE = ["it's", "back\\slash\\'", "%s %(x)s %% $1 ?", "'); DROP TABLE events; --", "E'\\x00'", "{a,\"b\"}",
           "\u00e9\U0001F680 \u2028", "/* c */", ""]


def test_group_commit_stores_hostile_text_exactly_in_every_value(store: Store) -> None:
    """PostgreSQL's group commit quotes every value into a message template on the client: the
    events, ids and deploys come back byte for byte, in a batch, alone, and as duplicates (the
    third message's quoting), and a value that cannot be sent (a lone surrogate) refuses its item only."""
    from analyzers.errors import StoreError

    def item(i: int, text: str) -> tuple[str, str, dict[str, Any], Deploy]:
        return (f"src {text}", f"ev{i} {text}", {"text": text, "k " + text: [text]},
                deploy(f"d{i} {text}", service=f"svc {text}", version=text, labels={text or "k": text},
                       description=text))

    batch = [item(i, text) for i, text in enumerate(HOSTILE)]
    results = store.record_events(batch)  # type: ignore[attr-defined]
    assert [r[1] for r in results] == [True] * len(batch)  # type: ignore[index]
    alone = store.record_events([item(99, HOSTILE[2])])  # type: ignore[attr-defined]
    assert alone[0][1] is True  # type: ignore[index]
    again = store.record_events([batch[0], batch[3], ("ci", "bad", {}, deploy("dbad", service="lone \ud800"))])  # type: ignore[attr-defined]
    assert [(r[0], r[1]) for r in again[:2]] == [(results[0][0], False), (results[3][0], False)]  # type: ignore[index]
    assert isinstance(again[2], StoreError) and store.get_deploy("dbad") is None
    for (source, event_id, payload, d), (stored, _) in zip(batch, results, strict=True):  # type: ignore[misc]
        assert stored == d
        assert store.get_deploy(d.deploy_id) == d
        assert store.event_payload(source, event_id) == payload
    assert store.count_events() == len(batch) + 1
    if store.url.startswith("postgresql"):  # PostgreSQL's text holds no NUL: refused while quoting, alone
        nul = store.record_events([("ci", "n\x00ul", {}, deploy("dnul")), item(100, "after")])  # type: ignore[attr-defined]
        assert isinstance(nul[0], StoreError) and nul[1][1] is True  # type: ignore[index]
        assert store.get_deploy("dnul") is None and store.count_events() == len(batch) + 2
