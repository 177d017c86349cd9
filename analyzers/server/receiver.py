"""The webhook receiver: signed deploy events in, committed to the store, then 2xx.

Run it::

    DEPLOY_WEBHOOK_SECRET=whsec_... python -m analyzers serve
    python -m analyzers.server.receiver --port 8000 --store sqlite:///data/deploys.db

The receiver is four modules, one job each:

- :mod:`analyzers.server.settings`: one frozen :class:`Settings`, built from flags,
  environment and config and validated once;
- :mod:`analyzers.server.app`: the FastAPI app factory and its routes (the endpoint list);
- :mod:`analyzers.server.ingest`: body budget, signature check, parsing, group commit;
- :mod:`analyzers.server.run`: uvicorn, connection timeouts, worker processes, shutdown.

This module keeps the names callers used before the split.
"""

from __future__ import annotations

from analyzers.server.app import create_app
from analyzers.server.ingest import HTTPProblem, read_body
from analyzers.server.run import app_from_env, app_from_settings, cli, serve
from analyzers.server.settings import DEFAULT_MAX_BODY, Settings

if __name__ == "__main__":
    cli()

__all__ = ["DEFAULT_MAX_BODY", "HTTPProblem", "Settings", "app_from_env", "app_from_settings", "cli", "create_app",
           "read_body", "serve"]
