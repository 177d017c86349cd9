"""Describing a connection safely: URLs without credentials, loopback hosts, why a request failed."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import requests
import urllib3

__all__ = ["causes", "failure_reason", "is_loopback", "strip_credentials", "timed_out"]


def strip_credentials(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception inside it (arguments, urllib3's ``reason``, cause, context),
    outermost first, each once."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        stack.extend(a for a in e.args if isinstance(a, BaseException))
        stack.extend(
            x for x in (getattr(e, "reason", None), e.__cause__, e.__context__) if isinstance(x, BaseException)
        )


def timed_out(exc: BaseException) -> bool:
    """Whether a request failed because no answer came in time. requests raises its ``Timeout``
    directly, but a session that retries wraps urllib3's timeout in a ``ConnectionError``."""
    return any(
        isinstance(e, (requests.Timeout, urllib3.exceptions.TimeoutError))
        # urllib3 derives "connection refused" from its connect-timeout class, as requests notes
        and not isinstance(e, urllib3.exceptions.NewConnectionError)
        for e in causes(exc)
    )


def failure_reason(exc: BaseException) -> str:
    """The innermost useful cause of a requests exception, e.g. ``[Errno 111] Connection refused``."""
    for e in causes(exc):
        if isinstance(e, OSError) and e.strerror:
            return f"[Errno {e.errno}] {e.strerror}" if e.errno else str(e.strerror)
    text = str(exc)
    m = re.search(r"\[Errno -?\d+\][^'\")]*", text)
    return (m.group(0).strip() if m else text or type(exc).__name__)[:300]


def is_loopback(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return host == "localhost" or host == "::1" or host.startswith("127.")
