"""The Prometheus client against a local HTTP server replaying recorded answers.

The real ``requests`` session talks to a real socket; only the answers are canned, and only
for what a real Prometheus on loopback cannot be made to produce (see tests/integration for
the live round trips).
"""

from __future__ import annotations

import json
import math
import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pandas as pd
import pytest

from analyzers.config import PrometheusSettings
from analyzers.errors import (
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
from analyzers.prometheus.client import PrometheusClient, align_range, choose_step

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "recorded"
T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def recorded(name: str) -> dict:
    return json.loads((RECORDED / f"{name}.json").read_text(encoding="utf-8"))


class Replay:
    """A tiny HTTP server on 127.0.0.1 answering every request with ``self.answer``."""

    def __init__(self) -> None:
        self.answer: dict = {"status": 200, "content_type": "application/json", "body": "{}"}
        self.by_path: dict[str, dict] = {}  # answers for particular paths, else ``answer``
        self.requests: list[dict] = []
        replay = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode() if length else ""
                replay.requests.append(
                    {"method": self.command, "path": self.path, "headers": dict(self.headers), "form": parse_qs(raw)}
                )
                answer = replay.by_path.get(self.path, replay.answer)
                body = answer["body"].encode()
                self.send_response(answer["status"])
                self.send_header("Content-Type", answer["content_type"])
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _serve

            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def play(self, name: str) -> None:
        self.answer = recorded(name)

    def success(self, data: dict, **extra: object) -> None:
        self.answer = {"status": 200, "content_type": "application/json", "body": json.dumps({"status": "success", "data": data, **extra})}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def server() -> Iterator[Replay]:
    s = Replay()
    yield s
    s.close()


@pytest.fixture
def replay(server: Replay) -> Replay:
    server.requests.clear()
    server.by_path.clear()
    return server


def client_for(replay: Replay, **settings: Any) -> PrometheusClient:
    return PrometheusClient(replace(PrometheusSettings(url=replay.url, timeout_s=5.0), **settings))


# --- typed errors per errorType --------------------------------------------------------

@pytest.mark.parametrize(
    "name, cls, code, advice",
    [
        ("bad_data", BadDataError, 400, "fix the PromQL"),
        ("execution", ExecutionError, 422, "group_left"),
        ("timeout", QueryTimeoutError, 503, "narrow the time range"),
        ("canceled", CanceledError, 499, "retry"),
        ("internal", InternalError, 500, "check its logs"),
        ("unavailable", UnavailableError, 503, "retry in a minute"),
        ("not_found", NotFoundError, 404, "path_prefix"),
        ("not_acceptable", NotAcceptableError, 406, "Prometheus-compatible API"),
    ],
)
def test_each_error_type_raises_its_class_with_server_query_and_advice(
    replay: Replay, name: str, cls: type[PrometheusQueryError], code: int, advice: str
) -> None:
    replay.play(name)
    query = 'sum(rate(http_requests_total{service="checkout"}[5m]))'
    with pytest.raises(cls) as info:
        client_for(replay).query(query, T0)
    err = info.value
    error_text = json.loads(recorded(name)["body"])["error"]
    assert str(err).startswith(f"Prometheus at {replay.url} answered {code} {name}: {error_text}")
    assert f"(query: {query})" in str(err)
    assert advice in str(err)
    assert (err.status_code, err.error_type, err.url, err.query) == (code, name, replay.url, query)
    assert isinstance(err, PrometheusError)


def test_victoriametrics_numeric_error_type_maps_by_status(replay: Replay) -> None:
    replay.play("victoriametrics_parse_error")
    with pytest.raises(ExecutionError) as info:
        client_for(replay).query("sum(rate(x[5m]", T0)
    assert str(info.value).startswith(f"Prometheus at {replay.url} answered 422 execution: error when executing")
    assert info.value.error_type == "execution" and info.value.status_code == 422


def test_a_503_timeout_is_not_retried(replay: Replay) -> None:
    replay.play("timeout")
    with pytest.raises(QueryTimeoutError):
        client_for(replay).query_range("up", T0, T0 + timedelta(hours=1))
    assert len(replay.requests) == 1


def test_injected_session_gets_no_retries_either(replay: Replay) -> None:
    import requests

    replay.play("unavailable")
    session = requests.Session()
    with pytest.raises(UnavailableError):
        PrometheusClient(PrometheusSettings(url=replay.url), session=session).query("up", T0)
    assert len(replay.requests) == 1


def test_non_json_502_from_a_proxy_is_a_typed_error_quoting_the_body(replay: Replay) -> None:
    replay.play("proxy_502_html")
    with pytest.raises(PrometheusQueryError) as info:
        client_for(replay).query("up", T0)
    msg = str(info.value)
    assert info.value.status_code == 502
    assert info.value.error_type == "http_502"
    assert f"Prometheus at {replay.url} answered 502 with a non-JSON body" in msg
    assert "502 Bad Gateway" in msg and "(query: up)" in msg and "proxy" in msg


def test_plain_404_points_at_the_path_prefix(replay: Replay) -> None:
    replay.play("plain_404")
    with pytest.raises(NotFoundError, match="path_prefix"):
        client_for(replay, path_prefix="/prometheus").query("up", T0)
    assert replay.requests[0]["path"] == "/prometheus/api/v1/query"


def test_401_asks_for_credentials_or_tenant(replay: Replay) -> None:
    replay.play("unauthorized")
    with pytest.raises(PrometheusQueryError, match="credentials .* tenant") as info:
        client_for(replay).query("up", T0)
    assert info.value.status_code == 401


def test_200_with_html_says_the_url_is_not_the_api(replay: Replay) -> None:
    replay.answer = {"status": 200, "content_type": "text/html", "body": "<html>Grafana</html>"}
    with pytest.raises(PrometheusQueryError, match="not a UI or a login page"):
        client_for(replay).query("up", T0)


def test_connection_refused_is_unreachable_with_the_reason() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    client = PrometheusClient(PrometheusSettings(url=url, timeout_s=2.0))
    with pytest.raises(PrometheusUnreachable) as info:
        client.query_range("up", T0, T0 + timedelta(minutes=5))
    msg = str(info.value)
    assert msg.startswith(f"cannot reach Prometheus at {url}: ")
    assert "Connection refused" in msg
    assert msg.endswith("check prometheus.url in the config or that the server is up")
    assert info.value.query == "up"
    assert client.ready() is False


def test_client_timeout_is_unreachable_and_quick() -> None:
    listener = socket.socket()  # accepts connections (backlog) but never answers
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        client = PrometheusClient(PrometheusSettings(url=url, timeout_s=0.2))
        with pytest.raises(PrometheusUnreachable, match="no answer within 0.4 s"):
            client.query("up", T0)
        # every path says it timed out, with what to do next: the label look-ups (prometheus-api-client,
        # which waits prometheus.timeout_s itself) and the readiness check too
        with pytest.raises(PrometheusUnreachable, match=r"no answer within 0\.2 s.*raise prometheus\.timeout"):
            client.label_values("job", "up", T0, T0 + timedelta(minutes=5))
        with pytest.raises(PrometheusUnreachable, match=r"no answer within 0\.4 s.*raise prometheus\.timeout"):
            client.check()
    finally:
        listener.close()


# --- warnings, infos, results ----------------------------------------------------------

def test_thanos_partial_response_warnings_are_surfaced(replay: Replay) -> None:
    replay.play("thanos_partial_response")
    result = client_for(replay, partial_response=True, dedup=False).query("sum by (job) (up)", T0)
    assert result.warnings == (
        "No StoreAPIs matched for this query",
        "receive-0: rpc error: code = DeadlineExceeded desc = context deadline exceeded",
    )
    assert result.series[0].labels == {"job": "api"}
    assert result.series[0].values.iloc[0] == 42.0
    form = replay.requests[0]["form"]
    assert form["partial_response"] == ["true"] and form["dedup"] == ["false"]


def test_victoriametrics_partial_results_are_surfaced(replay: Replay) -> None:
    replay.play("victoriametrics_partial")
    result = client_for(replay, path_prefix="/select/0/prometheus").query("sum(up)", T0)
    assert result.warnings == ("partial response: some storage nodes did not answer, the result may be incomplete",)
    assert result.series[0].values.iloc[0] == 7.0
    assert replay.requests[0]["path"] == "/select/0/prometheus/api/v1/query"


def test_infos_are_surfaced_as_warnings(replay: Replay) -> None:
    replay.play("infos")
    result = client_for(replay).query("rate(u[5m])", T0)
    assert result.empty
    assert result.warnings == (
        'info: PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: "u" (1:6)',
    )


def test_native_histograms_are_kept_on_the_series(replay: Replay) -> None:
    replay.play("native_histogram")
    result = client_for(replay).query_range("rpc_duration_seconds", T0, T0 + timedelta(minutes=1))
    (series,) = result.series
    assert series.values.empty
    assert len(series.histograms) == 2
    ts, hist = series.histograms[1]
    assert ts == pd.Timestamp(1795766015, unit="s", tz="UTC")
    assert (hist.count, hist.sum) == (12.0, 4.0)
    assert [(b.lower, b.upper, b.count) for b in hist.buckets] == [(0.25, 0.5, 5.0), (0.5, 1.0, 7.0)]


def test_matrix_parsing_keeps_milliseconds_and_special_floats(replay: Replay) -> None:
    values = [[1795766000.123, "1.5"], [1795766015.456, "NaN"], [1795766030, "+Inf"], [1795766045, "-Inf"]]
    replay.success({"resultType": "matrix", "result": [{"metric": {"le": "+Inf"}, "values": values}]})
    result = client_for(replay).query_range("x", T0, T0 + timedelta(minutes=1))
    s = result.series[0].values
    assert str(s.index.tz) == "UTC"
    assert s.index[0] == pd.Timestamp(1795766000123, unit="ms", tz="UTC")
    assert s.index[1] == pd.Timestamp(1795766015456, unit="ms", tz="UTC")
    assert s.iloc[0] == 1.5 and math.isnan(s.iloc[1]) and s.iloc[2] == math.inf and s.iloc[3] == -math.inf


def test_scalar_result(replay: Replay) -> None:
    replay.success({"resultType": "scalar", "result": [1795766000, "3.25"]})
    result = client_for(replay).query("scalar(up)", T0)
    assert result.result_type == "scalar"
    assert result.series[0].labels == {} and result.series[0].values.iloc[0] == 3.25


# --- request shape: POST form, headers, auth, alignment ----------------------------------

def test_query_range_posts_an_aligned_form_with_auth_and_tenant(replay: Replay) -> None:
    replay.success({"resultType": "matrix", "result": []})
    client = client_for(replay, bearer_token="s3cret", tenant="team-a", headers={"X-Extra": "1"}, timeout_s=30.0)
    start = T0 + timedelta(seconds=7)
    end = T0 + timedelta(hours=6, seconds=3)
    result = client.query_range('up{job="a b"}', start, end)
    req = replay.requests[0]
    assert req["method"] == "POST" and req["path"] == "/api/v1/query_range"
    assert req["headers"]["Authorization"] == "Bearer s3cret"
    assert req["headers"]["X-Scope-OrgID"] == "team-a"
    assert req["headers"]["X-Extra"] == "1"
    form = {k: v[0] for k, v in req["form"].items()}
    assert form["query"] == 'up{job="a b"}'
    assert form["step"] == "30"  # 6 h / 1,200 points = 18 s -> the next nice step
    assert int(form["start"]) % 30 == 0 and int(form["start"]) <= start.timestamp()
    assert int(form["end"]) % 30 == 0 and int(form["end"]) >= end.timestamp()
    assert form["timeout"] == "30s"
    assert "partial_response" not in form and "dedup" not in form
    assert result.step_s == 30.0 and result.start.timestamp() == int(form["start"])


def test_query_count_counts_every_query_sent_including_failed_ones(replay: Replay) -> None:
    client = client_for(replay)
    replay.success({"resultType": "vector", "result": []})
    client.query("up", T0)
    client.query_range("up", T0, T0 + timedelta(hours=1))
    replay.play("bad_data")
    with pytest.raises(BadDataError):
        client.query("up(", T0)
    assert client.query_count == 3 == len(replay.requests)


def test_basic_auth_is_sent_and_describe_hides_credentials(replay: Replay) -> None:
    replay.success({"resultType": "vector", "result": []})
    url = replay.url.replace("http://", "http://user:pw@")
    client = PrometheusClient(PrometheusSettings(url=url, basic_auth=("alice", "pa55"), tenant="t1"))
    client.query("up", T0)
    assert replay.requests[0]["headers"]["Authorization"] == "Basic YWxpY2U6cGE1NQ=="
    assert client.describe() == f"{replay.url} (tenant t1)"
    assert "pa55" not in repr(client) and "pw" not in client.describe()


@pytest.mark.parametrize(
    "url, shown",
    [
        ("https://bob:hunter2@prom.example:9443/", "https://prom.example:9443"),
        ("http://[::1]:9090", "http://[::1]:9090"),
        ("http://u:p@[::1]:9090/x/", "http://[::1]:9090/x"),
    ],
)
def test_describe_never_shows_credentials(url: str, shown: str) -> None:
    assert PrometheusClient(PrometheusSettings(url=url)).describe() == shown


def test_ready_uses_the_ready_endpoint(replay: Replay) -> None:
    replay.answer = {"status": 200, "content_type": "text/plain", "body": "Prometheus Server is Ready.\n"}
    assert client_for(replay, path_prefix="/prom").ready() is True
    assert replay.requests[0]["path"] == "/prom/-/ready"


def test_ready_falls_back_to_a_trivial_query_when_there_is_no_ready_endpoint(replay: Replay) -> None:
    replay.by_path["/-/ready"] = recorded("plain_404")  # e.g. a query frontend without /-/ready
    replay.success({"resultType": "scalar", "result": [1795766000, "1"]})
    assert client_for(replay).ready() is True
    assert [r["path"] for r in replay.requests] == ["/-/ready", "/api/v1/query"]
    assert replay.requests[1]["form"]["query"] == ["1"]


def test_not_ready_when_neither_endpoint_answers(replay: Replay) -> None:
    replay.play("plain_404")
    assert client_for(replay).ready() is False
    with pytest.raises(NotFoundError, match="path_prefix"):
        client_for(replay).check()
    replay.answer = {"status": 503, "content_type": "text/plain", "body": "Service Unavailable"}
    assert client_for(replay).ready() is False
    with pytest.raises(UnavailableError, match=r"is not ready \(HTTP 503: Service Unavailable\)"):
        client_for(replay).check()


@pytest.mark.parametrize("url", ["", "127.0.0.1:9090", "ftp://host", "http://", "http://h:9090/?token=s3cret"])
def test_bad_urls_are_refused_naming_the_setting(url: str) -> None:
    with pytest.raises(ConfigError, match="prometheus.url") as info:
        PrometheusClient(PrometheusSettings(url=url))
    assert "s3cret" not in str(info.value)


def test_naive_datetimes_are_refused() -> None:
    client = PrometheusClient(PrometheusSettings())
    with pytest.raises(ValueError, match="naive"):
        client.query("up", datetime(2026, 1, 1))


# --- steps -----------------------------------------------------------------------------

@pytest.mark.parametrize(
    "range_s, step_s, expected",
    [
        (3600, None, 15.0),  # 1 h: 3 s raw, floored at the 15 s scrape interval
        (86400, None, 120.0),  # 24 h / 1,199 = 72 s -> 2 m
        (7 * 86400, None, 600.0),  # 7 d / 1,199 = 504 s -> 10 m
        (86400, 1.0, 8.0),  # explicit 1 s would be 86,401 points: raised to stay under 11,000
        (3600, 60.0, 60.0),  # explicit and small enough: kept
        (400 * 86400, None, 43200.0),
    ],
)
def test_choose_step(range_s: float, step_s: float | None, expected: float) -> None:
    step = choose_step(range_s, step_s, min_step_s=15.0)
    assert step == expected
    start, end = align_range(1_000_003.0, 1_000_003.0 + range_s, step)
    assert (end - start) / step + 1 <= 11000


def test_a_long_range_at_a_fine_step_is_raised_not_refused(replay: Replay) -> None:
    replay.success({"resultType": "matrix", "result": []})
    result = client_for(replay).query_range("up", T0, T0 + timedelta(days=30), step_s=15.0)
    form = {k: v[0] for k, v in replay.requests[0]["form"].items()}
    points = (int(form["end"]) - int(form["start"])) / float(form["step"]) + 1
    assert points <= 11000 and result.step_s == float(form["step"]) > 15.0


def test_proxy_and_no_proxy_from_the_environment_are_honoured(replay: Replay, monkeypatch: pytest.MonkeyPatch) -> None:
    """The client reads the environment once (not per request) but with requests' own rules."""
    proxy = Replay()
    try:
        proxy.success({"resultType": "vector", "result": []})
        replay.success({"resultType": "vector", "result": []})
        for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("http_proxy", proxy.url)
        via_proxy = client_for(replay)
        via_proxy.query("up", T0)
        via_proxy.query("up", T0)
        assert [r["path"] for r in proxy.requests] == [f"{replay.url}/api/v1/query"] * 2
        assert replay.requests == []
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        monkeypatch.setenv("no_proxy", "127.0.0.1")
        client_for(replay).query("up", T0)
        assert len(proxy.requests) == 2 and [r["path"] for r in replay.requests] == ["/api/v1/query"]
    finally:
        proxy.close()


def test_loopback_answers_are_asked_uncompressed_unless_configured(replay: Replay) -> None:
    """Compressing costs Prometheus more CPU than the query on the same host: plain JSON there,
    and the configured header wins."""
    replay.success({"resultType": "vector", "result": []})
    client_for(replay).query("up", T0)
    client_for(replay, headers={"accept-encoding": "gzip"}).query("up", T0)
    localhost = client_for(replay, url=replay.url.replace("127.0.0.1", "localhost"))
    localhost.query("up", T0)
    sent = [{k.lower(): v for k, v in r["headers"].items()}.get("accept-encoding") for r in replay.requests]
    assert sent == ["identity", "gzip", "identity"]
    remote = PrometheusClient(PrometheusSettings(url="http://prometheus.monitoring:9090"))
    assert "Accept-Encoding" not in remote._headers  # requests' default (gzip, deflate) applies


def test_sample_values_parse_to_the_same_floats_as_float() -> None:
    """The fast path (one orjson array) must give exactly float()'s answer, and odd input falls back."""
    import numpy as np

    from analyzers.prometheus.results import _values

    rng = np.random.default_rng(11)
    raw = [repr(float(x)) for x in rng.standard_normal(5000) * 10.0 ** rng.integers(-12, 12, 5000)]
    raw += ["0", "-0", "1e+06", "2.5E-7", "123456789.123456789", "0.1", "3"]
    fast = _values(raw)
    slow = np.array([float(v) for v in raw])
    assert fast.tobytes() == slow.tobytes()  # bit for bit, signs of zero included
    special = _values(["1", "NaN", "+Inf", "-Inf", "01", "+1", "1."])
    assert np.isnan(special[1]) and special[2] == np.inf and special[3] == -np.inf
    assert list(special[[0, 4, 5, 6]]) == [1.0, 1.0, 1.0, 1.0]
    with pytest.raises(ValueError):
        _values(["1", "1,2"])  # not a number: refused, not split into two samples
    with pytest.raises(ValueError):
        _values(["1", "true"])


def test_no_private_attribute_of_a_library_object_is_used() -> None:
    """prometheus-api-client (and every other library) is used through its public API only: no
    ``obj._name`` in the runtime code unless ``_name`` is defined by this project itself (a method,
    function, class or attribute of its own); ``client._connect._session`` would be caught."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    files = [*sorted((root / "analyzers").rglob("*.py")), *sorted((root / "dashboard").rglob("*.py"))]
    trees = {path: ast.parse(path.read_text(), str(path)) for path in files}
    own: set[str] = set()
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                own.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                own.add(node.attr)  # self._x = ... (the project's own attributes)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                own.add(node.id)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                own.add(node.target.id)
    offenders = [
        f"{path.relative_to(root)}:{node.lineno}: .{node.attr}"
        for path, tree in trees.items()
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
        and node.attr not in own
    ]
    # Names the project also uses for its own attributes (``_session``) would pass the check above:
    # on the PrometheusConnect handle itself, only public names may be read.
    offenders += [
        f"{path.relative_to(root)}:{node.lineno}: connect.{node.attr}"
        for path, tree in trees.items()
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr.startswith("_")
        and isinstance(node.value, ast.Attribute) and node.value.attr == "connect"
    ]
    assert offenders == []


def test_prometheus_connect_is_built_on_the_clients_own_session() -> None:
    from prometheus_api_client import PrometheusConnect

    client = PrometheusClient(PrometheusSettings(url="http://127.0.0.1:9", headers={"X-Team": "pay"}))
    assert isinstance(client.connect, PrometheusConnect)
    assert client.connect.url == client.base_url and client.connect.headers["X-Team"] == "pay"
