r"""Sign and POST a deploy event: for the demo, CI scripts and tests.

::

    from analyzers.events.send import send_event
    r = send_event("http://127.0.0.1:8000/webhooks/deploys",
                   {"service": "checkout", "environment": "production", "version": "v42",
                    "started_at": "2026-11-27T10:00:00Z"},
                   secret=os.environ["DEPLOY_WEBHOOK_SECRET"])
    r.raise_for_status()   # 201 new, 200 duplicate: both mean stored

Retrying with the same ``msg_id`` is safe: the receiver deduplicates on it (when the
event has no ``event_id``), so a retry after a timeout never stores a deploy twice.

From a shell (bash, openssl, curl; :data:`SHELL_RECIPE`, tested against the receiver)::

    SECRET=whsec_...   # the receiver's DEPLOY_WEBHOOK_SECRET
    URL=http://127.0.0.1:8000/webhooks/deploys
    BODY='{"service":"checkout","environment":"production","version":"v42","started_at":"2026-11-27T10:00:00Z"}'
    ID="msg_$(date +%s%N)"; TS=$(date +%s)
    KEY=$(printf '%s' "${SECRET#whsec_}" | base64 -d | od -An -tx1 | tr -d ' \n')
    SIG=$(printf '%s' "$ID.$TS.$BODY" | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$KEY" -binary | base64)
    curl -sS -X POST "$URL" -H 'content-type: application/json' -H "webhook-id: $ID" \
         -H "webhook-timestamp: $TS" -H "webhook-signature: v1,$SIG" -d "$BODY"
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from typing import Any

import requests

from analyzers.events.signatures import parse_secrets, sign

#: Sign and POST ``$BODY`` to ``$URL`` with ``$SECRET`` from a shell (needs bash, openssl, curl).
SHELL_RECIPE = r"""
ID="msg_$(date +%s%N)"; TS=$(date +%s)
KEY=$(printf '%s' "${SECRET#whsec_}" | base64 -d | od -An -tx1 | tr -d ' \n')
SIG=$(printf '%s' "$ID.$TS.$BODY" | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$KEY" -binary | base64)
curl -sS -X POST "$URL" -H 'content-type: application/json' -H "webhook-id: $ID" \
     -H "webhook-timestamp: $TS" -H "webhook-signature: v1,$SIG" -d "$BODY"
"""


def signed_headers(body: bytes, secret: str, *, msg_id: str | None = None,
                   timestamp: int | None = None) -> dict[str, str]:
    """Standard Webhooks headers for ``body``; the first secret of a list signs."""
    secrets = parse_secrets(secret)
    mid = msg_id or f"msg_{uuid.uuid4().hex}"
    ts = int(time.time()) if timestamp is None else int(timestamp)
    return {
        "content-type": "application/json",
        "webhook-id": mid,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign(secrets[0], mid, ts, body),
    }


def encode_event(event: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON; NaN/Infinity refused here rather than by the receiver."""
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def send_event(
    url: str,
    event: Mapping[str, Any],
    secret: str,
    *,
    msg_id: str | None = None,
    timeout: float = 10,
    session: requests.Session | None = None,
) -> requests.Response:
    """POST ``event`` to ``url`` signed with ``secret``; returns the response unchecked.

    ``timeout`` is seconds for connect and read. Raises ``requests`` exceptions on
    connection errors; check ``response.status_code`` (2xx = committed) yourself.
    """
    body = encode_event(event)
    headers = signed_headers(body, secret, msg_id=msg_id)
    poster = session.post if session is not None else requests.post
    return poster(url, data=body, headers=headers, timeout=timeout)
