"""The deploy store: the project's only data of its own, so it must neither lose nor duplicate.

::

    store = open_store("sqlite:///data/deploys.db")        # or "postgresql://user@host:5432/db"
    deploy, new = store.record_event(source, event_id, payload, deploy)
    store.list_deploys(service="checkout", since=...)        # newest first
    store.save_verdict(verdict); store.latest_verdict(deploy.deploy_id)

Guarantees (both back ends):

- ``record_event`` is one transaction: the event row (unique on ``(source, event_id)``,
  kept forever) and the merged deploy row commit together or not at all. A duplicate
  returns ``(stored deploy, False)`` and changes nothing.
- One deploy row per ``deploy_id``: status updates merge (:func:`merge_deploys`) and a
  late ``started`` never moves a finished deploy backwards.
- Verdicts are appended (``verdict_history``); ``latest_verdict`` is the newest.
- Locked, full or unreachable database -> :class:`~analyzers.errors.StoreUnavailable`
  (retry later; nothing acknowledged was lost). The store reconnects by itself.
"""

from __future__ import annotations

from analyzers.events.store.base import SQLStore, Store
from analyzers.events.store.merge import STATUS_RANK, merge_deploys


def open_store(url: str, **options: object) -> Store:
    """Open (and migrate) the store at ``url``: ``sqlite:///relative.db``, ``sqlite:////abs.db``,
    ``postgresql://user:pass@host:port/db`` (``postgres://`` too).

    Options go to the back end (``busy_timeout_s`` for SQLite, ``connect_timeout_s`` for both).
    """
    from analyzers.errors import ConfigError

    if url.startswith("sqlite:"):
        from analyzers.events.store.sqlite import SQLiteStore

        return SQLiteStore.from_url(url, **options)  # type: ignore[arg-type]
    if url.startswith(("postgresql:", "postgres:")):
        from analyzers.events.store.postgres import PostgresStore

        return PostgresStore(url, **options)  # type: ignore[arg-type]
    raise ConfigError(
        f"unknown store URL scheme in {url.split('://')[0]!r}: use sqlite:///path/to/deploys.db "
        "or postgresql://user@host:5432/dbname"
    )


def sqlite_path(url: str) -> str | None:
    """The file behind a ``sqlite:///`` URL (None for other stores)."""
    return url[len("sqlite:///"):] if url.startswith("sqlite:///") else None


__all__ = ["Store", "SQLStore", "open_store", "merge_deploys", "sqlite_path", "STATUS_RANK"]
