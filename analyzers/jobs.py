"""Pending verification checks and delivery records, kept in the deploy store.

The scheduler's state lives in the same database as the deploys (SQLite or PostgreSQL), so it
survives restarts and is shared by several workers. Its tables (checks, leases, deliveries,
marks) are part of the store's schema and migrations, with a public API on the store:
:mod:`analyzers.events.store.scheduling` describes them, including how a lease guarantees
that two workers never verify the same deploy at once. :class:`JobStore` is the scheduler's
view of that API.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .events.store.base import SQLStore
from .events.store.scheduling import Check


class JobStore:
    """Scheduler operations on a SQL deploy store (each one transaction of that store)."""

    def __init__(self, store: object) -> None:
        if not isinstance(store, SQLStore):
            raise TypeError("JobStore needs a SQL store from analyzers.events.store.open_store")
        self.store = store

    # -- scheduling -----------------------------------------------------------------
    def schedule(self, deploy_id: str, kind: str, due_at: datetime, *, reschedule: bool = False,
                 cause_us: int | None = None) -> bool:
        """Add a pending check; an existing (deploy, kind) is kept unless ``reschedule``: then a
        check that already ran before ``cause_us`` (the arrival of the event that asks for it) is
        made pending again at ``due_at``. Returns True if something changed."""
        return self.store.schedule_check(deploy_id, kind, due_at, reschedule=reschedule, cause_us=cause_us)

    def claim(self, worker: str, now: datetime, lease_s: float = 300.0) -> Check | None:
        """Take the earliest due check whose deploy no other worker holds; None if nothing is due."""
        return self.store.claim_check(worker, now, lease_s)

    def complete(self, check: Check, worker: str, now: datetime, *, error: str | None = None,
                 retry_at: datetime | None = None) -> None:
        """Mark a claimed check done (or pending again at ``retry_at``) and release the deploy."""
        self.store.complete_check(check, worker, now, error=error, retry_at=retry_at)

    def checks(self, deploy_id: str | None = None) -> list[Check]:
        return self.store.list_checks(deploy_id)

    # -- watermark for discovering new/updated deploys ------------------------------
    def get_mark(self, name: str) -> int:
        return self.store.get_mark(name)

    def set_mark(self, name: str, value: int) -> None:
        self.store.set_mark(name, value)

    def updated_deploys(self, since_us: int, limit: int = 1000) -> list[tuple[str, int]]:
        """(deploy_id, updated_us) of deploys changed after ``since_us``, oldest change first."""
        return self.store.updated_deploys(since_us, limit)

    def deploys_with_events_since(self, since_us: int) -> list[tuple[str, int]]:
        """(deploy_id, latest received_us) of deploys with an event received after ``since_us``."""
        return self.store.deploys_with_events_since(since_us)

    # -- deliveries -----------------------------------------------------------------
    def save_delivery(self, deploy_id: str, at: datetime, target: str, data: dict[str, Any]) -> None:
        self.store.save_delivery(deploy_id, at, target, data)

    def deliveries(self, deploy_id: str) -> list[dict[str, Any]]:
        return self.store.deliveries(deploy_id)


__all__ = ["Check", "JobStore"]
