"""The receiver's cheaper per-event paths give exactly what the plain ones give.

Each cut in analyzers.events / analyzers.server that replaced a general call by a cheaper
one on the hot path is compared here with the call it replaced, over hostile and edge inputs.
"""

from __future__ import annotations

import base64
import dataclasses
import hmac
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzers.errors import EventError
from analyzers.events.schema import DeployEventIn, derive_deploy_id, frozen, parse_event, utc_isoformat
from analyzers.events.signatures import secret_key, sign, verify_headers
from analyzers.events.strictjson import loads_flat, loads_full, loads_strict
from analyzers.model import Deploy, Expectation

SECRETS = ["whsec_" + base64.b64encode(b"k" * 24).decode(), "plain-secret", "ünïcode sécret", "x"]


@settings(max_examples=200, deadline=None)
@given(secret=st.sampled_from(SECRETS), msg_id=st.text(max_size=40), ts=st.integers(0, 10**12),
       body=st.binary(max_size=5000))
def test_signature_from_a_copied_keyed_hmac_equals_the_one_shot(secret: str, msg_id: str, ts: int, body: bytes) -> None:
    """Bodies past 2 KiB too (where hashing may release the GIL), any id and timestamp."""
    expected = hmac.digest(secret_key(secret), f"{msg_id}.{ts}.".encode("utf-8", "surrogatepass") + body, "sha256")
    try:
        f"{msg_id}".encode()
    except UnicodeEncodeError:
        with pytest.raises(UnicodeEncodeError):
            sign(secret, msg_id, ts, body)
        return
    assert sign(secret, msg_id, ts, body) == "v1," + base64.b64encode(expected).decode()
    assert sign(secret, msg_id, ts, body) == sign(secret, msg_id, ts, body)  # the keyed original is not consumed


def test_header_checks_read_a_lowercase_dict_like_any_mapping() -> None:
    headers = {"webhook-id": "msg_1", "webhook-timestamp": "1700000000", "webhook-signature": "v1,abc v2,x v1,def"}
    title = {k.title(): v for k, v in headers.items()}
    assert verify_headers(headers, now=1700000000) == verify_headers(title, now=1700000000) == \
        ("msg_1", "1700000000", ["abc", "def"])


_zones = st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)),
                          timezone(timedelta(hours=-11)), ZoneInfo("UTC"), ZoneInfo("Asia/Kolkata"),
                          ZoneInfo("America/St_Johns")])


@settings(max_examples=300, deadline=None)
@given(t=st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(9998, 12, 30), timezones=_zones))
def test_utc_isoformat_equals_isoformat_of_the_utc_time(t: datetime) -> None:
    """Microseconds present or not, any zone (UTC itself takes the orjson path)."""
    assert utc_isoformat(t) == t.astimezone(UTC).isoformat()


def test_derived_deploy_id_is_unchanged_by_the_cheaper_time_format() -> None:
    t = datetime(2026, 11, 27, 10, 0, 0, 120, tzinfo=UTC)
    # the value before the change: isoformat of the UTC time, hashed
    assert derive_deploy_id("generic", "checkout", "production", "v42", t) == "d_eb95da179083e0c36cd7"
    assert derive_deploy_id("generic", "checkout", "production", "v42", t.astimezone(ZoneInfo("Asia/Kolkata"))) == \
        "d_eb95da179083e0c36cd7"


def _deploy_fields() -> dict[str, Any]:
    t = datetime(2026, 11, 27, 10, tzinfo=UTC)
    return dict(deploy_id="d1", service="s", environment="e", version="v", started_at=t, kind="release",
                status="started", finished_at=None, source="ci", commit_sha="abc", ref="main", author="a",
                url="https://x", description="<b>", labels={"team": "x"},
                expectations=(Expectation(metric="m", expect="decrease", min_effect=None),), flag="f",
                flag_from="off", flag_to="on", signed=False, received_at=t, updated_at=t)


