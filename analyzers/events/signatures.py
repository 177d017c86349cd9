"""Webhook signatures: Standard Webhooks (generic events) and GitHub/GitLab shared secrets.

Standard Webhooks (https://www.standardwebhooks.com)::

    webhook-id: msg_...            same on every retry: the idempotency key
    webhook-timestamp: 1614265330  Unix seconds; refused if more than 5 minutes off
    webhook-signature: v1,<b64> v1,<b64>   space-separated; any match is enough

    signature = base64(HMAC-SHA256(key, f"{id}.{timestamp}.".encode() + body))

``key`` is the base64-decoded part after ``whsec_`` for ``whsec_`` secrets, else the
secret's UTF-8 bytes. Several secrets may be valid at once (rotation): verification
tries each. All comparisons are constant time (:func:`hmac.compare_digest`), and no
message ever contains a secret or a computed signature.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import re
import time
from collections.abc import Mapping, Sequence

from analyzers.errors import ConfigError, SignatureError

TOLERANCE_S = 300
ENV_SECRET = "DEPLOY_WEBHOOK_SECRET"
_UNIX_SECONDS = re.compile(r"\d{1,12}")


def secret_key(secret: str) -> bytes:
    """The HMAC key for ``secret``: base64-decoded ``whsec_`` secrets, else raw UTF-8 bytes."""
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret[len("whsec_"):], validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError("a whsec_ webhook secret is not valid base64: copy it again from the sender") from None
    if not secret:
        raise ConfigError("empty webhook secret")
    return secret.encode("utf-8")


@functools.lru_cache(maxsize=64)
def _keyed(secret: str) -> hmac.HMAC:
    """An HMAC-SHA256 already keyed with ``secret``: each signature starts from a copy of it.

    Cached per configured secret, so its key is decoded once (the receiver signs every event with each).

    Copying skips what a one-shot ``hmac.digest`` redoes per call (OpenSSL's algorithm
    fetch and the key's inner and outer pads), and, unlike the one-shot, never hands the GIL
    to another thread in the middle of a short message. Same bytes out (tested).
    """
    return hmac.new(secret_key(secret), digestmod=hashlib.sha256)


def parse_secrets(raw: str | Sequence[str] | None) -> tuple[str, ...]:
    """Secrets from a comma/space-separated string (e.g. ``$DEPLOY_WEBHOOK_SECRET``) or a list.

    Every secret is checked now, so a typo fails at start-up rather than on the first event.
    """
    if raw is None:
        return ()
    items = re.split(r"[\s,]+", raw) if isinstance(raw, str) else list(raw)
    out = tuple(s.strip() for s in items if s and s.strip())
    for s in out:
        secret_key(s)
    return out


def sign(secret: str, msg_id: str, timestamp: int | str, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256>`` over ``{msg_id}.{timestamp}.{body}``."""
    mac = _keyed(secret).copy()
    mac.update(f"{msg_id}.{timestamp}.".encode() + body)
    return "v1," + binascii.b2a_base64(mac.digest(), newline=False).decode("ascii")  # base64.b64encode's core


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """The value of header ``name`` (given in lower case) in any spelling of its name.

    One ``get`` first: it finds the header in a dict keyed in lower case (HTTP/2, most
    clients) and in a case-insensitive mapping (Starlette's ``Headers`` and the receiver's
    indexed headers, which lower the name themselves); other spellings are tried after."""
    value = headers.get(name)
    if value is not None:
        return value
    for key in (name.title(), name.upper()):
        if key in headers:
            return headers[key]
    lowered = {k.lower(): v for k, v in headers.items()}
    return lowered.get(name)


def verify_headers(
    headers: Mapping[str, str], *, now: float | None = None, tolerance_s: float = TOLERANCE_S
) -> tuple[str, str, list[str]]:
    """The checks of :func:`verify` that need no body: ``(webhook-id, timestamp, [v1 signatures])``.

    The receiver runs them before reading a body, so a post without a fresh signature is
    refused at once. Raises :class:`SignatureError` naming the header.
    """
    msg_id = _header(headers, "webhook-id")
    ts_raw = _header(headers, "webhook-timestamp")
    sig_raw = _header(headers, "webhook-signature")
    for name, value in (("webhook-id", msg_id), ("webhook-timestamp", ts_raw), ("webhook-signature", sig_raw)):
        if not value:
            raise SignatureError(f"missing {name} header: sign the request per Standard Webhooks", field=name)
    assert msg_id and ts_raw and sig_raw
    if len(msg_id) > 256:
        raise SignatureError("webhook-id header longer than 256 characters", field="webhook-id")
    if not _UNIX_SECONDS.fullmatch(ts_raw.strip()):
        raise SignatureError("webhook-timestamp must be Unix seconds (an integer)", field="webhook-timestamp")
    ts = int(ts_raw.strip())
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance_s:
        raise SignatureError(
            f"webhook-timestamp is {int(current - ts)} s off the receiver's clock (tolerance {int(tolerance_s)} s): "
            "sign with the current time and check the sender's clock",
            field="webhook-timestamp",
        )
    given = [p.split(",", 1)[1] for p in sig_raw.split() if p.startswith("v1,") and "," in p]
    if not given:
        raise SignatureError("webhook-signature has no v1,<base64> entry", field="webhook-signature")
    return msg_id, ts_raw.strip(), given


def verify(
    secrets: Sequence[str],
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float | None = None,
    tolerance_s: float = TOLERANCE_S,
) -> str:
    """Check a Standard Webhooks signature; return the ``webhook-id``.

    Raises :class:`SignatureError` (HTTP 401) naming what is wrong: a missing header, a
    timestamp outside ``tolerance_s`` (both directions), or no signature matching any of
    ``secrets``. ``now`` is Unix seconds (injectable for tests).
    """
    if not secrets:
        raise SignatureError(f"no webhook secret configured: set {ENV_SECRET}")
    return verify_body(secrets, verify_headers(headers, now=now, tolerance_s=tolerance_s), body)


def verify_body(secrets: Sequence[str], checked: tuple[str, str, list[str]], body: bytes) -> str:
    """The HMAC half of :func:`verify`, given what :func:`verify_headers` returned; the ``webhook-id``."""
    msg_id, ts_raw, given = checked
    expected = [sign(s, msg_id, ts_raw, body)[3:] for s in secrets]
    ok = False
    for e in expected:
        for g in given:
            ok |= hmac.compare_digest(e.encode(), g.encode())
    if not ok:
        raise SignatureError(
            "webhook-signature does not match the body with any configured secret: check the secret "
            "and that the exact bytes sent were signed",
            field="webhook-signature",
        )
    return msg_id


def verify_github(secrets: Sequence[str], header: str | None, body: bytes) -> None:
    """GitHub ``X-Hub-Signature-256: sha256=<hex HMAC of the raw body>`` (no timestamp)."""
    if not secrets:
        raise SignatureError("no GitHub webhook secret configured: set DEPLOY_WEBHOOK_SECRET_GITHUB")
    if not header or not header.startswith("sha256="):
        raise SignatureError("missing X-Hub-Signature-256 header: set a secret on the GitHub webhook",
                             field="x-hub-signature-256")
    given = header[len("sha256="):].strip().lower().encode()
    ok = False
    for s in secrets:
        ok |= hmac.compare_digest(hmac.new(s.encode(), body, hashlib.sha256).hexdigest().encode(), given)
    if not ok:
        raise SignatureError("X-Hub-Signature-256 does not match the body with any configured secret",
                             field="x-hub-signature-256")


def verify_token(secrets: Sequence[str], token: str | None, *, header: str) -> None:
    """A plain shared token (GitLab ``X-Gitlab-Token``, ``Authorization: Bearer``), constant time."""
    if not secrets:
        raise SignatureError(f"no secret configured for this source; {header} cannot be checked")
    if not token:
        raise SignatureError(f"missing {header} header", field=header.lower())
    ok = False
    for s in secrets:
        ok |= hmac.compare_digest(s.encode(), token.encode())
    if not ok:
        raise SignatureError(f"{header} does not match any configured secret", field=header.lower())
