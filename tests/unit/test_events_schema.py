"""deploy-event/v1 parsing: what is accepted, how it is normalised, and every refusal."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from analyzers.errors import EventError
from analyzers.events.schema import derive_deploy_id, loads_strict, parse_event, parse_timestamp
from analyzers.model import Expectation

KEYS = {"latency_p99", "error_ratio"}
MIN = {"service": "checkout", "environment": "production", "version": "v42", "started_at": "2026-11-27T10:00:00Z"}
T = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


def body(**kw: object) -> bytes:
    return json.dumps({**MIN, **kw}).encode()


def test_minimal_event_gets_defaults() -> None:
    e = parse_event(body())
    assert (e.service, e.environment, e.version, e.started_at) == ("checkout", "production", "v42", T)
    assert (e.kind, e.status, e.source) == ("deploy", "succeeded", "generic")
    assert e.effective_deploy_id == derive_deploy_id("generic", "checkout", "production", "v42", T)


def test_full_event_maps_to_the_stored_deploy() -> None:
    e = parse_event(body(event_id="e1", deploy_id="dep-1", source="jenkins", status="failed",
                         finished_at="2026-11-27T10:05:00Z", commit_sha="abc", ref="main", author="ana",
                         url="https://ci.example/1", description="line1\nline2",
                         labels={"team": "payments"},
                         expectations=[{"metric": "latency_p99", "expect": "decrease", "min_effect": 0.01}]),
                    metric_keys=KEYS)
    d = e.to_deploy(signed=False)
    assert d.deploy_id == "dep-1" and d.source == "jenkins" and d.status == "failed"
    assert d.expectations == (Expectation("latency_p99", "decrease", 0.01),)
    assert d.labels == {"team": "payments"} and d.signed is False
    assert d.description == "line1\nline2"


def test_release_event_carries_flag_states() -> None:
    e = parse_event(body(kind="release", flag="new-checkout", **{"from": 10, "to": 50}))
    d = e.to_deploy(True)
    assert (d.kind, d.flag, d.flag_from, d.flag_to) == ("release", "new-checkout", "10", "50")
    assert parse_event(body(kind="release", flag="f", **{"from": False, "to": True})).flag_to == "on"


def test_derived_deploy_id_is_stable_across_status_updates() -> None:
    a = parse_event(body(status="started")).effective_deploy_id
    b = parse_event(body(status="succeeded", finished_at="2026-11-27T10:09:00Z")).effective_deploy_id
    assert a == b
    assert parse_event(body(version="v43")).effective_deploy_id != a


@pytest.mark.parametrize("value, expected", [
    ("2026-11-27T10:00:00Z", T),
    ("2026-11-27T12:00:00+02:00", T),
    ("2026-11-27T05:00:00-0500", T),
    ("2026-11-27 10:00:00z", T),
    ("2026-11-27T10:00:00.123456789Z", T.replace(microsecond=123456)),
    (1795773600, T),
    (1795773600000, T),
    ("1795773600", T),
    (1795773600.5, T.replace(microsecond=500000)),
])
def test_timestamps_are_normalised_to_utc(value: object, expected: datetime) -> None:
    assert parse_timestamp(value, "started_at") == expected


@pytest.mark.parametrize("value, message", [
    ("2026-11-27T10:00:00", "no time zone"),
    ("yesterday", "not an RFC 3339"),
    (17957736, "neither plausible seconds nor milliseconds"),
    (179577360000, "neither plausible seconds nor milliseconds"),
    (True, "boolean"),
    ("2026-13-27T10:00:00Z", "not a valid date"),
    ("0001-01-01T00:00:00+01:00", "plausible range"),
    ("9999-12-31T23:59:59-01:00", "plausible range"),
    ("1999-12-31T23:59:59Z", "plausible range"),
    ({"t": 1}, "string"),
])
def test_ambiguous_or_bad_timestamps_are_refused(value: object, message: str) -> None:
    with pytest.raises(EventError, match=message) as exc:
        parse_timestamp(value, "started_at")
    assert exc.value.field == "started_at" and exc.value.status_code == 422


# (body bytes, status, field, message fragment): every refusal names what to fix.
BAD = [
    (b"\xff\xfe{}", 400, None, "not valid UTF-8"),
    (b'{"service": ', 400, None, "not valid JSON"),
    (b"[1, 2]", 422, None, "must be a JSON object"),
    (body(version=float("nan")).replace(b"NaN", b"NaN"), 400, None, "NaN"),
    (b'{"service": Infinity}', 400, None, "Infinity"),
    (b'{"n": 1e999}', 400, None, "overflows"),
    (b'{"n": 123456789012345678901234567890}', 400, None, "64 bits"),
    (b'{"a":' * 40 + b"1" + b"}" * 40, 400, None, "nested too deeply"),
    (b'{"service": "a\\u0000b"}', 400, "service", "NUL"),
    (b'{"service": "a", "environment": "p", "service": "b"}', 400, "service", "appears twice"),
    (b'{"service": "a\\ud800b"}', 400, "service", "surrogate"),
    (b'{"labels": {"k\\u0000": "v"}}', 400, "labels.k\\u0000", "NUL"),
    (json.dumps({k: v for k, v in MIN.items() if k != "service"}).encode(), 422, "service", "required"),
    (json.dumps({k: v for k, v in MIN.items() if k != "started_at"}).encode(), 422, "started_at", "required"),
    (body(service=""), 422, "service", "must not be empty"),
    (body(service=["a"]), 422, "service", "must be a string"),
    (body(service="x" * 201), 422, "service", "limit is 200"),
    (body(service="a\nb"), 422, "service", "control characters"),
    (body(status="done"), 422, "status", "must be one of"),
    (body(started_at="0001-01-01T00:00:00+01:00"), 422, "started_at", "plausible range"),
    (body(finished_at="9999-12-31T23:59:59-01:00"), 422, "finished_at", "plausible range"),
    (body(started_at=17957736), 422, "started_at", "neither plausible seconds nor milliseconds"),
    (body(kind="rollout"), 422, "kind", "must be one of"),
    (body(kind="release"), 422, "flag", "required for kind 'release'"),
    (body(flag="f"), 422, "flag", "belong to kind 'release'"),
    (body(finished_at="2026-11-27T09:00:00Z"), 422, "finished_at", "before started_at"),
    (body(status="started", finished_at="2026-11-27T11:00:00Z"), 422, "finished_at", "final status"),
    (body(url="javascript:alert(1)"), 422, "url", "http(s) URL"),
    (body(labels=["a"]), 422, "labels", "must be an object"),
    (body(labels={"team": {"x": 1}}), 422, "labels.team", "must be a string"),
    (body(expectations={"metric": "x"}), 422, "expectations", "must be a list"),
    (body(expectations=[{"metric": "latency_p99", "expect": "up"}]), 422, "expectations[0].expect", "must be one of"),
    (body(expectations=[{"metric": "latency_p99", "expect": "decrease", "min_effect": -1}]), 422,
     "expectations[0].min_effect", "non-negative"),
    (body(expectations=[{"metric": "latency_p99", "expect": "decrease", "query": "up"}]), 422,
     "expectations[0].query", "unknown field"),
    (body(expectations=[{"metric": "latency_p99", "expect": "decrease"}] * 2), 422,
     "expectations[1].metric", "listed twice"),
    (body(expectations=[{"metric": 'sum(rate(x[5m]))', "expect": "increase"}]), 422, "expectations",
     "unknown metric key"),
    (body(enviroment="prod"), 422, "enviroment", "unknown field"),
    (body(schema="deploy-event/v2"), 422, "schema", "deploy-event/v1"),
]


@pytest.mark.parametrize("raw, status, field, message", BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_input_is_refused_with_status_field_and_message(raw: bytes, status: int, field: str | None,
                                                            message: str) -> None:
    with pytest.raises(EventError, match=message.replace("(", r"\(").replace(")", r"\)")) as exc:
        parse_event(raw, metric_keys=KEYS)
    assert exc.value.status_code == status
    if field is not None:
        assert exc.value.field == field


def test_unknown_metric_error_lists_known_keys() -> None:
    with pytest.raises(EventError) as exc:
        parse_event(body(expectations=[{"metric": "cpu", "expect": "increase"}]), metric_keys=KEYS)
    assert "'cpu'" in str(exc.value) and "error_ratio, latency_p99" in str(exc.value)


def test_without_a_catalog_any_metric_key_is_accepted() -> None:
    assert parse_event(body(expectations=[{"metric": "cpu", "expect": "increase"}])).expectations[0].metric == "cpu"


def test_html_in_text_fields_is_kept_verbatim_as_text() -> None:
    e = parse_event(body(description="<img src=x onerror=alert(1)>", author="<b>ana</b>"))
    assert e.description == "<img src=x onerror=alert(1)>" and e.author == "<b>ana</b>"


def test_paired_surrogates_and_non_ascii_are_fine() -> None:
    e = parse_event(b'{"service":"caf\\u00e9","environment":"p","version":"\\ud83d\\ude80",'
                    b'"started_at":"2026-11-27T10:00:00Z"}')
    assert (e.service, e.version) == ("caf\u00e9", "\U0001F680")


def test_loads_strict_accepts_a_utf8_bom_and_nesting_at_the_limit() -> None:
    assert loads_strict(b"\xef\xbb\xbf{}") == {}
    assert loads_strict(b"[" * 16 + b"]" * 16) is not None
