"""analyzers.text: how every number, p-value, interval, duration and time reads, and what error
text may show."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from analyzers.text import (
    deploy_link,
    format_change,
    format_effect,
    format_interval,
    format_number,
    format_p,
    format_time,
    format_value,
    format_values,
    human_duration,
    p_equals,
    redact,
    url_secrets,
)


@pytest.mark.parametrize(
    ("x", "unit", "text"),
    [
        (0.0123, "ratio", "1.23%"),
        (0.25, "s", "250.0 ms"),
        (2.5, "s", "2.500 s"),
        (12.0, "req/s", "12 req/s"),
        (None, "s", "n/a"),
        (float("nan"), "ratio", "n/a"),
        (-0.0, "s", "0.0 ms"),  # never "-0.0 ms"
    ],
)
def test_a_value_carries_its_unit(x: float | None, unit: str, text: str) -> None:
    assert format_value(x, unit) == text


def test_values_in_one_sentence_share_one_scale() -> None:
    # 0.9 s alone reads 900.0 ms, but beside 1.2 s both read in seconds.
    assert format_value(0.9, "s") == "900.0 ms"
    assert format_values([0.9, 1.2], "s") == ["0.900 s", "1.200 s"]
    assert format_values([0.012, 0.018], "s") == ["12.0 ms", "18.0 ms"]
    assert format_interval(0.5, 1.2, "s", level=0.99) == "99% CI +0.500 s to +1.200 s"
    assert format_interval(0.0194, 0.1309, "s", level=0.99) == "99% CI +19.4 ms to +130.9 ms"
    assert format_effect(0.7, "s", rel=0.5, ci=[0.4, 1.1], level=0.99) == "+0.700 s (+50%), 99% CI +0.400 s to +1.100 s"
    assert format_effect(0.0339, "ratio", rel=5.49, ci=[0.021, 0.047], level=0.99) == (
        "+3.39 pp (x6.5), 99% CI +2.10 pp to +4.70 pp")
    assert format_effect(None, "s", ci=[0.1, 0.2]) == "n/a"


def test_a_ratio_change_is_in_points_apart_from_the_relative_change() -> None:
    # The example: an error ratio from 0.62% to 4.01%.
    assert format_change(0.0339, "ratio", rel=5.49) == "+3.39 pp (x6.5)"
    assert format_change(0.004, "ratio", rel=0.12) == "+0.40 pp (+12%)"
    assert format_change(-0.002, "ratio", rel=-0.5) == "-0.20 pp (-50%)"
    assert "%" not in format_change(0.0339, "ratio", rel=5.49).split("(")[0]
    assert format_interval(0.021, 0.047, "ratio", level=0.99) == "99% CI +2.10 pp to +4.70 pp"
    assert format_interval(0.01, 0.02, "ratio", signed=False) == "1.00% to 2.00%"  # levels stay in %


@pytest.mark.parametrize(
    ("effect", "unit", "rel", "text"),
    [
        (-0.1069, "s", -0.16, "-106.9 ms (-16%)"),
        (0.030, "s", 0.3, "+30.0 ms (+30%)"),
        (1.5, "s", 1.0, "+1.500 s (x2)"),
        (12.0, "req/s", 0.04, "+12 req/s (+4%)"),
        (3.0, "req/s", 0.012, "+3 req/s (+1.2%)"),
        (0.01, "s", None, "+10.0 ms"),
        (-0.95, "s", -0.95, "-950.0 ms (x0.05)"),
        (None, "s", 0.1, "n/a"),
    ],
)
def test_changes_are_signed_with_unit_and_relative_change(effect: float | None, unit: str, rel: float | None, text: str) -> None:
    assert format_change(effect, unit, rel=rel) == text


@pytest.mark.parametrize(
    ("p", "text"),
    [(0.0, "p < 0.0001"), (1e-300, "p < 0.0001"), (1e-11, "p < 0.0001"), (0.00043, "p = 0.00043"),
     (0.034, "p = 0.034"), (0.06, "p = 0.06"), (1.0, "p = 1"), (None, "p n/a"), (float("nan"), "p n/a")],
)
def test_p_values_never_read_zero(p: float | None, text: str) -> None:
    assert p_equals(p) == text
    assert format_p(p) in text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(45, "45 s"), (89, "89 s"), (240, "4 min"), (89 * 60, "89 min"), (5400, "1.5 h"), (7200, "2 h"),
     (3 * 86400, "3 d"), (None, "n/a")],
)
def test_durations_read_like_people_say_them(seconds: float | None, text: str) -> None:
    assert human_duration(seconds) == text


def test_numbers_without_units_keep_three_digits_and_exponents_only_at_extremes() -> None:
    assert format_number(0.10694) == "0.107"
    assert format_number(123456.0) == "1.23e+05"
    assert format_number(0) == "0"
    assert format_number(None) == "n/a"


T = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("zone", "text"),
    [
        ("UTC", "2026-11-20 10:00 UTC"),
        ("Asia/Kolkata", "2026-11-20 15:30 IST"),
        ("America/New_York", "2026-11-20 05:00 EST"),
        ("Pacific/Chatham", "2026-11-20 23:45 UTC+13:45"),  # no letter abbreviation: the offset names it
        (timezone(timedelta(hours=-3)), "2026-11-20 07:00 UTC-03:00"),
    ],
)
def test_times_are_shown_in_the_given_zone_and_name_it(zone: object, text: str) -> None:
    assert format_time(T, zone) == text  # type: ignore[arg-type]


def test_time_zone_follows_daylight_saving_and_rejects_unknown_zones() -> None:
    summer = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    assert format_time(summer, "America/New_York", seconds=True) == "2026-07-01 08:00:00 EDT"
    assert format_time(datetime(2026, 11, 20, 10, 0), "UTC") == "2026-11-20 10:00 UTC"  # naive = UTC
    with pytest.raises(ValueError, match="IANA name"):
        format_time(T, "Mars/Olympus")


def test_deploy_links_percent_encode_the_id() -> None:
    link = deploy_link("https://dash.example/", "a&b#c`|>/x y")
    assert link == "https://dash.example/deploy?deploy=a%26b%23c%60%7C%3E%2Fx%20y"


SLACK_URL = "https://hooks.slack.com/services/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"


@pytest.mark.parametrize(
    "text",
    [
        # What requests raises for an unreachable webhook: the path comes after "url:".
        "ConnectionError: HTTPSConnectionPool(host='hooks.slack.com', port=443): Max retries exceeded with "
        "url: /services/T0123ABCD/B0456EFGH/kT9xQ2vWmZ8rYbN3cL5pJ7dF (Caused by NewConnectionError(...))",
        f"POST {SLACK_URL} failed",
        f"HTTP 404: invalid_token for {SLACK_URL}.",
    ],
)
def test_redact_removes_webhook_paths_and_keeps_the_host(text: str) -> None:
    out = redact(text)
    assert "kT9xQ2vWmZ8rYbN3cL5pJ7dF" not in out and "B0456EFGH" not in out
    assert "hooks.slack.com" in out or "url: /[redacted]" in out


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("GET http://admin:hunter22@prom.internal:9090/api/v1/query failed", "hunter22"),
        ("headers {'Authorization': 'Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig'}", "eyJhbGciOiJIUzI1NiJ9"),
        ("Authorization: Basic YWRtaW46aHVudGVyMjI=", "YWRtaW46aHVudGVyMjI="),
        ("https://grafana.example/api?api_key=abc123def456&x=1", "abc123def456"),
        ("slack token xoxb-1234567890-abcdefghij rejected", "xoxb-1234567890"),
        ("secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw leaked", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        ("password=s3cr3t!; retry", "s3cr3t!"),
    ],
)
def test_redact_removes_credentials(text: str, secret: str) -> None:
    assert secret not in redact(text)


def test_redact_keeps_what_tells_the_target_apart() -> None:
    text = ("ConnectionError: HTTPSConnectionPool(host='hooks.slack.com', port=443): Max retries exceeded with "
            "url: /services/T0123ABCD/B0456EFGH/kT9xQ2vWmZ8rYbN3cL5pJ7dF?x=1")
    assert "url: /services/[redacted]/[redacted]/[redacted]?x=[redacted]" in redact(text)
    prom = "cannot reach Prometheus at http://127.0.0.1:9/select/t0kenSECRET12345/prometheus/api/v1/query_range"
    assert redact(prom) == "cannot reach Prometheus at http://127.0.0.1:9/select/[redacted]/prometheus/api/v1/query_range"


def test_redact_removes_known_secrets_anywhere_and_leaves_plain_errors_alone() -> None:
    secrets = url_secrets(SLACK_URL)
    echoed = "HTTP 400: the URL kT9xQ2vWmZ8rYbN3cL5pJ7dF is not a channel"
    assert "kT9xQ2vWmZ8rYbN3cL5pJ7dF" not in redact(echoed, secrets)
    plain = "Prometheus at http://127.0.0.1:9090 answered 422 execution: many-to-many matching not allowed"
    assert redact(plain) == plain
    assert redact(None) == ""
