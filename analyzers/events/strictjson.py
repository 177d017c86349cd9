"""Strict JSON for request bodies: what deploy-event/v1 accepts before any field is read.

Refused with :class:`~analyzers.errors.EventError` (400), each naming the problem: invalid
UTF-8, ``NaN``/``Infinity``, NUL, lone surrogates, nesting deeper than :data:`MAX_DEPTH`,
integers beyond 64 bits, numbers that overflow a float, a key twice in one object. A UTF-8
byte order mark is skipped. The usual event (one flat object, no escapes) is decoded by
orjson (:func:`loads_flat`), everything else by Python's decoder with strict hooks
(:func:`loads_full`); both give the same result (tested on hostile bodies).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

from analyzers.errors import EventError

MAX_DEPTH = 16
MAX_INT = 2**63 - 1
#: Control characters other than whitespace (refused in single-line fields and keys; escaped by :func:`printable`).
CONTROL_NO_WS = re.compile(r"[\x00-\x1f\x7f]")


def _reject_constant(name: str) -> Any:
    raise EventError(f"JSON literal {name} is not allowed: send numbers as finite decimals", status_code=400)


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > 19 or abs(int(text)) > MAX_INT:
        raise EventError(f"integer {text[:30]}... is larger than 64 bits", status_code=400)
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise EventError(f"number {text[:30]} overflows a 64-bit float", status_code=400)
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise EventError(f"key {printable(dup)!r} appears twice in one object: send it once",
                         field=printable(dup), status_code=400)
    return out


#: What ``json.loads(text, parse_constant=..., ...)`` builds on every call, built once.
_STRICT_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_int=_parse_int, parse_float=_parse_float,
                                   object_pairs_hook=_unique_keys)


#: A key's closing quote (or, inside a body without backslashes, a string starting with ':').
_KEY_END = re.compile(rb'"[ \t\n\r]*:')
_QUOTE_SPACE = re.compile(rb'"[ \t\n\r]')


def loads_flat(body: bytes) -> dict[str, Any] | None:
    """The usual event body, decoded by orjson; None for anything else (then :func:`loads_strict`
    decodes it the strict way, with its error messages).

    Taken only when the result is exactly what the strict decoder gives: one flat JSON object
    (a single ``{``, no ``[``) without any backslash, whose values are strings, booleans,
    nulls or integers within 64 bits (no floats: no rounding question), and no key twice.
    Without backslashes every quote delimits a string, so each key's closing quote is
    followed by a colon: the colons after a quote are at least as many as the keys written,
    and exactly as many as the decoded object's keys only when no key came twice. orjson
    refuses what the strict decoder refuses here (invalid UTF-8, surrogates, control
    characters, NaN, trailing data) and then the strict decoder runs.
    """
    # ``bytes.find``, not ``in``: ``in`` first tries the operand as an integer and formats (then
    # drops) a TypeError each time (about 2,000 instructions per test, seven tests per event)
    if body.find(b"\\") >= 0 or body.find(b"[") >= 0 or body.count(b"{") != 1:
        return None
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if type(data) is not dict:
        return None
    # the colons right after a quote; with a quote followed by spacing anywhere, count them all
    spaced = _QUOTE_SPACE.search(body) is not None
    if (len(_KEY_END.findall(body)) if spaced else body.count(b'":')) != len(data):
        return None
    for value in data.values():
        kind = type(value)
        if kind is int:
            if -MAX_INT <= value <= MAX_INT:
                continue
            return None
        if kind is not str and kind is not bool and value is not None:
            return None
    return data


def loads_strict(body: bytes) -> Any:
    """Decode a request body as strict UTF-8 JSON; raises EventError (400) naming the problem."""
    data = loads_flat(body)
    if data is not None:  # flat and escape-free: nothing for the tree walk below to find
        return data
    return loads_full(body)


def loads_full(body: bytes) -> Any:
    """:func:`loads_strict` by Python's JSON decoder with strict hooks, for every body."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EventError(
            f"body is not valid UTF-8 (byte {exc.start}): send JSON encoded as UTF-8", status_code=400
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        data = _STRICT_DECODER.decode(text)
    except EventError:
        raise
    except RecursionError:
        raise EventError(f"JSON nested too deeply (limit {MAX_DEPTH} levels)", status_code=400) from None
    except json.JSONDecodeError as exc:
        raise EventError(
            f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", status_code=400
        ) from None
    except ValueError as exc:  # int() digit limits and similar
        raise EventError(f"body is not acceptable JSON: {exc}", status_code=400) from None
    # Without any \u escape, valid UTF-8 JSON holds no NUL and no lone surrogate, and with
    # at most MAX_DEPTH brackets it cannot nest deeper (numbers were checked while parsing):
    # the tree walk, a tenth of an event's CPU, can only find something otherwise.
    if b"\\u" in body or body.count(b"{") + body.count(b"[") > MAX_DEPTH:
        check_tree(data)
    return data


def check_tree(data: Any, path: str = "", depth: int = 0) -> None:
    """Refuse deep nesting, NUL and lone surrogates anywhere (keys too), naming the field."""
    if depth > MAX_DEPTH:
        raise EventError(f"JSON nested too deeply at {path or 'top level'} (limit {MAX_DEPTH})",
                         field=path or None, status_code=400)
    if isinstance(data, str):
        _check_text(data, path)
    elif isinstance(data, dict):
        for k, v in data.items():
            sub = f"{path}.{k}" if path else str(k)
            _check_text(k, sub, key=True)
            check_tree(v, sub, depth + 1)
    elif isinstance(data, list):
        for i, v in enumerate(data):
            check_tree(v, f"{path}[{i}]", depth + 1)
    elif isinstance(data, float) and not math.isfinite(data):
        raise EventError(f"{path}: NaN and Infinity are not allowed", field=path or None, status_code=400)
    elif isinstance(data, int) and not isinstance(data, bool) and abs(data) > MAX_INT:
        raise EventError(f"{path}: integer larger than 64 bits", field=path or None, status_code=400)


def _check_text(s: str, path: str, *, key: bool = False) -> None:
    what = "key" if key else "value"
    if "\x00" in s:
        name = printable(path)
        raise EventError(f"{name}: NUL character (\\u0000) in {what} is not allowed", field=name, status_code=400)
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        name = printable(path)
        raise EventError(
            f"{name}: lone UTF-16 surrogate in {what} (\\ud800-\\udfff without its pair) is not allowed",
            field=name,
            status_code=400,
        ) from None


def printable(path: str) -> str:
    """A field path safe to show: lone surrogates and control characters as \\uXXXX escapes."""
    safe = path.encode("utf-8", "backslashreplace").decode("utf-8")
    return CONTROL_NO_WS.sub(lambda m: f"\\u{ord(m.group()):04x}", safe)[:200]
