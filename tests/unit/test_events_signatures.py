"""Standard Webhooks signing and verification (pure functions, injectable clock)."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from analyzers.errors import ConfigError, SignatureError
from analyzers.events.signatures import parse_secrets, sign, verify, verify_github, verify_token

# The Standard Webhooks reference test vector (field-notes.md).
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
TS = 1614265330
BODY = b'{"test": 2432232314}'
EXPECTED = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def headers(sig: str = EXPECTED, ts: int | str = TS, msg_id: str = MSG_ID) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": sig}


def test_reference_vector_signs_as_published() -> None:
    assert sign(SECRET, MSG_ID, TS, BODY) == EXPECTED


def test_reference_vector_verifies_and_returns_the_message_id() -> None:
    assert verify([SECRET], headers(), BODY, now=TS + 10) == MSG_ID


def test_any_of_several_signatures_may_match() -> None:
    other = "v1," + base64.b64encode(b"x" * 32).decode()
    assert verify([SECRET], headers(f"{other} {EXPECTED}"), BODY, now=TS) == MSG_ID


def test_rotation_any_configured_secret_may_match() -> None:
    new_secret = "whsec_" + base64.b64encode(b"n" * 32).decode()
    assert verify([new_secret, SECRET], headers(), BODY, now=TS) == MSG_ID


def test_header_names_are_case_insensitive() -> None:
    h = {k.title(): v for k, v in headers().items()}
    assert verify([SECRET], h, BODY, now=TS) == MSG_ID


@pytest.mark.parametrize("body", [BODY + b" ", b'{"test": 2432232315}', b""])
def test_any_change_to_the_body_is_refused(body: bytes) -> None:
    with pytest.raises(SignatureError, match="does not match"):
        verify([SECRET], headers(), body, now=TS)


def test_wrong_secret_is_refused() -> None:
    other = "whsec_" + base64.b64encode(b"o" * 32).decode()
    with pytest.raises(SignatureError, match="does not match"):
        verify([other], headers(), BODY, now=TS)


@pytest.mark.parametrize("offset", [301, -301, 86400])
def test_timestamps_beyond_five_minutes_are_refused_both_ways(offset: int) -> None:
    with pytest.raises(SignatureError, match="off the receiver's clock") as exc:
        verify([SECRET], headers(), BODY, now=TS + offset)
    assert exc.value.field == "webhook-timestamp"


@pytest.mark.parametrize("offset", [300, -300])
def test_timestamps_within_five_minutes_are_accepted(offset: int) -> None:
    assert verify([SECRET], headers(), BODY, now=TS + offset) == MSG_ID


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_header_is_named(missing: str) -> None:
    h = headers()
    del h[missing]
    with pytest.raises(SignatureError, match=f"missing {missing}") as exc:
        verify([SECRET], h, BODY, now=TS)
    assert exc.value.status_code == 401


def test_signature_for_another_message_id_is_refused() -> None:
    with pytest.raises(SignatureError):
        verify([SECRET], headers(msg_id="msg_other"), BODY, now=TS)


@pytest.mark.parametrize("sig", ["v2,abc", "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="])
def test_signatures_without_v1_prefix_are_refused(sig: str) -> None:
    with pytest.raises(SignatureError, match="v1"):
        verify([SECRET], headers(sig), BODY, now=TS)


def test_non_integer_timestamp_is_refused() -> None:
    with pytest.raises(SignatureError, match="Unix seconds"):
        verify([SECRET], headers(ts="2021-02-26T00:00:00Z"), BODY, now=TS)


def test_no_secret_configured_refuses_everything() -> None:
    with pytest.raises(SignatureError, match="DEPLOY_WEBHOOK_SECRET"):
        verify([], headers(), BODY, now=TS)


def test_error_messages_never_contain_the_secret_or_expected_signature() -> None:
    with pytest.raises(SignatureError) as exc:
        verify([SECRET], headers("v1,AAAA"), BODY, now=TS)
    assert "MfKQ9r8" not in str(exc.value) and EXPECTED[3:] not in str(exc.value)


def test_parse_secrets_splits_comma_and_space_lists() -> None:
    assert parse_secrets(f" {SECRET}, plain-secret  other ") == (SECRET, "plain-secret", "other")
    assert parse_secrets(None) == ()


def test_bad_whsec_base64_fails_early_with_advice() -> None:
    with pytest.raises(ConfigError, match="not valid base64"):
        parse_secrets("whsec_not*base64")


def test_github_sha256_signature() -> None:
    body = b'{"action":"created"}'
    good = "sha256=" + hmac.new(b"gh-secret", body, hashlib.sha256).hexdigest()
    verify_github(["gh-secret"], good, body)
    with pytest.raises(SignatureError, match="does not match"):
        verify_github(["gh-secret"], good, body + b" ")
    with pytest.raises(SignatureError, match="missing"):
        verify_github(["gh-secret"], None, body)


def test_shared_token_compare() -> None:
    verify_token(["t1", "t2"], "t2", header="X-Gitlab-Token")
    with pytest.raises(SignatureError, match="does not match"):
        verify_token(["t1"], "t", header="X-Gitlab-Token")
