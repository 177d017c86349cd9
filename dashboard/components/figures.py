"""Built figures (Plotly figures, the percentile chart's JSON payload) cached by content, so a rerun or another viewer does not rebuild them.

Building a figure is most of a warm rerun's server CPU: Plotly validates every property and
array it is given (0.1-0.3 s for the Latency page's three charts, more on a loaded machine),
although the data came from the cache and nothing changed. :func:`cached` keys a finished
figure on everything drawn in it (data by content, range, step, zone, deploy markers and their
verdict states) and keeps the object itself (``st.cache_resource``: no pickling, which would
validate it all again on the way out).

A cached figure is shared between sessions: callers build it completely inside ``build``
(markers included) and never change it afterwards; ``st.plotly_chart`` only reads it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar, cast

import numpy as np
import pandas as pd
import streamlit as st

from analyzers.model import Deploy

F = TypeVar("F")

#: Seconds a built figure is kept: as long as the Prometheus answers it is drawn from.
FIGURE_TTL_S = 60
#: Figures kept at most (a figure of the Latency page holds 50-500 kB).
MAX_FIGURES = 64


def content_key(*parts: Any) -> str:
    """A digest of ``parts``: pandas objects and arrays by their values and index, mappings and
    sequences item by item, anything else by ``repr`` (plain values, frozen dataclasses)."""
    h = hashlib.blake2b(digest_size=20)

    def feed(x: Any) -> None:
        if isinstance(x, (pd.DataFrame, pd.Series)):
            h.update(b"P")
            h.update(repr(list(x.columns) if isinstance(x, pd.DataFrame) else x.name).encode())
            h.update(pd.util.hash_pandas_object(x, index=True).to_numpy().tobytes())
        elif isinstance(x, np.ndarray):
            h.update(b"A" + str(x.dtype).encode() + repr(x.shape).encode())
            h.update(np.ascontiguousarray(x).tobytes())
        elif isinstance(x, Mapping):
            h.update(b"M")
            for k, v in x.items():
                feed(k)
                feed(v)
        elif isinstance(x, (list, tuple)):
            h.update(b"L%d" % len(x))
            for v in x:
                feed(v)
        else:
            h.update(b"R" + repr(x).encode())
        h.update(b";")

    for part in parts:
        feed(part)
    return h.hexdigest()


def markers_key(deploys: Sequence[Deploy], verdicts: Mapping[str, Any]) -> tuple[Any, ...]:
    """What the deploy markers draw: each deploy (its hover text's fields) and its verdict state."""
    states = {d.deploy_id: (verdicts[d.deploy_id].overall if d.deploy_id in verdicts else "unverified")
              for d in deploys}
    return tuple((repr(d), states[d.deploy_id]) for d in deploys)


@st.cache_resource(ttl=FIGURE_TTL_S, max_entries=MAX_FIGURES, show_spinner=False)
def _built(key: str, _build: Callable[[], Any]) -> Any:
    return _build()


def cached(build: Callable[[], F], *parts: Any) -> F:
    """``build()``, or the figure it built before for the same ``parts`` (see :func:`content_key`).
    A figure is a Plotly ``go.Figure`` or the percentile chart's payload dict.

    ``parts`` must name everything the figure shows; the figure returned must not be changed.
    """
    return cast(F, _built(content_key(*parts), build))
