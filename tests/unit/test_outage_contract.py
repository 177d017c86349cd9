"""The outage contract: what counts as "could not check", and how the worker backs off."""

from __future__ import annotations

import pickle

import pytest

from analyzers.errors import (
    BadDataError,
    ExecutionError,
    InternalError,
    NotFoundError,
    PrometheusQueryError,
    PrometheusUnreachable,
    QueryTimeoutError,
    UnavailableError,
    is_outage,
    unreachable_from,
)


@pytest.mark.parametrize(("exc", "outage"), [
    (PrometheusUnreachable("refused", url="http://p:9090"), True),
    (UnavailableError("down", status_code=503), True),
    (InternalError("boom", status_code=500), True),
    (QueryTimeoutError("query timed out", status_code=503), True),
    (PrometheusQueryError("proxy answered 502 with HTML", status_code=502, error_type="http_502"), True),
    (BadDataError("parse error: unexpected }", status_code=400), False),  # the catalog's PromQL: the user's fault
    (ExecutionError("many-to-many matching", status_code=422), False),
    (NotFoundError("no such endpoint", status_code=404), False),
    (ValueError("not a Prometheus error"), False),
])
def test_outage_or_the_users_fault(exc: Exception, outage: bool) -> None:
    assert is_outage(exc) is outage


def test_an_outage_becomes_unreachable_keeping_url_and_query_across_processes() -> None:
    err = unreachable_from(UnavailableError("Prometheus at http://p:9090 answered 503", url="http://p:9090",
                                            query="up", status_code=503))
    assert isinstance(err, PrometheusUnreachable) and err.url == "http://p:9090" and err.query == "up"
    again = pickle.loads(pickle.dumps(err))  # verify_fleet's worker processes send it back pickled
    assert type(again) is PrometheusUnreachable and str(again) == str(err)
    assert (again.url, again.query) == ("http://p:9090", "up")
    same = PrometheusUnreachable("refused")
    assert unreachable_from(same) is same


def test_worker_backoff_doubles_is_bounded_jittered_and_seeded(tmp_path) -> None:
    from analyzers.config import default_config
    from analyzers.events.store import open_store
    from analyzers.server.worker import Worker

    store = open_store(f"sqlite:///{tmp_path / 'b.db'}")
    try:
        def delays(seed: int) -> list[float]:
            w = Worker(store, default_config(), seed=seed, outage_base_s=5, outage_cap_s=300)
            return [w.outage_delay() for _ in range(12)]

        a = delays(7)
        assert a == delays(7) and a != delays(8)  # seeded: the same run twice, another seed differs
        for k, d in enumerate(a):
            base = min(300.0, 5.0 * 2 ** k)
            assert 0.5 * base <= d <= base  # jitter in [0.5, 1] x the doubled base
        assert max(a) <= 300.0 and a[-1] >= 150.0  # bounded at the cap, and reaches it
    finally:
        store.close()
