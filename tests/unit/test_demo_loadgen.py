"""The load generator's pre-signed request pool: every request unique, none sent stale."""

from __future__ import annotations

import time

from analyzers.demo import loadgen
from analyzers.events.signatures import parse_secrets, verify


def _headers_and_body(raw: bytes) -> tuple[dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")[1:]
    return {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}, body


def test_pool_hands_out_each_signed_request_once_then_signs_on_the_fly() -> None:
    pool = loadgen._Requests("127.0.0.1", 8000, "run1", 50)
    reqs = [pool.take() for _ in range(60)]
    assert len(set(reqs)) == 60 and pool.signed_late == 10
    headers, body = _headers_and_body(reqs[0])
    assert int(headers["content-length"]) == len(body)
    assert verify(parse_secrets(loadgen.SECRET), headers, body, now=time.time()) == headers["webhook-id"]


def test_requests_older_than_the_tolerance_allows_are_signed_afresh() -> None:
    pool = loadgen._Requests("127.0.0.1", 8000, "run2", 3000)
    pool.signed_at -= loadgen._Requests.MAX_AGE_S + 1  # as if the run had lasted four minutes
    reqs = [pool.take() for _ in range(10)]
    assert pool.signed_late == 10  # none of the aged pool is sent
    headers, body = _headers_and_body(reqs[-1])
    assert verify(parse_secrets(loadgen.SECRET), headers, body, now=time.time()) == headers["webhook-id"]
