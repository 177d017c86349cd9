"""The Prometheus adapter: the one module that talks HTTP to a Prometheus-compatible API.

prometheus-api-client's ``PrometheusConnect`` is used through its public API only: it is
built with the connection settings (url, headers, bearer/basic auth, TLS, tenant header, path
prefix, no retries) on a ``requests.Session`` this module creates and keeps, and it answers the
metadata calls (:meth:`PrometheusClient.label_names`, :meth:`PrometheusClient.label_values`).
The queries themselves (``/api/v1/query``, ``/api/v1/query_range``, ``/api/v1/query_exemplars``)
are POSTed here with a form body, because the library's ``custom_query`` and
``custom_query_range`` cannot give users what they need: they put the query in the URL (long
queries hit URL limits in proxies), drop ``warnings``/``infos`` (Thanos reports failed stores
only there) and the ``resultType``, raise raw bytes instead of the ``errorType``, round
timestamps to seconds, and cannot send per-call ``partial_response``/``dedup``; it has no
exemplar call at all. ``docs/prometheus.md`` lists each gap and how it is closed.

Usage::

    client = PrometheusClient(config.prometheus)
    result = client.query_range('sum(rate(http_requests_total[5m]))', start, end)
    for s in result.series:
        print(s.labels, s.values.tail())
    for w in result.warnings:   # e.g. Thanos partial responses: show them, never drop them
        print("warning:", w)

Every failure is an :class:`analyzers.errors.PrometheusError`: ``PrometheusUnreachable``
when there was no HTTP answer, a ``PrometheusQueryError`` subclass per errorType when there
was one (the library's calls included: a response hook reads the envelope before the library
sees it). Messages name the server, the status, the query and what to do.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import requests
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from analyzers.config import PrometheusSettings
from analyzers.errors import (
    ERROR_TYPES,
    BadDataError,
    CanceledError,
    ConfigError,
    ExecutionError,
    InternalError,
    NotAcceptableError,
    NotFoundError,
    PrometheusError,
    PrometheusQueryError,
    PrometheusUnreachable,
    QueryTimeoutError,
    UnavailableError,
)
from analyzers.prometheus.connection import failure_reason, is_loopback, strip_credentials, timed_out
from analyzers.prometheus.results import (
    MAX_POINTS,
    Exemplar,
    NativeBucket,
    NativeHistogram,
    PromSeries,
    QueryResult,
    align_range,
    choose_step,
    epoch,
    from_epoch,
    parse_exemplars,
    parse_result,
)
from analyzers.text import format_duration

__all__ = [
    "Exemplar",
    "NativeBucket",
    "NativeHistogram",
    "PromSeries",
    "PrometheusClient",
    "QueryResult",
    "align_range",
    "choose_step",
]

_ADVICE = {
    "bad_data": "fix the PromQL (check the metric's query template in the config) or the time range and step",
    "execution": "the query parsed but failed while running: check the template (e.g. add on()/group_left for many-to-many matches)",
    "timeout": "narrow the time range, raise the step, or raise the server's --query.timeout and prometheus.timeout",
    "canceled": "the server or a proxy cancelled the query: retry, and check the proxy's timeouts",
    "internal": "the server failed internally: check its logs, then retry",
    "unavailable": "the server is starting or overloaded: retry in a minute",
    "not_found": "check prometheus.url and prometheus.path_prefix (Mimir: /prometheus, VictoriaMetrics cluster: /select/0/prometheus)",
    "not_acceptable": "the server cannot produce a JSON answer for this request: check that prometheus.url points at a Prometheus-compatible API",
}

_STATUS_CLASSES: dict[int, type[PrometheusQueryError]] = {
    400: BadDataError,
    404: NotFoundError,
    406: NotAcceptableError,
    422: ExecutionError,
    499: CanceledError,
    500: InternalError,
    503: UnavailableError,
    504: QueryTimeoutError,
}


# --- the client ------------------------------------------------------------------------

class PrometheusClient:
    """Queries a Prometheus-compatible HTTP API (Prometheus, Thanos, Mimir, VictoriaMetrics).

    ``session`` is injectable (tests, custom TLS or proxies); the client mounts an adapter
    without retries on the server's URL, so a 503 (query timeout) is reported at once.
    Answers from a loopback server are requested uncompressed (``Accept-Encoding: identity``:
    compressing costs the server more CPU than evaluating the query); for a server on another
    host, set ``prometheus.headers = {"Accept-Encoding": "identity"}`` when its CPU, not the
    network, is the limit. The
    server-side ``timeout`` parameter is ``settings.timeout_s``; the client waits up to 5 s
    longer so that the server's typed timeout error arrives before the client gives up.
    """

    def __init__(self, settings: PrometheusSettings, session: requests.Session | None = None) -> None:
        scheme = urlsplit(settings.url).scheme
        if scheme not in ("http", "https") or not urlsplit(settings.url).hostname:
            raise ConfigError(
                "prometheus.url must be an http:// or https:// URL such as http://127.0.0.1:9090, got "
                f"{(strip_credentials(settings.url) if '@' in settings.url else settings.url)!r}"
            )
        if urlsplit(settings.url).query or urlsplit(settings.url).fragment:
            raise ConfigError(
                f"prometheus.url must not carry a query string or fragment ({strip_credentials(settings.url)}?...): "
                "put tokens in prometheus.bearer_token_env or prometheus.headers"
            )
        self.settings = settings
        self.base_url = settings.base_url
        headers = dict(settings.headers)
        if is_loopback(settings.url) and not any(k.lower() == "accept-encoding" for k in headers):
            # On the same host, gzip costs the server about two thirds of its CPU per range query
            # (and the client a decompression) and saves nothing: ask for plain JSON.
            headers["Accept-Encoding"] = "identity"
        if settings.bearer_token:
            headers["Authorization"] = f"Bearer {settings.bearer_token}"
        if settings.tenant:
            headers[settings.tenant_header] = settings.tenant
        no_retry = Retry(total=0, connect=0, read=0, redirect=0, status=0, raise_on_status=False)
        own = session is None
        self._session: requests.Session = requests.Session() if own else session  # type: ignore[assignment]
        self._headers = headers
        self._auth: Any = settings.basic_auth
        self._verify: Any = settings.verify_tls
        if own:
            self._settle_environment()
            self._session.verify = self._verify
        # No retries on the server's URL: a 503 is a query *timeout*, to be reported at once.
        self._session.mount(self.base_url, HTTPAdapter(max_retries=no_retry))
        self._session.hooks["response"].append(self._check_library_response)
        #: prometheus-api-client, public API only: connection settings and the metadata calls.
        self.connect = PrometheusConnect(
            url=self.base_url,
            headers=headers,
            disable_ssl=settings.verify_tls is False,
            retry=no_retry,
            auth=self._auth,
            session=self._session,
            timeout=settings.timeout_s,
            method="POST",
        )
        self._timeout = (min(10.0, settings.timeout_s), settings.timeout_s + min(5.0, settings.timeout_s))
        self._library_timeout_s = settings.timeout_s  # the library's calls wait this long
        self._count_lock = threading.Lock()
        self._query_count = 0

    def _settle_environment(self) -> None:
        """Read what requests takes from the environment (proxies and NO_PROXY, ~/.netrc, the CA
        bundle variables) once, with requests' own rules, instead of on every request (about
        1 ms each, thousands of times in a fleet replay): every request goes to ``base_url``."""
        s = self._session
        if not s.trust_env:
            return
        for scheme, proxy in requests.utils.get_environ_proxies(self.base_url).items():
            s.proxies.setdefault(scheme, proxy)
        if self._auth is None:
            self._auth = requests.utils.get_netrc_auth(self.base_url)
        if self._verify is True or self._verify is None:
            self._verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or self._verify
        s.trust_env = False

    @property
    def query_count(self) -> int:
        """Queries sent so far by this client (for "one query per panel" budgets and benchmarks)."""
        return self._query_count

    def __repr__(self) -> str:
        return f"PrometheusClient({self.describe()!r})"

    def describe(self) -> str:
        """Where queries go, without credentials (safe for logs, errors and the dashboard)."""
        text = strip_credentials(self.base_url)
        if self.settings.tenant:
            text += f" (tenant {self.settings.tenant})"
        return text

    def close(self) -> None:
        self.connect.close()

    def reset_connections(self) -> None:
        """Forget pooled connections without closing them on the server's side (new ones are
        opened on demand). Call it in a forked child: the parent's keep-alive sockets must
        not carry two processes' requests."""
        for adapter in self._session.adapters.values():
            pm = getattr(adapter, "poolmanager", None)
            if pm is not None:
                pm.pools.clear()

    # -- public queries --

    def query_range(
        self,
        query: str,
        start: datetime,
        end: datetime,
        step_s: float | None = None,
        *,
        max_points: int = MAX_POINTS,
    ) -> QueryResult:
        """Evaluate ``query`` over [start, end] (aware datetimes) and return every series.

        The step is chosen from the range when None (about 1,200 points, never finer than
        the configured scrape interval) and raised whenever the range would exceed
        ``max_points`` points per series. Start is aligned down and end up to the step.
        """
        t0, t1 = epoch(start), epoch(end)
        min_step = self.settings.scrape_interval_s if step_s is None else 1e-3
        step = choose_step(t1 - t0, step_s, min_step_s=min_step, max_points=max_points)
        a0, a1 = align_range(t0, t1, step)
        params = {"query": query, "start": _num(a0), "end": _num(a1), "step": _num(step)}
        data, warnings = self._post("/api/v1/query_range", params, query)
        return self._result(query, data, warnings, step, from_epoch(a0), from_epoch(a1))

    def query(self, query: str, at: datetime) -> QueryResult:
        """Evaluate ``query`` at one instant ``at`` (aware datetime)."""
        t = epoch(at)
        data, warnings = self._post("/api/v1/query", {"query": query, "time": _num(t)}, query)
        when = from_epoch(t)
        return self._result(query, data, warnings, None, when, when)

    def query_exemplars(self, query: str, start: datetime, end: datetime) -> tuple[Exemplar, ...]:
        """Exemplars of the series ``query`` selects in ``[start, end]``, oldest first.

        Prometheus keeps them only with ``--enable-feature=exemplar-storage`` (an empty answer
        otherwise, or when the scraped target exposes none: callers say so, never "no traces").
        """
        params = {"query": query, "start": _num(epoch(start)), "end": _num(epoch(end))}
        data, _ = self._post("/api/v1/query_exemplars", params, query)
        try:
            return parse_exemplars(data if data is not None else [])
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise self._unreadable(query, exc) from exc

    def label_names(self, match: str, start: datetime, end: datetime) -> tuple[str, ...]:
        """Label names of the series ``match`` selects in ``[start, end]``, sorted (through
        prometheus-api-client's ``get_label_names``)."""
        params = {"match[]": match, "start": _num(epoch(start)), "end": _num(epoch(end))}
        names = self._library(lambda: self.connect.get_label_names(params=params), match)
        return tuple(sorted(str(n) for n in names or ()))

    def label_values(self, label: str, match: str, start: datetime, end: datetime) -> tuple[str, ...]:
        """Values of ``label`` on the series ``match`` selects in ``[start, end]``, sorted
        (through prometheus-api-client's ``get_label_values``)."""
        params = {"match[]": match, "start": _num(epoch(start)), "end": _num(epoch(end))}
        values = self._library(lambda: self.connect.get_label_values(label, params=params), match)
        return tuple(sorted(str(v) for v in values or ()))

    def ready(self) -> bool:
        """True when the server answers ``/-/ready`` (or, behind a query frontend, a trivial query)."""
        try:
            self.check()
        except PrometheusError:
            return False
        return True

    def check(self) -> None:
        """Like :meth:`ready` but raises the typed error saying why the server is not usable."""
        where = self.describe()
        try:
            r = self._session.get(
                self.base_url + "/-/ready", headers=self._headers, auth=self._auth, verify=self._verify, timeout=self._timeout
            )
        except requests.RequestException as exc:
            raise self._unreachable(exc) from exc
        if r.status_code == 200:
            return
        if r.status_code in (404, 405):  # query frontends and proxies often lack /-/ready
            self.query("1", datetime.now(UTC))
            return
        snippet = " ".join(r.text.split())[:200] or "(empty body)"
        raise UnavailableError(
            f"Prometheus at {where} is not ready (HTTP {r.status_code}: {snippet}); "
            "it may still be replaying its TSDB after a start: wait, or check its logs",
            url=where,
            status_code=r.status_code,
        )

    # -- internals --

    def _result(
        self, query: str, data: Any, warnings: tuple[str, ...], step: float | None, start: datetime, end: datetime
    ) -> QueryResult:
        try:
            result_type, series = parse_result(data if isinstance(data, Mapping) else {})
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise self._unreadable(query, exc) from exc
        return QueryResult(query, series, warnings, step, start, end, result_type)

    def _unreachable(self, exc: requests.RequestException, query: str | None = None,
                     waited_s: float | None = None) -> PrometheusUnreachable:
        """The typed error for a request that got no answer, with what to do next for its cause:
        a timeout (``waited_s``: the read timeout, this client's own unless given), a TLS failure,
        or anything else on the way (refused, reset, DNS)."""
        where = self.describe()
        if timed_out(exc):
            why = (f"no answer within {waited_s or self._timeout[1]:g} s ({failure_reason(exc)}); "
                   "narrow the time range or raise prometheus.timeout, and check that the server is up")
        elif isinstance(exc, requests.exceptions.SSLError):
            why = (f"TLS failed ({failure_reason(exc)}); "
                   "set prometheus.verify_tls to the CA bundle path (or false for a test server)")
        else:
            why = f"{failure_reason(exc)}; check prometheus.url in the config or that the server is up"
        return PrometheusUnreachable(f"cannot reach Prometheus at {where}: {why}", url=where, query=query)

    def _unreadable(self, query: str, exc: BaseException) -> PrometheusQueryError:
        return PrometheusQueryError(
            f"Prometheus at {self.describe()} answered with a result this client cannot read ({exc}) "
            f"(query: {query}); check that prometheus.url points at a Prometheus-compatible API",
            url=self.describe(),
            query=query,
            status_code=200,
        )

    def _library(self, call: Any, query: str) -> Any:
        """Run one prometheus-api-client call with this client's error contract. An HTTP error
        answer was already turned into its typed error by :meth:`_check_library_response`."""
        with self._count_lock:
            self._query_count += 1
        try:
            return call()
        except requests.RequestException as exc:  # includes the library's JSON decoding errors
            if isinstance(exc, requests.exceptions.JSONDecodeError):
                raise self._unreadable(query, exc) from exc
            raise self._unreachable(exc, query, waited_s=self._library_timeout_s) from exc
        except (PrometheusApiClientException, KeyError, TypeError, ValueError) as exc:
            raise self._unreadable(query, exc) from exc

    def _check_library_response(self, resp: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
        """``requests`` response hook: an error answer to one of prometheus-api-client's API calls
        becomes the typed error (errorType, advice) before the library turns it into raw bytes.
        The queries this module sends itself read their envelope in :meth:`_post`."""
        path = urlsplit(resp.url).path
        base = urlsplit(self.base_url).path.rstrip("/")
        if resp.status_code < 400 or not path.startswith(base + "/api/") or path.endswith(_OWN_PATHS):
            return resp
        request = resp.request
        form = parse_qs(urlsplit(request.url or "").query)
        if isinstance(request.body, (str, bytes)):
            body = request.body.decode("utf-8", "replace") if isinstance(request.body, bytes) else request.body
            form.update(parse_qs(body))
        query = " ".join(form.get("query") or form.get("match[]") or [path])
        self._envelope(resp, query)  # raises for every status >= 400
        return resp

    def _params(self, params: dict[str, str]) -> dict[str, str]:
        out = dict(params)
        out["timeout"] = format_duration(self.settings.timeout_s)
        if self.settings.partial_response is not None:
            out["partial_response"] = "true" if self.settings.partial_response else "false"
        if self.settings.dedup is not None:
            out["dedup"] = "true" if self.settings.dedup else "false"
        return out

    def _post(self, path: str, params: dict[str, str], query: str) -> tuple[Any, tuple[str, ...]]:
        url = self.base_url + path
        with self._count_lock:
            self._query_count += 1
        try:
            resp = self._session.post(
                url,
                data=self._params(params),
                headers=self._headers,
                auth=self._auth,
                verify=self._verify,
                timeout=self._timeout,
            )
        except requests.RequestException as exc:
            raise self._unreachable(exc, query) from exc
        return self._envelope(resp, query)

    def _envelope(self, resp: requests.Response, query: str) -> tuple[Any, tuple[str, ...]]:
        where = self.describe()
        code = resp.status_code
        try:
            try:
                # orjson: a fleet replay decodes ~20 M points; it reads UTF-8 bytes 20 % faster
                # than requests' json(), which stays the fallback for other encodings.
                body = orjson.loads(resp.content)
            except orjson.JSONDecodeError:
                body = resp.json()
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except ValueError:
            snippet = " ".join(resp.text.split())[:200] or "(empty body)"
            cls = _STATUS_CLASSES.get(code, PrometheusQueryError)
            if code == 200:
                advice = "check that prometheus.url points at the Prometheus API, not a UI or a login page"
            elif code in (401, 403):
                advice = "check the credentials (prometheus.bearer_token_env / basic_auth_*) and the tenant"
            elif code in (502, 503, 504):
                advice = "a proxy or load balancer in front of Prometheus failed: check it and that Prometheus is up, then retry"
            else:
                advice = _ADVICE.get(cls.error_type, "check prometheus.url and the server's logs")
            raise cls(
                f"Prometheus at {where} answered {code} with a non-JSON body: {snippet!r} (query: {query}); {advice}",
                url=where,
                query=query,
                status_code=code,
                error_type=None if cls is not PrometheusQueryError else f"http_{code}",
            ) from None
        warnings = tuple(str(w) for w in body.get("warnings") or ()) + tuple(
            f"info: {i}" for i in body.get("infos") or ()
        )
        if body.get("isPartial") is True:  # VictoriaMetrics cluster: some vmstorage nodes missing
            warnings += ("partial response: some storage nodes did not answer, the result may be incomplete",)
        if body.get("status") == "success" and code < 400:
            return body.get("data"), warnings
        error_type = str(body.get("errorType") or "")
        if error_type.isdigit():  # VictoriaMetrics puts the HTTP status here ("422")
            error_type = ""
        error = str(body.get("error") or "(no error message)")
        cls = ERROR_TYPES.get(error_type) or _STATUS_CLASSES.get(code, PrometheusQueryError)
        if code in (401, 403):
            advice = "check the credentials (prometheus.bearer_token_env / basic_auth_*) and the tenant"
        else:
            advice = _ADVICE.get(error_type) or _ADVICE.get(cls.error_type, "check the server's logs")
        label = error_type or (cls.error_type if cls is not PrometheusQueryError else f"http_{code}")
        raise cls(
            f"Prometheus at {where} answered {code} {label}: {error} (query: {query}); {advice}",
            url=where,
            query=query,
            status_code=code,
            error_type=label,
        )


#: API paths whose answers :meth:`PrometheusClient._post` reads itself.
_OWN_PATHS = ("/api/v1/query", "/api/v1/query_range", "/api/v1/query_exemplars")


def _num(x: float) -> str:
    """Seconds as the API wants them: integers without a fraction, else up to ms."""
    return str(int(x)) if float(x).is_integer() else f"{x:.3f}"
