"""JSON Schema of deploy-event/v1, as served in ``/openapi.json`` (fuzzers generate from it).

It mirrors the limits :func:`analyzers.events.schema.parse_event` enforces; the parser stays
the authority (the schema cannot say "a key twice" or "integers beyond 64 bits").
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from analyzers.events.schema import (
    _LONG,
    _MAX_EXPECTATIONS,
    _MAX_LABELS,
    _SHORT,
    _URL,
    EXPECTS,
    KINDS,
    SCHEMA_ID,
    STATUSES,
)


def openapi_schema(metric_keys: Collection[str] | None = None) -> dict[str, Any]:
    """JSON Schema of deploy-event/v1 (served in /openapi.json; fuzzers generate from it).

    With ``metric_keys`` the expectation metrics are an enum of the catalog keys.
    """
    metric: dict[str, Any] = {"type": "string", "description": "a metric catalog key, never PromQL"}
    if metric_keys is not None:
        metric["enum"] = sorted(metric_keys)
    printable = "^[^\\x00-\\x1f\\x7f]*$"
    text = {"type": "string", "maxLength": _SHORT, "pattern": printable}
    ts = {"type": "string", "format": "date-time",
          "description": "RFC 3339 with Z or an offset; Unix seconds or milliseconds (numbers) are accepted too"}
    return {
        "type": "object",
        "required": ["service", "environment", "version", "started_at"],
        "additionalProperties": False,
        "properties": {
            "schema": {"type": "string", "enum": [SCHEMA_ID]},
            "event_id": text, "deploy_id": text, "source": text,
            "kind": {"type": "string", "enum": list(KINDS)},
            "service": {**text, "minLength": 1, "pattern": "^[^\\x00-\\x20\\x7f][^\\x00-\\x1f\\x7f]*$"},
            "environment": {**text, "minLength": 1, "pattern": "^[^\\x00-\\x20\\x7f][^\\x00-\\x1f\\x7f]*$"},
            "version": {**text, "minLength": 1, "pattern": "^[^\\x00-\\x20\\x7f][^\\x00-\\x1f\\x7f]*$"},
            "started_at": ts, "finished_at": ts,
            "status": {"type": "string", "enum": list(STATUSES)},
            "commit_sha": text, "ref": text, "author": text,
            "url": {"type": "string", "format": "uri", "maxLength": _URL},
            "description": {"type": "string", "maxLength": _LONG,
                            "pattern": "^[^\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f]*$"},
            "labels": {"type": "object", "maxProperties": _MAX_LABELS,
                       "propertyNames": {"minLength": 1, "maxLength": 100, "pattern": printable},
                       "additionalProperties": {"type": "string", "maxLength": 500, "pattern": printable}},
            "expectations": {
                "type": "array", "maxItems": _MAX_EXPECTATIONS,
                "items": {
                    "type": "object", "required": ["metric", "expect"], "additionalProperties": False,
                    "properties": {
                        "metric": metric,
                        "expect": {"type": "string", "enum": list(EXPECTS)},
                        "min_effect": {"type": "number", "minimum": 0},
                    },
                },
            },
            "flag": {**text, "minLength": 1},
            "from": {"type": ["string", "number", "boolean"]},
            "to": {"type": ["string", "number", "boolean"]},
        },
        # flag/from/to belong to releases, and a release names its flag
        "if": {"properties": {"kind": {"const": "release"}}, "required": ["kind"]},
        "then": {"required": ["flag"]},
        "else": {"not": {"anyOf": [{"required": ["flag"]}, {"required": ["from"]}, {"required": ["to"]}]}},
    }
