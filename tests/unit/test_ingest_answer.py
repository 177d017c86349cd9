"""orjson writing a deploy (the accepted-event answer, the stored row) must give exactly deploy_dict's JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from analyzers.events.store.codec import deploy_dict, deploy_text
from analyzers.model import Deploy, Expectation
from analyzers.server.ingest import FastJSONResponse, deploy_answer

_text = st.text(st.characters(exclude_categories=()), min_size=1, max_size=12)  # any code point, lone surrogates too
_opt = st.none() | _text
_zones = st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-7))])
_times = st.builds(lambda s, us, tz: datetime.fromtimestamp(s, tz=UTC).replace(microsecond=us).astimezone(tz),
                   st.integers(0, 4_000_000_000), st.sampled_from([0, 1, 500_000, 999_999]), _zones)
_expectations = st.lists(st.builds(Expectation, metric=_text, expect=st.sampled_from(["increase", "decrease", "none"]),
                                   min_effect=st.none() | st.floats(0.001, 10)), max_size=2).map(tuple)
_deploys = st.builds(
    Deploy, deploy_id=_text, service=_text, environment=_text, version=_text, started_at=_times,
    kind=st.sampled_from(["deploy", "release"]), status=st.sampled_from(["started", "succeeded", "failed"]),
    finished_at=st.none() | _times, commit_sha=_opt, ref=_opt, author=_opt, url=_opt, description=_opt,
    labels=st.dictionaries(_text, _text, max_size=3), expectations=_expectations, flag=_opt, signed=st.booleans(),
    received_at=st.none() | _times, updated_at=st.none() | _times,
)


def _answer(d: Deploy) -> bytes:
    return bytes(FastJSONResponse({"status": "created", "deploy": deploy_answer(d)}).body)


@settings(max_examples=300, deadline=None)
@given(_deploys)
def test_the_answer_and_the_stored_text_carry_exactly_deploy_dict(d: Deploy) -> None:
    assert json.loads(_answer(d)) == {"status": "created", "deploy": deploy_dict(d)}
    stored = deploy_text(d)
    assert stored.isascii()  # non-ASCII text is stored escaped, as ever
    assert json.loads(stored) == deploy_dict(d)
    assert Deploy.from_dict(json.loads(stored)) == Deploy.from_dict(deploy_dict(d))


def test_the_usual_deploy_goes_to_the_encoder_as_it_is_and_reads_back_the_same() -> None:
    now = datetime(2026, 12, 7, 3, 35, 43, 378988, tzinfo=UTC)
    d = Deploy(deploy_id="d_1", service="checkout", environment="production", version="v1", started_at=now,
               labels={"team": "pay"}, received_at=now, updated_at=now)
    assert deploy_answer(d) is d
    assert json.loads(_answer(d))["deploy"] == deploy_dict(d)
    assert b'"started_at":"2026-12-07T03:35:43.378988Z"' in _answer(d)
    # other zones and declared expectations take the dict
    assert isinstance(deploy_answer(Deploy(**{**d.__dict__, "started_at": now.astimezone(timezone(timedelta(hours=1)))})),
                      dict)
    assert isinstance(deploy_answer(Deploy(**{**d.__dict__, "expectations": (Expectation("errors", "none"),)})), dict)


def test_indexed_headers_read_like_starlettes() -> None:
    from starlette.datastructures import Headers

    from analyzers.server.app import IndexedHeaders

    scope = {"type": "http", "headers": [(b"content-length", b"12"), (b"webhook-id", b"first"),
                                         (b"webhook-id", b"second"), (b"x-empty", b"")]}
    fast, slow = IndexedHeaders(scope), Headers(scope=scope)
    for name in ("content-length", "Content-Length", "WEBHOOK-ID", "webhook-id", "x-empty", "missing"):
        assert (name in fast) == (name in slow)
        assert fast.get(name) == slow.get(name)
        assert fast.get(name, "d") == slow.get(name, "d")
    assert fast["Webhook-Id"] == slow["Webhook-Id"] == "first"
    assert fast.getlist("webhook-id") == ["first", "second"]
    assert 3 not in fast

    from analyzers.server.app import WebhookRequest

    request = WebhookRequest(dict(scope))
    assert isinstance(request.headers, IndexedHeaders) and request.headers is request.headers
    assert request.headers["webhook-id"] == "first"


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True, allow_infinity=True)
    | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(_text, _json_values, max_size=5))
def test_stored_payload_text_reads_back_as_the_standard_encoder_wrote_it(payload: dict) -> None:
    from analyzers.events.store.codec import _dumps, payload_text

    text = payload_text(payload)
    assert text.isascii()
    assert _dumps(json.loads(text)) == _dumps(payload)  # NaN, infinities, big integers, surrogates included
