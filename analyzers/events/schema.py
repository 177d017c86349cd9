"""deploy-event/v1: parse and validate one deploy (or release) event.

The generic event every source is mapped to (architecture.md, "Deploy event, generic
form")::

    {"service": "checkout", "environment": "production", "version": "v42",
     "started_at": "2026-11-27T10:00:00Z", "status": "succeeded",
     "expectations": [{"metric": "latency_p99", "expect": "decrease"}]}

Input comes from the internet, so parsing is strict and every refusal is an
:class:`~analyzers.errors.EventError` whose ``field`` names the offending field and
whose ``status_code`` is 400 (the body is not acceptable JSON: invalid UTF-8, ``NaN``,
NUL, lone surrogates, nesting deeper than :data:`MAX_DEPTH`, integers beyond 64 bits, a key
twice in one object)
or 422 (valid JSON, wrong content: missing field, bad enum, unknown metric key).

Timestamps: RFC 3339 strings with ``Z`` or an offset, or Unix time as a number (or a
numeric string) in seconds or milliseconds; all become aware UTC datetimes. A string
without an offset, or a number that is neither plausible seconds nor milliseconds, is
refused as ambiguous rather than guessed.

Text fields are stored as given (never rendered as HTML here; renderers escape them).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson

from analyzers.errors import EventError
from analyzers.events.strictjson import (  # noqa: F401 - loads_strict, check_tree, MAX_*: re-exported
    CONTROL_NO_WS,
    MAX_DEPTH,
    MAX_INT,
    check_tree,
    loads_strict,
    printable,
)
from analyzers.model import Deploy, Expectation

_T = TypeVar("_T")

SCHEMA_ID = "deploy-event/v1"
STATUSES = ("started", "succeeded", "failed", "cancelled", "rolled_back")
KINDS = ("deploy", "release")
EXPECTS = ("increase", "decrease", "unchanged")

#: Plausible Unix seconds (2001-09-09 .. 2286-11-20) and milliseconds for the same span.
_SECONDS = (1e9, 1e10)
_MILLIS = (1e12, 1e13)

#: Plausible deploy times for RFC 3339 strings (the numeric ranges above span the same).
_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
_LATEST = datetime(2287, 1, 1, tzinfo=UTC)

_SHORT = 200  # service, environment, version, ids, flag keys
_LONG = 4000  # description
_URL = 2000
_MAX_LABELS = 64
_MAX_EXPECTATIONS = 32

_FIELDS = {
    "schema", "event_id", "deploy_id", "source", "kind", "service", "environment", "version",
    "started_at", "finished_at", "status", "commit_sha", "ref", "author", "url", "description",
    "labels", "expectations", "flag", "from", "to",
}
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Compiled once: a pattern given as a string is looked up in re's cache on every call.
_NUMERIC = re.compile(r"\s*-?\d+(\.\d+)?\s*")
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?([Zz]|[+-]\d{2}:?\d{2})")
_NO_ZONE = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?")
_FRACTION = re.compile(r"\.(\d+)")
_HTTP_URL = re.compile(r"(?i)^https?://[^\s]+$")


@dataclass(frozen=True)
class DeployEventIn:
    """A validated deploy-event/v1 (timestamps aware UTC, strings checked)."""

    service: str
    environment: str
    version: str
    started_at: datetime
    source: str = "generic"
    kind: str = "deploy"
    status: str = "succeeded"
    event_id: str | None = None
    deploy_id: str | None = None
    finished_at: datetime | None = None
    commit_sha: str | None = None
    ref: str | None = None
    author: str | None = None
    url: str | None = None
    description: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    expectations: tuple[Expectation, ...] = ()
    flag: str | None = None
    flag_from: str | None = None
    flag_to: str | None = None

    @property
    def effective_deploy_id(self) -> str:
        """``deploy_id`` if given, else derived from source, service, environment, version, start.

        The derived id is stable across status updates that repeat those five fields, so a
        sender that omits ``deploy_id`` still gets one record per deploy.
        """
        if self.deploy_id:
            return self.deploy_id
        return derive_deploy_id(self.source, self.service, self.environment, self.version, self.started_at)

    def to_deploy(self, signed: bool, *, received_at: datetime | None = None) -> Deploy:
        """The stored shape; ``signed`` False marks events accepted without a signature."""
        now = received_at or datetime.now(UTC)
        return frozen(
            Deploy,
            deploy_id=self.effective_deploy_id,
            service=self.service,
            environment=self.environment,
            version=self.version,
            started_at=self.started_at,
            kind=self.kind,  # type: ignore[arg-type]
            status=self.status,
            finished_at=self.finished_at,
            source=self.source,
            commit_sha=self.commit_sha,
            ref=self.ref,
            author=self.author,
            url=self.url,
            description=self.description,
            labels=dict(self.labels),
            expectations=self.expectations,
            flag=self.flag,
            flag_from=self.flag_from,
            flag_to=self.flag_to,
            signed=signed,
            received_at=now,
            updated_at=now,
        )


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def frozen(cls: type[_T], **values: Any) -> _T:
    """``cls(**values)`` for a frozen dataclass given *every* field, without its ``__init__``.

    A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__`` (about
    50 calls per event for :class:`DeployEventIn` and :class:`~analyzers.model.Deploy`);
    filling the instance's dict gives the same object (equal, same hash, still frozen). A class
    with a ``__post_init__`` goes through ``__init__`` (its checks run); a missing or unknown field
    raises TypeError.
    """
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(cls.__dataclass_fields__)  # type: ignore[attr-defined]
    # the names in field order (how the callers here pass them): one tuple comparison of interned
    # strings, where comparing the two key views costs about 4,700 instructions
    if tuple(values) != names and values.keys() != cls.__dataclass_fields__.keys():  # type: ignore[attr-defined]
        fields = cls.__dataclass_fields__  # type: ignore[attr-defined]
        raise TypeError(f"{cls.__name__}: give every field, exactly: {sorted(set(values) ^ set(fields))}")
    if hasattr(cls, "__post_init__"):
        return cls(**values)
    obj = object.__new__(cls)
    obj.__dict__.update(values)
    return obj


def utc_isoformat(t: datetime) -> str:
    """``t.astimezone(UTC).isoformat()``: orjson writes an aware UTC time the same way, cheaper."""
    if t.tzinfo is UTC:
        return orjson.dumps(t)[1:-1].decode("ascii")
    return t.astimezone(UTC).isoformat()


def derive_deploy_id(source: str, service: str, environment: str, version: str, started_at: datetime) -> str:
    """A short stable id (``d_`` + 20 hex) from the fields that identify one deploy."""
    key = "\x1f".join((source, service, environment, version, utc_isoformat(started_at)))
    return "d_" + hashlib.sha256(key.encode()).hexdigest()[:20]


def body_event_id(body: bytes) -> str:
    """Fallback idempotency key for unsigned events without ``event_id``: hash of the body."""
    return "sha256:" + hashlib.sha256(body).hexdigest()


# --------------------------------------------------------------------------- timestamps


def parse_timestamp(value: Any, name: str) -> datetime:
    """RFC 3339 (offset required) or Unix seconds/milliseconds -> aware UTC datetime."""
    if isinstance(value, bool):
        raise _bad(name, "must be an RFC 3339 timestamp or Unix time, got a boolean")
    if isinstance(value, str) and _NUMERIC.fullmatch(value):
        value = float(value)
    if isinstance(value, int | float):
        x = float(value)
        if _SECONDS[0] <= x < _SECONDS[1]:
            secs = x
        elif _MILLIS[0] <= x < _MILLIS[1]:
            secs = x / 1000.0
        else:
            raise _bad(name, f"Unix time {value} is neither plausible seconds nor milliseconds; "
                             "send RFC 3339 such as 2026-11-27T10:00:00Z")
        return datetime.fromtimestamp(secs, tz=UTC)
    if not isinstance(value, str):
        raise _bad(name, f"must be an RFC 3339 timestamp string, got {type(value).__name__}")
    s = value.strip()
    if not _RFC3339.fullmatch(s):
        if _NO_ZONE.fullmatch(s):
            raise _bad(name, f"{value!r} has no time zone: add Z or an offset such as +02:00")
        raise _bad(name, f"{value[:60]!r} is not an RFC 3339 timestamp (e.g. 2026-11-27T10:00:00Z)")
    frac = _FRACTION.search(s)
    if frac and len(frac.group(1)) > 6:  # fromisoformat takes at most microseconds
        s = s.replace(frac.group(0), "." + frac.group(1)[:6], 1)
    if s[-1] in "Zz":
        s = s[:-1] + "+00:00"
    try:
        ts = datetime.fromisoformat(s).astimezone(UTC)
    except ValueError as exc:
        raise _bad(name, f"{value!r} is not a valid date/time: {exc}") from None
    except OverflowError:
        ts = None
    if ts is None or not _EARLIEST <= ts < _LATEST:
        raise _bad(name, f"{value!r} is outside the plausible range {_EARLIEST.year}..{_LATEST.year - 1}")
    return ts


# --------------------------------------------------------------------------- validation


def _bad(name: str, message: str) -> EventError:
    return EventError(f"{name}: {message}", field=name, status_code=422)


def _text(d: Mapping[str, Any], name: str, *, required: bool = False, limit: int = _SHORT,
          multiline: bool = False, path: str | None = None) -> str | None:
    path = path or name
    value = d.get(name)
    if value is None:
        if required:
            raise _bad(path, "is required")
        return None
    if type(value) is str:  # the usual case first (this runs ~14 times per event)
        s = value
    elif isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise _bad(path, f"must be a string, got {type(value).__name__}")
    else:
        s = str(value)
    if required and not s.strip():
        raise _bad(path, "must not be empty")
    if len(s) > limit:
        raise _bad(path, f"is {len(s)} characters long; the limit is {limit}")
    if (_CONTROL if multiline else CONTROL_NO_WS).search(s):
        raise _bad(path, "contains control characters")
    return s


def _choice(d: Mapping[str, Any], name: str, allowed: tuple[str, ...], default: str) -> str:
    value = d.get(name, default)
    if value is None:
        return default
    if value not in allowed:
        raise _bad(name, f"must be one of {', '.join(allowed)}; got {str(value)[:40]!r}")
    return str(value)


def _labels(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _bad("labels", "must be an object of string keys to string values")
    if len(value) > _MAX_LABELS:
        raise _bad("labels", f"has {len(value)} entries; the limit is {_MAX_LABELS}")
    out: dict[str, str] = {}
    for k, v in value.items():
        if not k or len(k) > 100 or CONTROL_NO_WS.search(k):
            raise _bad(f"labels.{printable(k)}", "label names must be 1-100 printable characters")
        if isinstance(v, bool) or not isinstance(v, str | int | float):
            raise _bad(f"labels.{k}", f"must be a string, got {type(v).__name__}")
        out[k] = _text(value, k, limit=500, path=f"labels.{k}") or ""
    return out


def _expectations(value: Any, metric_keys: Collection[str] | None) -> tuple[Expectation, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _bad("expectations", "must be a list of {metric, expect, min_effect?}")
    if len(value) > _MAX_EXPECTATIONS:
        raise _bad("expectations", f"has {len(value)} entries; the limit is {_MAX_EXPECTATIONS}")
    out: list[Expectation] = []
    seen: set[str] = set()
    unknown: list[str] = []
    for i, item in enumerate(value):
        p = f"expectations[{i}]"
        if not isinstance(item, dict):
            raise _bad(p, "must be an object {metric, expect, min_effect?}")
        extra = set(item) - {"metric", "expect", "min_effect"}
        if extra:
            raise _bad(f"{p}.{sorted(extra)[0]}", "unknown field; allowed: metric, expect, min_effect")
        metric = _text(item, "metric", required=True, path=f"{p}.metric")
        assert metric is not None
        if metric in seen:
            raise _bad(f"{p}.metric", f"metric {metric!r} is listed twice")
        seen.add(metric)
        if metric_keys is not None and metric not in metric_keys:
            unknown.append(metric)
        expect = item.get("expect")
        if expect not in EXPECTS:
            raise _bad(f"{p}.expect", f"must be one of {', '.join(EXPECTS)}; got {str(expect)[:40]!r}")
        min_effect = item.get("min_effect")
        if min_effect is not None:
            if isinstance(min_effect, bool) or not isinstance(min_effect, int | float) or min_effect < 0:
                raise _bad(f"{p}.min_effect", "must be a non-negative number (in the metric's unit)")
            min_effect = float(min_effect)
        out.append(Expectation(metric=metric, expect=expect, min_effect=min_effect))
    if unknown:
        known = ", ".join(sorted(metric_keys or ())) or "(none configured)"
        raise EventError(
            f"expectations: unknown metric key(s) {', '.join(repr(u) for u in unknown)}; metrics are "
            f"catalog keys, never PromQL. Known keys: {known}",
            field="expectations", status_code=422,
        )
    return tuple(out)


def _url(d: Mapping[str, Any]) -> str | None:
    u = _text(d, "url", limit=_URL)
    if u is not None and not _HTTP_URL.match(u):
        raise _bad("url", "must be an http(s) URL (it is only shown as a link, never fetched)")
    return u


def _flag_state(d: Mapping[str, Any], name: str) -> str | None:
    v = d.get(name)
    if v is None:
        return None
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, int | float):
        return f"{v:g}"
    return _text(d, name)


def parse_event(
    body: bytes | Mapping[str, Any],
    *,
    source: str = "generic",
    metric_keys: Collection[str] | None = None,
    checked: bool = False,
) -> DeployEventIn:
    """Validate one deploy-event/v1 from raw bytes (strict JSON) or an already-parsed dict.

    ``source`` is used when the event has no ``source`` field. ``metric_keys`` is the
    metric catalog: when given, expectation metrics outside it are refused (422).
    ``checked``: the dict came from :func:`loads_strict` unchanged (its text was checked
    there; the receiver's hot path skips the second walk). Raises :class:`EventError`
    with ``field`` and ``status_code`` (400/422) set.
    """
    data = loads_strict(body) if isinstance(body, bytes | bytearray) else body
    if isinstance(body, Mapping) and not checked:
        check_tree(dict(body))
    if not isinstance(data, Mapping):
        raise EventError("body must be a JSON object (deploy-event/v1)", status_code=422)
    unknown = () if _FIELDS.issuperset(data) else sorted(set(data) - _FIELDS)
    if unknown:
        raise _bad(printable(unknown[0]), f"unknown field; deploy-event/v1 fields are: {', '.join(sorted(_FIELDS))}")
    schema = data.get("schema")
    if schema is not None and schema != SCHEMA_ID:
        raise _bad("schema", f"must be {SCHEMA_ID!r} (or omitted)")

    kind = _choice(data, "kind", KINDS, "deploy")
    status = _choice(data, "status", STATUSES, "succeeded")
    started_at = data.get("started_at")
    service = _text(data, "service", required=True)
    environment = _text(data, "environment", required=True)
    version = _text(data, "version", required=True)
    if started_at is None:
        raise _bad("started_at", "is required (RFC 3339, e.g. 2026-11-27T10:00:00Z)")
    started = parse_timestamp(started_at, "started_at")
    finished = parse_timestamp(data["finished_at"], "finished_at") if data.get("finished_at") is not None else None
    if finished is not None and finished < started:
        raise _bad("finished_at", "is before started_at")
    if finished is not None and status == "started":
        raise _bad("finished_at", "given for status 'started'; send it with the final status")

    # Optional fields are looked at only when present (an absent one is None, as each helper
    # would return): a usual event carries five or six of the twenty fields.
    flag = _text(data, "flag") if "flag" in data else None
    flag_from = _flag_state(data, "from") if "from" in data else None
    flag_to = _flag_state(data, "to") if "to" in data else None
    if kind == "release" and not flag:
        raise _bad("flag", "is required for kind 'release' (the feature flag key)")
    if kind == "deploy" and (flag or flag_from or flag_to):
        raise _bad("flag", "flag/from/to belong to kind 'release'; set kind to 'release' or drop them")

    src = (_text(data, "source") if "source" in data else None) or source
    assert service is not None and environment is not None and version is not None
    return frozen(
        DeployEventIn,
        service=service.strip(),
        environment=environment.strip(),
        version=version.strip(),
        started_at=started,
        source=src,
        kind=kind,
        status=status,
        event_id=_text(data, "event_id") if "event_id" in data else None,
        deploy_id=_text(data, "deploy_id") if "deploy_id" in data else None,
        finished_at=finished,
        commit_sha=_text(data, "commit_sha") if "commit_sha" in data else None,
        ref=_text(data, "ref", limit=500) if "ref" in data else None,
        author=_text(data, "author") if "author" in data else None,
        url=_url(data) if "url" in data else None,
        description=_text(data, "description", limit=_LONG, multiline=True) if "description" in data else None,
        labels=_labels(data.get("labels")) if "labels" in data else {},
        expectations=_expectations(data.get("expectations"), metric_keys) if "expectations" in data else (),
        flag=flag,
        flag_from=flag_from,
        flag_to=flag_to,
    )
