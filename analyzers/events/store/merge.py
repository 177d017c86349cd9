"""The merge rule of the deploy store: how status updates of one deploy combine, one event at a
time (:func:`merge_deploys`) or a group commit's batch at once (:func:`merge_batch`), and the
deploys upsert both batch paths write (:func:`upsert_deploys_sql`)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from functools import lru_cache
from typing import Any

from analyzers.errors import StoreError
from analyzers.events.store.codec import deploy_text, to_us
from analyzers.model import Deploy

#: How far each status is along a deploy's life; updates never move a deploy to a lower rank.
STATUS_RANK: dict[str, int] = {"started": 0, "succeeded": 1, "failed": 1, "cancelled": 1, "rolled_back": 2}


def merge_deploys(old: Deploy, new: Deploy) -> Deploy:
    """Merge a status update ``new`` into the stored ``old`` record of the same deploy.

    - status moves forward only (:data:`STATUS_RANK`); a late ``started`` after
      ``succeeded`` keeps ``succeeded`` but still fills in fields the record lacks;
    - identity (service, environment, version) and ``received_at`` stay as first stored;
      ``started_at`` is the earliest reported;
    - other fields: the update's value when it has one; labels are merged; expectations
      are replaced only by a non-empty list;
    - ``signed`` is True only if every update was signed.
    """
    forward = STATUS_RANK.get(new.status, 0) >= STATUS_RANK.get(old.status, 0)

    def pick(name: str) -> Any:
        nv, ov = getattr(new, name), getattr(old, name)
        return nv if nv is not None else ov

    finished = old.finished_at
    if new.finished_at is not None and (forward or finished is None):
        finished = new.finished_at
    return replace(
        old,
        started_at=min(old.started_at, new.started_at),
        kind=new.kind if forward else old.kind,
        status=new.status if forward else old.status,
        finished_at=finished,
        commit_sha=pick("commit_sha"),
        ref=pick("ref"),
        author=pick("author"),
        url=pick("url"),
        description=pick("description"),
        labels={**old.labels, **new.labels},
        expectations=new.expectations or old.expectations,
        flag=pick("flag"),
        flag_from=pick("flag_from"),
        flag_to=pick("flag_to"),
        signed=old.signed and new.signed,
        received_at=old.received_at or new.received_at,
        updated_at=new.updated_at or old.updated_at,
    )


#: One event to record: (source, event_id, payload, deploy).
EventItem = tuple[str, str, dict[str, Any], Deploy]


def merge_batch(items: Sequence[EventItem], stamps: Sequence[int], inserted: set[tuple[str, str]],
                first_seen: dict[tuple[str, str], str], state: dict[str, Deploy],
                ) -> tuple[list[tuple[Deploy, bool] | StoreError], list[tuple[Any, ...]]]:
    """A batch's outcome from what its INSERT did, as one :meth:`SQLStore._record` per item in order.

    ``inserted``: the events the INSERT stored; ``first_seen``: the deploy id each stored
    event (of this batch or an earlier one) was first stored under; ``state``: the stored
    deploys of the batch and of ``first_seen``, updated here. Returns one result per item and
    one row per changed deploy, in the column order of :func:`upsert_deploys_sql`.
    """
    out: list[tuple[Deploy, bool] | StoreError] = []
    changed: dict[str, int] = {}  # deploy_id -> stamp of its last new event
    new_keys: set[tuple[str, str]] = set()
    for (source, event_id, _, deploy), stamp in zip(items, stamps, strict=True):
        key = (source, event_id)
        if key in inserted and key not in new_keys:
            new_keys.add(key)
            old = state.get(deploy.deploy_id)
            merged = deploy if old is None else merge_deploys(old, deploy)
            state[deploy.deploy_id] = merged
            changed[deploy.deploy_id] = stamp
            out.append((merged, True))
        else:
            stored = state.get(first_seen[key]) if key in first_seen else None
            out.append((stored or deploy, False))
    rows: list[tuple[Any, ...]] = []
    for deploy_id, stamp in changed.items():
        m = state[deploy_id]
        rows.append((m.deploy_id, m.service, m.environment, to_us(m.started_at), m.status,
                     to_us(m.updated_at) if m.updated_at else stamp, deploy_text(m)))
    return out, rows


def upsert_deploys_sql(n: int) -> str:
    """Insert or update ``n`` deploy rows (``?`` placeholders, one row of seven per deploy: the
    rows :func:`merge_batch` returns, flattened)."""
    return ("INSERT INTO deploys (deploy_id, service, environment, started_us, status, updated_us, data) "
            "VALUES " + ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * n)
            + " ON CONFLICT (deploy_id) DO UPDATE SET "
            "started_us = excluded.started_us, status = excluded.status, "
            "updated_us = excluded.updated_us, data = excluded.data")


def insert_events(items: Sequence[EventItem], payloads: Sequence[str]) -> tuple[str, list[Any], list[int]]:
    """The batch's multi-row events INSERT (``?`` placeholders; ``RETURNING`` the events it
    stored, ``DO NOTHING`` for those stored before), its flattened parameters, and each event's
    ``received_us`` stamp (taken in order inside the write transaction: the same clock as
    ``to_us(datetime.now(UTC))``, floored)."""
    rows: list[Any] = []
    stamps: list[int] = []
    for (source, event_id, _, deploy), text in zip(items, payloads, strict=True):
        stamps.append(time.time_ns() // 1000)
        rows += (source, event_id, deploy.deploy_id, stamps[-1], text)
    return insert_events_sql(len(items)), rows, stamps


@lru_cache(maxsize=256)
def insert_events_sql(n: int) -> str:
    """The multi-row events INSERT of :func:`insert_events` for ``n`` events (``?`` placeholders),
    built once per batch size (every group commit of both stores asks for it)."""
    return ("INSERT INTO events (source, event_id, deploy_id, received_us, payload) VALUES "
            + ", ".join(["(?, ?, ?, ?, ?)"] * n)
            + " ON CONFLICT (source, event_id) DO NOTHING RETURNING source, event_id")


@lru_cache(maxsize=256)
def new_rows_sql(table: str, n: int) -> str:
    """A plain INSERT of ``n`` rows into ``events`` (the five values of :func:`insert_events`)
    or ``deploys`` (the seven of :func:`upsert_deploys_sql`), without ``ON CONFLICT``: a row
    stored before raises a unique violation (PostgreSQL's one-message group commit)."""
    columns = _COLUMNS[table]
    return (f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
            + ", ".join(["(" + ", ".join("?" * len(columns)) + ")"] * n))


_COLUMNS = {"events": ("source", "event_id", "deploy_id", "received_us", "payload"),
            "deploys": ("deploy_id", "service", "environment", "started_us", "status", "updated_us", "data")}
