"""How rows are written: timestamps as integer microseconds since the epoch (UTC), deploys and
event bodies as ASCII JSON (both back ends)."""

from __future__ import annotations

import json
import operator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from analyzers.model import Deploy

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_us(ts: datetime) -> int:
    """Aware datetime -> integer microseconds since the epoch (exact, no float rounding)."""
    return (ts.astimezone(UTC) - _EPOCH) // timedelta(microseconds=1)


def from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=int(us))


# ensure_ascii: the stored text is plain ASCII whatever the input held. One encoder for the
# process: json.dumps with options builds a new one per call (a few us on every event, twice).
_dumps = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), sort_keys=True).encode


_DEPLOY_FIELDS = tuple(Deploy.__dataclass_fields__)
_TIME_FIELDS = ("started_at", "finished_at", "received_at", "updated_at")
_deploy_values = operator.attrgetter(*_DEPLOY_FIELDS)


def deploy_dict(d: Deploy) -> dict[str, Any]:
    """``Deploy.to_dict()`` without ``dataclasses.asdict``'s deep copies (hot path: every event, twice)."""
    out = dict(zip(_DEPLOY_FIELDS, _deploy_values(d), strict=True))
    for k in _TIME_FIELDS:
        v = out[k]
        if v is not None:  # already UTC (as every parsed time is): no conversion needed
            out[k] = (v if v.tzinfo is UTC else v.astimezone(UTC)).isoformat().replace("+00:00", "Z")
    out["labels"] = dict(d.labels)
    out["expectations"] = [e.to_dict() for e in d.expectations] if d.expectations else []
    return out


def plain_deploy(d: Deploy) -> bool:
    """Whether orjson writes ``d`` as exactly :func:`deploy_dict`'s JSON: fields in order, times as
    ``...Z``. True when every time is in UTC (``deploy_dict`` converts others) and no expectation
    is declared (``Expectation.to_dict`` leaves out an absent ``min_effect``); then no float
    is in it either. ``tests/unit/test_ingest_answer.py`` holds the two equal."""
    return not d.expectations and all(t is None or t.tzinfo is UTC
                                      for t in (d.started_at, d.finished_at, d.received_at, d.updated_at))


def deploy_text(d: Deploy) -> str:
    """The stored JSON of a deploy (ASCII): orjson on the dataclass when :func:`plain_deploy`,
    else the standard encoder on :func:`deploy_dict`. Readers parse it; key order is not part
    of it (orjson keeps field order, the fallback sorts)."""
    if plain_deploy(d):
        try:
            out = orjson.dumps(d, option=orjson.OPT_UTC_Z)
        except TypeError:  # a label of another type than str: the standard encoder decides
            pass
        else:
            if out.isascii():  # else the escapes of ensure_ascii, as always
                return out.decode("ascii")
    return _dumps(deploy_dict(d))


def payload_text(payload: Any) -> str:
    """The stored JSON of an event's body (ASCII, keys sorted): orjson when its output is
    certainly what the standard encoder means, else the standard encoder.

    orjson writes NaN and infinities as ``null`` and non-ASCII text as UTF-8, so output with
    a ``null`` token or a byte over 127 (and anything orjson refuses: non-string keys, integers
    over 64 bits, lone surrogates) goes through the standard encoder instead. Floats may be
    spelled differently (``1e-05`` and ``1e-5``) but read back equal.
    """
    try:
        out = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return _dumps(payload)
    if out.find(b"null") >= 0 or not out.isascii():  # find: ``in`` formats a TypeError first (strictjson)
        return _dumps(payload)
    return out.decode("ascii")


__all__ = ["to_us", "from_us", "deploy_dict", "plain_deploy", "deploy_text", "payload_text"]
