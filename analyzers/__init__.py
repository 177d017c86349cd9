"""Deploy verification from Prometheus metrics.

Public API (stable)::

    from analyzers import verify_series, changepoints
    result = verify_series(series, deploy_at, expect="decrease")
    result.to_dict()["status"]  # "shifted" | "unchanged" | "inconclusive"

The statistics core does no IO; the client (``analyzers.prometheus.client``) and store
(``analyzers.events.store``) layers talk to the outside.
"""

from __future__ import annotations

from typing import Any

__all__ = ["verify_series", "changepoints", "__version__"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:  # lazy: importing the package stays cheap
    if name in ("verify_series", "changepoints"):
        from analyzers import stats

        return getattr(stats, name)
    raise AttributeError(name)
