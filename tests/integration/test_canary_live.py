"""Canary vs baseline straight from a real Prometheus: versions by label, queries, edge cases."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from analyzers.config import CanarySettings, Config, ServiceSpec, default_config
from analyzers.errors import ConfigError
from analyzers.events.store import open_store
from analyzers.model import Deploy
from analyzers.prometheus.client import PrometheusClient
from analyzers.verify.canary import canary_matcher, canary_verdict, judge_canary, safe_judge
from tests.fixtures.sink import Sink
from tests.integration.canary_data import CanaryProm, canary_prom  # noqa: F401 - fixture

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _deploy(cp: CanaryProm, service: str, version: str = "v2") -> Deploy:
    return Deploy(deploy_id=f"{service}-{version}", service=service, environment="production", version=version,
                  started_at=cp.canary_start)


def _cfg(cp: CanaryProm, **canary: object) -> Config:
    return replace(default_config().with_prometheus_url(cp.url), canary=CanarySettings(**canary))  # type: ignore[arg-type]


def test_regressed_canary_fails_on_errors_not_latency(canary_prom: CanaryProm) -> None:  # noqa: F811
    cfg = _cfg(canary_prom)
    rep = judge_canary(_deploy(canary_prom, "shop"), cfg, PrometheusClient(cfg.prometheus), now=canary_prom.now)
    j = rep.judgement
    assert j.overall == "fail"
    by = {c.metric: c for c in j.comparisons}
    assert by["error_ratio"].status == "regressed"
    assert by["latency_p99"].status == "ok"
    # one budget split by weight: the error counts 3, latency 1 ([canary] weights' default)
    assert (by["error_ratio"].alpha, by["latency_p99"].alpha) == pytest.approx((0.0075, 0.0025), rel=1e-9)
    # both versions over the same minutes: the 30 whole minutes since the canary started
    assert by["error_ratio"].intervals == 30
    assert by["error_ratio"].canary_exposure == pytest.approx(0.25 * 50 * 60 * 30, rel=0.05)
    assert 'sum by (version) (increase(http_request_errors_total{service="shop"}[1m]))' in rep.queries["error_ratio"]
    assert rep.queries["latency_p99"] == [
        'sum by (le, version) (increase(http_request_duration_seconds_bucket{service="shop"}[1m]))']
    # the first crossing: the e-process is computed from the start at every look, so an earlier
    # look sees the same crossing (or none yet)
    first = by["error_ratio"].detected_index
    assert first is not None and first < 10
    early = judge_canary(_deploy(canary_prom, "shop"), cfg, PrometheusClient(cfg.prometheus),
                         now=canary_prom.canary_start + timedelta(minutes=first + 2))
    assert next(c for c in early.judgement.comparisons if c.metric == "error_ratio").detected_index == first


def test_noop_canary_passes_only_after_the_minimum_duration(canary_prom: CanaryProm) -> None:  # noqa: F811
    cfg = _cfg(canary_prom, min_duration_s=1500.0)
    client = PrometheusClient(cfg.prometheus)
    d = _deploy(canary_prom, "cart")
    assert judge_canary(d, cfg, client, now=canary_prom.now).judgement.overall == "pass"
    early = judge_canary(d, cfg, client, now=canary_prom.canary_start + timedelta(minutes=20)).judgement
    assert all(c.status == "ok" for c in early.comparisons)  # every metric passes already ...
    assert early.overall == "inconclusive"  # ... but the canary has served 20 of its 25 minutes
    assert "a pass needs 25m" in early.reason


def test_no_canary_series_is_inconclusive_and_says_why(canary_prom: CanaryProm) -> None:  # noqa: F811
    cfg = _cfg(canary_prom)
    rep = judge_canary(_deploy(canary_prom, "quiet"), cfg, PrometheusClient(cfg.prometheus), now=canary_prom.now)
    assert rep.judgement.overall == "inconclusive"
    assert 'No series with version="v2" yet (versions seen: v1)' in rep.judgement.reason
    too_soon = judge_canary(_deploy(canary_prom, "cart"), cfg, PrometheusClient(cfg.prometheus),
                            now=canary_prom.canary_start + timedelta(seconds=30)).judgement
    assert too_soon.overall == "inconclusive" and "first full interval" in too_soon.reason


def test_prometheus_down_is_inconclusive_never_a_pass(canary_prom: CanaryProm, stopped_prometheus_url: str) -> None:  # noqa: F811
    cfg = _cfg(canary_prom).with_prometheus_url(stopped_prometheus_url)
    v = safe_judge(_deploy(canary_prom, "cart"), cfg, PrometheusClient(cfg.prometheus), now=canary_prom.now)
    assert v is not None and v.overall == "inconclusive"
    assert all(m.outcome == "inconclusive" for m in v.metrics)
    assert any("Query failed" in m.reason for m in v.metrics)


def test_dry_run_metric_reported_but_not_enforced(canary_prom: CanaryProm) -> None:  # noqa: F811
    cfg = replace(_cfg(canary_prom), services={"shop": ServiceSpec(name="shop", dry_run=("error_ratio",))})
    rep = judge_canary(_deploy(canary_prom, "shop"), cfg, PrometheusClient(cfg.prometheus), now=canary_prom.now)
    assert rep.judgement.overall == "pass"  # latency fine, errors only in dry-run
    assert rep.judgement.enforced_overall == "fail"
    v = canary_verdict(_deploy(canary_prom, "shop"), rep, now=canary_prom.now)
    err = next(m for m in v.metrics if m.metric == "error_ratio")
    assert err.dry_run and err.outcome == "regressed" and err.reason.startswith("[dry-run]") and not err.failed
    assert any("would make this canary fail" in w for w in v.warnings)
    assert v.check_kind == "canary"


def test_versions_by_a_pattern_instead_of_the_version(canary_prom: CanaryProm) -> None:  # noqa: F811
    # e.g. pods by name; here the version label matched by a regex: same answer as by equality
    cfg = _cfg(canary_prom, canary_match="v[2-9]")
    rep = judge_canary(_deploy(canary_prom, "shop", version="anything"), cfg, PrometheusClient(cfg.prometheus),
                       now=canary_prom.now)
    assert rep.judgement.overall == "fail"
    flagger_pods = canary_matcher(_cfg(canary_prom, label="pod", canary_match="$service-(?!primary-).*"),
                                  _deploy(canary_prom, "shop.v"))
    assert flagger_pods("shop.v-7d9c-abc") and not flagger_pods("shop.v-primary-5f6-xyz")
    assert not flagger_pods("shopxv-7d9c")  # the service name is escaped, '.' is literal
    with pytest.raises(ConfigError, match="canary_match is not a valid regex"):
        canary_matcher(_cfg(canary_prom, canary_match="v[2"), _deploy(canary_prom, "shop"))


@pytest.mark.parametrize(("service", "code", "word"), [("shop", 1, "FAIL"), ("cart", 0, "PASS"), ("quiet", 2, "INCONCLUSIVE")])
def test_cli_canary_exit_codes(canary_prom: CanaryProm, tmp_path: Path, service: str, code: int, word: str) -> None:  # noqa: F811
    store_url = f"sqlite:///{tmp_path / 'c.db'}"
    store = open_store(store_url)
    d = _deploy(canary_prom, service)
    store.record_event("generic", d.deploy_id, {"service": service}, d)
    store.close()
    r = subprocess.run([sys.executable, "-m", "analyzers", "canary", "--service", service, "--version", "v2",
                        "--store", store_url, "--prometheus-url", canary_prom.url], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == code, r.stdout + r.stderr
    assert r.stdout.startswith(f"{service} v2 canary: {word}:"), r.stdout
    assert "error_ratio" in r.stdout and "latency_p99" in r.stdout
    store = open_store(store_url)
    try:  # stored as a canary verdict
        assert [v.check_kind for v in store.verdict_history(d.deploy_id)] == ["canary"]
    finally:
        store.close()


def test_gauge_per_version_paired_level_test(canary_prom: CanaryProm) -> None:  # noqa: F811
    from analyzers.config import MetricSpec

    mem = MetricSpec(key="memory", query='sum(process_resident_memory_bytes{service="$service"})', unit="bytes",
                     good="decrease", min_effect_rel=0.05, kind="gauge",
                     per_version='avg by (version) (process_resident_memory_bytes{service="$service"})')
    base = _cfg(canary_prom, metrics=("memory",))
    cfg = replace(base, metrics={**base.metrics, "memory": mem})
    client = PrometheusClient(cfg.prometheus)
    shop = judge_canary(_deploy(canary_prom, "shop"), cfg, client, now=canary_prom.now)
    (c,) = shop.judgement.comparisons
    assert c.status == "regressed" and c.method.startswith("paired difference")
    assert c.ratio == pytest.approx(0.3 * 200e6, rel=0.25)  # canary - baseline in bytes
    assert shop.queries["memory"] == ['avg by (version) (process_resident_memory_bytes{service="shop"})']
    (c,) = judge_canary(_deploy(canary_prom, "cart"), cfg, client, now=canary_prom.now).judgement.comparisons
    assert c.status != "regressed", c.reason


def _worker_run(cp: CanaryProm, tmp_path: Path, service: str, url: str | None = None,
                again: bool = False) -> tuple[list, list, list]:
    from analyzers.server.worker import Worker

    cfg = _cfg(cp).with_prometheus_url(url or cp.url)
    store = open_store(f"sqlite:///{tmp_path / 'w.db'}")
    try:
        d = _deploy(cp, service)
        store.record_event("generic", d.deploy_id, {"service": service}, d)
        worker = Worker(store, cfg, clock=lambda: cp.now, deliver_fn=lambda *a, **k: [])
        produced = worker.run_once()
        if again:  # a status update's check at the same time: the same canary answer
            store.schedule_check(d.deploy_id, "finished", cp.now)
            produced += worker.run_once()
        return produced, store.verdict_history(d.deploy_id), store.list_checks(d.deploy_id)
    finally:
        store.close()


def test_worker_stores_a_canary_verdict_beside_before_after(canary_prom: CanaryProm, tmp_path: Path) -> None:  # noqa: F811
    from analyzers.events.combined import combine, latest_pair

    produced, history, _ = _worker_run(canary_prom, tmp_path, "shop")
    assert len(produced) == 1 and produced[0].check_kind == "first"
    assert [v.check_kind for v in history] == ["canary", "first"]  # the before/after verdict stays the latest
    canary, before_after = latest_pair(history)
    assert canary is not None and canary.overall == "fail"
    assert {m.metric: m.outcome for m in canary.metrics}["error_ratio"] == "regressed"
    assert canary.changes == ("first verdict",)
    overall, _why = combine(canary, before_after)
    assert overall == "fail"  # the canary's regression fails the deploy whatever before/after says


def test_worker_stores_a_canary_verdict_per_change_not_per_check(canary_prom: CanaryProm, tmp_path: Path) -> None:  # noqa: F811
    produced, history, _ = _worker_run(canary_prom, tmp_path, "shop", again=True)
    assert [v.check_kind for v in produced] == ["first", "finished"]
    assert [v.check_kind for v in history] == ["canary", "first", "finished"]  # the unchanged canary: stored once


def test_worker_stores_no_canary_verdict_without_canary_traffic(canary_prom: CanaryProm, tmp_path: Path) -> None:  # noqa: F811
    produced, history, _ = _worker_run(canary_prom, tmp_path, "quiet")
    assert len(produced) == 1
    assert [v.check_kind for v in history] == ["first"]  # "no series with version=v2" replaces nothing


def test_worker_outage_stores_neither_verdict(canary_prom: CanaryProm, tmp_path: Path,  # noqa: F811
                                              stopped_prometheus_url: str) -> None:
    produced, history, checks = _worker_run(canary_prom, tmp_path, "shop", url=stopped_prometheus_url)
    assert produced == [] and history == []
    first = next(c for c in checks if c.kind == "first")
    assert first.state == "pending" and "could not check" in (first.error or "")


def test_canary_unreachable_raises_for_the_worker(canary_prom: CanaryProm, stopped_prometheus_url: str) -> None:  # noqa: F811
    from analyzers.errors import PrometheusUnreachable

    cfg = _cfg(canary_prom).with_prometheus_url(stopped_prometheus_url)
    with pytest.raises(PrometheusUnreachable):
        judge_canary(_deploy(canary_prom, "cart"), cfg, PrometheusClient(cfg.prometheus), now=canary_prom.now,
                     raise_unreachable=True)


def _cli_verify(cp: CanaryProm, tmp_path: Path, service: str, config: str, status: str = "started") -> tuple[int, dict, list]:
    import json

    tmp_path.mkdir(exist_ok=True)
    cfg = tmp_path / f"{service}.toml"
    cfg.write_text('[verification]\nobservation = "6h"\n' + config)  # the canary started 4 h ago: still observed
    store_url = f"sqlite:///{tmp_path / f'{service}.db'}"
    store = open_store(store_url)
    d = replace(_deploy(cp, service), status=status)  # "started": the canary still runs
    store.record_event("generic", d.deploy_id, {"service": service}, d)
    store.close()
    r = subprocess.run([sys.executable, "-m", "analyzers", "verify", "--deploy", d.deploy_id, "--format", "json",
                        "--config", str(cfg), "--store", store_url, "--prometheus-url", cp.url],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    store = open_store(store_url)
    try:
        return r.returncode, json.loads(r.stdout), [(v.check_kind, v.overall) for v in store.verdict_history(d.deploy_id)]
    finally:
        store.close()


def test_cli_verify_exit_code_is_the_combined_verdict(canary_prom: CanaryProm, tmp_path: Path) -> None:  # noqa: F811
    code, report, history = _cli_verify(canary_prom, tmp_path, "shop", "")
    assert code == 1
    assert report["combined"]["verdict"] == "fail" and report["canary"]["overall"] == "fail"
    by = {m["metric"]: m for m in report["combined"]["metrics"]}
    assert by["error_ratio"]["canary"] == "regressed" and by["error_ratio"]["decided_by"] in ("both", "canary")
    assert history == [("manual", "fail"), ("canary", "fail")]  # the canary verdict judged now is stored too
    # a no-op canary asked to rule out a 1.15x rise (30 minutes cannot): before/after alone passes
    # (exit 0 before), but while both versions serve the undecided canary decides: exit 2
    code, report, history = _cli_verify(canary_prom, tmp_path, "cart", "[canary]\npass_ratio = 1.15\n")
    assert report["verdict"]["overall"] == "pass"
    assert code == 2 and report["combined"]["verdict"] == "inconclusive"
    assert "the canary decides while both serve" in report["combined"]["reason"]
    # once the rollout is over, the undecided canary period no longer vetoes before/after's pass
    code, report, history = _cli_verify(canary_prom, tmp_path / "done", "cart", "[canary]\npass_ratio = 1.15\n",
                                        status="succeeded")
    assert code == 0 and report["combined"]["verdict"] == "pass"


def test_worker_notifies_the_combined_verdict_once_per_change(canary_prom: CanaryProm, tmp_path: Path,  # noqa: F811
                                                              sink: Sink, stopped_prometheus_url: str) -> None:
    from analyzers.config import NotifyRoute, ServiceSpec
    from analyzers.server.worker import Worker

    # before/after checks only latency (unchanged: a pass); the canary also compares errors (5x: a fail)
    route = NotifyRoute("oncall", sink.url + "/hook", "json", (), ("pass", "fail", "inconclusive"))
    cfg = replace(_cfg(canary_prom, metrics=("error_ratio", "latency_p99")), routes=(route,),
                  services={"shop": ServiceSpec("shop", guards=("latency_p99",))})
    store = open_store(f"sqlite:///{tmp_path / 'n.db'}")
    try:
        d = _deploy(canary_prom, "shop")
        store.record_event("generic", d.deploy_id, {"service": "shop"}, d)
        down = Worker(store, cfg.with_prometheus_url(stopped_prometheus_url), clock=lambda: canary_prom.now)
        assert down.run_once() == [] and sink.bodies("/hook") == []  # could not check: nothing said
        later = canary_prom.now + timedelta(minutes=15)  # past the outage's backoff
        (checked,) = Worker(store, cfg, clock=lambda: later).run_once()
        assert checked.overall == "pass"  # before/after alone
        (msg,) = sink.bodies("/hook")
        assert msg["verdict"]["overall"] == "fail" and msg["verdict"]["reason"].startswith("Canary vs baseline")
        assert {m["metric"]: m["outcome"] for m in msg["verdict"]["metrics"] if m["role"] == "canary"}["error_ratio"] == "regressed"
        # the next check finds the same answer: no second message
        store.schedule_check(d.deploy_id, "finished", later)
        assert len(Worker(store, cfg, clock=lambda: later).run_once()) == 1
        assert len(sink.bodies("/hook")) == 1
        assert [x["overall"] for x in store.deliveries(d.deploy_id)] == ["fail"]
    finally:
        store.close()