@pytest.mark.parametrize("cls", [Deploy, DeployEventIn])
def test_frozen_builds_the_same_frozen_object_as_the_constructor(cls: Any) -> None:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    given = _deploy_fields()
    values = {k: given.get(k) for k in fields}
    fast, plain = frozen(cls, **values), cls(**values)
    assert fast == plain and dataclasses.asdict(fast) == dataclasses.asdict(plain)
    assert list(vars(fast)) == list(vars(plain))  # the same fields, in the same order
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.service = "other"
    with pytest.raises(TypeError, match="every field"):
        frozen(cls, **{k: v for k, v in values.items() if k != "service"})
    with pytest.raises(TypeError, match="every field"):
        frozen(cls, **values, extra=1)


def test_frozen_runs_the_checks_of_a_class_with_post_init() -> None:
    @dataclasses.dataclass(frozen=True)
    class Checked:
        n: int

        def __post_init__(self) -> None:
            if self.n < 0:
                raise ValueError("n must be >= 0")

    assert frozen(Checked, n=1) == Checked(1)
    with pytest.raises(ValueError, match="n must be"):
        frozen(Checked, n=-1)


def test_parsed_event_and_its_deploy_equal_the_ones_the_constructors_build() -> None:
    e = parse_event(b'{"service": " s ", "environment": "e", "version": "v", "started_at": 1795773600, '
                    b'"kind": "release", "flag": "f", "from": true, "to": 0.5, "labels": {"a": 1}, '
                    b'"expectations": [{"metric": "m", "expect": "increase"}]}')
    rebuilt = DeployEventIn(**{f.name: getattr(e, f.name) for f in dataclasses.fields(DeployEventIn)})
    assert e == rebuilt and list(vars(e)) == list(vars(rebuilt))
    assert e.service == "s" and e.flag_from == "on" and e.flag_to == "0.5"
    now = datetime(2026, 11, 27, tzinfo=UTC)
    d = e.to_deploy(True, received_at=now)
    plain = Deploy(**{f.name: getattr(d, f.name) for f in dataclasses.fields(Deploy)})
    assert d == plain and list(vars(d)) == list(vars(plain))
    assert (d.deploy_id, d.received_at, d.updated_at, d.signed) == (e.effective_deploy_id, now, now, True)


# -- strict JSON: orjson for the usual flat body, the strict decoder for everything else ------

def _outcome(decode: Any, body: bytes) -> tuple[str, Any]:
    try:
        value = decode(body)
    except EventError as exc:
        return "refused", (str(exc), exc.status_code, exc.field)
    return "decoded", (value, [type(v) for v in value.values()] if isinstance(value, dict) else None,
                       list(value) if isinstance(value, dict) else None)


HOSTILE_BODIES = [
    b'{"service":"s","started_at":1795773600}',
    b' \t\r\n{ "a" : "b:c" , "d" : ": e" }\n',  # colons inside strings, a string that starts with one
    b'{"a":1,"a":2}', b'{"a":1, "a" :2}', b'{"a":"x","b":"y","a":"z"}',  # duplicates
    b'{"a":9223372036854775807}', b'{"a":-9223372036854775807}',
    b'{"a":9223372036854775808}', b'{"a":-9223372036854775808}', b'{"a":18446744073709551615}',
    b'{"a":18446744073709551616}', b'{"a":123456789012345678901234567890}',
    b'{"a":1.5}', b'{"a":1e5}', b'{"a":1e400}', b'{"a":-0}', b'{"a":01}',
    b'{"a":NaN}', b'{"a":Infinity}', b'{"a":-Infinity}',
    b'{"a":"\x01"}', b'{"a":"\t"}', b'{"a":"\x7f"}', b'{"a":"\x00"}', b'{"\x00":1}',
    b'{"a":"\xed\xa0\x80"}', b'{"a":"\xff"}', b'{"a":"\xc3"}', '{"é":"ü€😀"}'.encode(),
    b'\xef\xbb\xbf{"a":1}', b'{"a":1,}', b'{"a":1}x', b'{"a":1}{"b":2}', b'{"a" 1}', b'{a:1}', b"{'a':1}",
    b'{"a":"\\u0000"}', b'{"a":"\\ud800"}', b'{"a\\"b":1}', b'{"a":"\\"","a":1}',
    b'{"a":{"b":1}}', b'{"a":[1,2]}', b'{"a":"[{"}', b'{"a":true,"b":false,"c":null}',
    b'[]', b'"x"', b'1', b'null', b'', b'{', b'{}', b'{"":1}', b'{"a":' + b'9' * 5000 + b'}',
    b'{"a":"' + b"x" * 300_000 + b'"}', b"{" * 20 + b"}" * 20,
]


