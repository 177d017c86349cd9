"""Domain errors. Callers catch :class:`AnalyzerError`; every message says what to do next.

::

    AnalyzerError
     ├── ConfigError                 bad or missing configuration (names the key)
     ├── PrometheusError             anything from the metrics back end (carries url, query)
     │    ├── PrometheusUnreachable  refused / DNS / TLS / timeout / 5xx: "could not check", retry
     │    └── PrometheusQueryError   the server answered with an error envelope or a bad status
     │         ├── BadDataError       (bad_data, 400)
     │         ├── ExecutionError     (execution, 422)
     │         ├── QueryTimeoutError  (timeout, 503)
     │         ├── CanceledError      (canceled, 499)
     │         ├── InternalError      (internal, 500)
     │         ├── UnavailableError   (unavailable, 503)
     │         ├── NotFoundError      (not_found, 404)
     │         └── NotAcceptableError (not_acceptable, 406)
     ├── StoreError                  the deploy store failed
     │    └── StoreUnavailable       locked, full or unreachable: retry later, nothing lost
     ├── EventError                  a deploy event was refused (carries ``field``)
     │    └── SignatureError         missing, stale or wrong webhook signature
     └── NotEnoughData               the statistics core cannot decide on this data
"""

from __future__ import annotations


class AnalyzerError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(AnalyzerError):
    """Configuration is missing, malformed or inconsistent."""


class PrometheusError(AnalyzerError):
    """The Prometheus-compatible back end could not answer a query."""

    def __init__(self, message: str, *, url: str | None = None, query: str | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.query = query


    def __reduce__(self) -> tuple[object, ...]:  # keep url/query across process pools
        return (_rebuild, (type(self), str(self), dict(self.__dict__)))


def _rebuild(cls: type[PrometheusError], message: str, state: dict[str, object]) -> PrometheusError:
    exc = cls.__new__(cls)
    Exception.__init__(exc, message)
    exc.__dict__.update(state)
    return exc


class PrometheusUnreachable(PrometheusError):
    """No usable answer: refused, DNS, TLS, client-side timeout, or a 5xx / server-side timeout.

    Verification raises it instead of giving a verdict ("could not check"): see
    :func:`is_outage` and :func:`unreachable_from`.
    """


class PrometheusQueryError(PrometheusError):
    """The server answered with an error envelope or an unexpected status."""

    error_type: str = "unknown"

    def __init__(
        self,
        message: str,
        *,
        url: str | None = None,
        query: str | None = None,
        status_code: int | None = None,
        error_type: str | None = None,
    ) -> None:
        super().__init__(message, url=url, query=query)
        self.status_code = status_code
        if error_type is not None:
            self.error_type = error_type


class BadDataError(PrometheusQueryError):
    error_type = "bad_data"


class ExecutionError(PrometheusQueryError):
    error_type = "execution"


class QueryTimeoutError(PrometheusQueryError):
    error_type = "timeout"


class CanceledError(PrometheusQueryError):
    error_type = "canceled"


class InternalError(PrometheusQueryError):
    error_type = "internal"


class UnavailableError(PrometheusQueryError):
    error_type = "unavailable"


class NotFoundError(PrometheusQueryError):
    error_type = "not_found"


class NotAcceptableError(PrometheusQueryError):
    error_type = "not_acceptable"


ERROR_TYPES: dict[str, type[PrometheusQueryError]] = {
    cls.error_type: cls
    for cls in (
        BadDataError,
        ExecutionError,
        QueryTimeoutError,
        CanceledError,
        InternalError,
        UnavailableError,
        NotFoundError,
        NotAcceptableError,
    )
}


def is_outage(exc: BaseException) -> bool:
    """True when Prometheus could not be asked at all or failed on its side (5xx, its own
    timeout): retry later. False for a query the user got wrong (bad PromQL: 400/422)."""
    if isinstance(exc, PrometheusUnreachable):
        return True
    if isinstance(exc, PrometheusQueryError):
        code = exc.status_code or 0
        return code >= 500 or isinstance(exc, InternalError | UnavailableError | QueryTimeoutError)
    return False


def unreachable_from(exc: PrometheusError) -> PrometheusUnreachable:
    """``exc`` as a :class:`PrometheusUnreachable` (itself when it already is one)."""
    if isinstance(exc, PrometheusUnreachable):
        return exc
    out = PrometheusUnreachable(f"{exc}", url=exc.url, query=exc.query)
    out.__cause__ = exc
    return out


class StoreError(AnalyzerError):
    """The deploy store failed."""


class StoreUnavailable(StoreError):
    """The store is locked, full or unreachable; nothing acknowledged was lost, retry later."""


class EventError(AnalyzerError):
    """A deploy event was refused. ``field`` names the offending field when known."""

    def __init__(self, message: str, *, field: str | None = None, status_code: int = 400) -> None:
        super().__init__(message)
        self.field = field
        self.status_code = status_code


class SignatureError(EventError):
    """Missing, stale or wrong webhook signature."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message, field=field, status_code=401)


class NotEnoughData(AnalyzerError):
    """The statistics core cannot decide on this data (too few points, too many gaps)."""