@pytest.mark.parametrize("body", HOSTILE_BODIES)
def test_strict_json_fast_path_gives_what_the_strict_decoder_gives(body: bytes) -> None:
    """Same value (same key order, same types) or the same refusal (message, status, field)."""
    assert _outcome(loads_strict, body) == _outcome(loads_full, body)


def test_the_usual_event_body_takes_the_fast_path_and_hostile_ones_do_not() -> None:
    assert loads_flat(b'{"service":"s","version":"v1","started_at":1795773600,"signed":true,"x":null}') == \
        {"service": "s", "version": "v1", "started_at": 1795773600, "signed": True, "x": None}
    for body in (b'{"a":1,"a":2}', b'{"a":9223372036854775808}', b'{"a":1.5}', b'{"a":"\\n"}',
                 b'{"a":{"b":1}}', b'\xef\xbb\xbf{"a":1}', b'{"a":"\x01"}'):
        assert loads_flat(body) is None, body


_keys = st.sampled_from(["a", "b", "service", ":", " :x", "é", "", "{", "[", "k k"])
_scalars = (st.text(max_size=8) | st.integers(-(2**65), 2**65) | st.booleans() | st.none()
            | st.floats(allow_nan=False, allow_infinity=False))
_ws = st.sampled_from(["", " ", "\n", "\t ", "\r\n"])


@st.composite
def _flat_bodies(draw: Any) -> bytes:
    """Flat objects written by hand: duplicates, raw or escaped strings, odd spacing, big ints."""
    parts = []
    for _ in range(draw(st.integers(0, 6))):
        key, value = draw(_keys), draw(_scalars)
        if isinstance(value, str) and draw(st.booleans()):
            text = '"' + value.replace("\\", "").replace('"', "") + '"'  # raw, control characters and all
        else:
            text = json.dumps(value, ensure_ascii=draw(st.booleans()))
        parts.append(f"{draw(_ws)}{json.dumps(key)}{draw(_ws)}:{draw(_ws)}{text}{draw(_ws)}")
    return ("{" + ",".join(parts) + "}").encode("utf-8", "surrogatepass")


@settings(max_examples=500, deadline=None)
@given(_flat_bodies())
def test_strict_json_fast_path_agrees_on_generated_flat_bodies(body: bytes) -> None:
    assert _outcome(loads_strict, body) == _outcome(loads_full, body)


@pytest.mark.parametrize("status", [200, 201, 202, 204, 400, 503])
def test_accepted_answer_headers_are_the_ones_starlette_writes(status: int) -> None:
    from fastapi.responses import JSONResponse

    from analyzers.server.ingest import FastJSONResponse

    content = {"status": "created", "deploy_id": "d_1", "note": "é"}
    fast, plain = FastJSONResponse(content, status_code=status), JSONResponse(content, status_code=status)
    assert fast.raw_headers == plain.raw_headers
    with_headers = FastJSONResponse(content, status_code=status, headers={"Retry-After": "1"})
    assert with_headers.raw_headers == JSONResponse(content, status_code=status, headers={"Retry-After": "1"}).raw_headers
