"""The fleet generator behind benchmarks/bench_fleet.py: seeded, valid OpenMetrics, honest truth."""

from __future__ import annotations

import re
import subprocess
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from analyzers.demo.promserver import find_binaries
from analyzers.verify.deploy import analysis_window, metric_query, plan_metrics
from benchmarks.fleet_data import (
    EFFECT_LAG_S,
    STEP_S,
    FleetParams,
    FleetPlan,
    Truth,
    fleet_config,
    fleet_end,
    plan_fleet,
    service_series,
    write_openmetrics,
)

END = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def plan() -> FleetPlan:
    return plan_fleet(FleetParams(services=6, days=10, seed=3), END)


def test_same_params_give_the_same_fleet_and_another_seed_does_not(plan: FleetPlan) -> None:
    again = plan_fleet(FleetParams(services=6, days=10, seed=3), END)
    assert [(f.deploy, f.truth) for f in again.deploys] == [(f.deploy, f.truth) for f in plan.deploys]
    for key, arr in service_series(plan, 2).items():
        np.testing.assert_array_equal(arr, service_series(again, 2)[key])
    other = plan_fleet(FleetParams(services=6, days=10, seed=4), END)
    assert [f.deploy.started_at for f in other.deploys] != [f.deploy.started_at for f in plan.deploys]
    assert not np.array_equal(service_series(other, 2)["p99"], service_series(plan, 2)["p99"])


def test_deploy_count_kinds_and_the_held_out_deploy(plan: FleetPlan) -> None:
    per_service = round(15 * 10 / 30)
    assert len(plan.deploys) == 6 * per_service
    assert len(plan.fleet) == len(plan.deploys) - 1 and plan.held_out not in plan.fleet
    assert plan.held_out.truth.kind == "noop"
    assert plan.held_out.deploy.started_at == max(f.deploy.started_at for f in plan.deploys if f.truth.kind == "noop")
    assert len({f.deploy.deploy_id for f in plan.deploys}) == len(plan.deploys)
    big = plan_fleet(FleetParams(services=40, days=30, seed=1), END)
    kinds = {f.truth.kind for f in big.deploys}
    assert kinds == {"noop", "regression", "improvement"}
    assert sum(f.truth.kind == "noop" for f in big.deploys) > 0.7 * len(big.deploys)


def test_every_deploy_has_a_day_of_history_and_its_after_window_in_the_data(plan: FleetPlan) -> None:
    config = fleet_config(plan)
    for f in plan.deploys:
        start, end = analysis_window(f.deploy, config, datetime.now(UTC))
        assert start >= plan.start, f.deploy.deploy_id
        assert end <= plan.end, f.deploy.deploy_id
        assert f.deploy.started_at.timestamp() % STEP_S == 0


def test_deploys_of_one_service_are_at_least_six_hours_apart(plan: FleetPlan) -> None:
    for svc in plan.services:
        times = sorted(f.deploy.started_at for f in plan.deploys if f.deploy.service == svc.name)
        assert all(b - a >= timedelta(hours=6) for a, b in zip(times, times[1:], strict=False))


def test_data_ends_at_least_three_hours_before_now() -> None:
    now = datetime(2026, 11, 27, 13, 59, tzinfo=UTC)
    end = fleet_end(now)
    assert now - end >= timedelta(hours=3)
    assert end.minute == 0 and end.second == 0


def test_openmetrics_file_follows_the_rules_promtool_needs(tmp_path: Path) -> None:
    plan = plan_fleet(FleetParams(services=3, days=3, seed=3), END)
    path = tmp_path / "fleet.om"
    n = write_openmetrics(plan, path)
    text = path.read_text()
    assert text.endswith("\n# EOF\n") and text.count("# EOF") == 1
    lines = text.splitlines()[:-1]
    families: list[str] = []
    last: dict[str, tuple[int, float]] = {}
    samples = 0
    current = ""
    for line in lines:
        if line.startswith("# TYPE "):
            _, _, name, mtype = line.split()
            assert name not in families, f"family {name} written in two pieces"
            families.append(name)
            current = name
            continue
        if line.startswith("#"):
            continue
        m = re.fullmatch(r'([a-z0-9_]+)\{service="(svc-\d{3})"\} (\S+) (\d+)', line)
        assert m, line
        sample, service, value, ts = m.groups()
        assert sample in (current, current + "_total"), (sample, current)
        t = int(ts)
        assert len(ts) == 10, "timestamps must be Unix seconds, not milliseconds"
        key = f"{sample}/{service}"
        if key in last:
            prev_t, prev_v = last[key]
            assert t == prev_t + STEP_S
            if sample.endswith("_total"):
                assert float(value) >= prev_v, f"counter {key} went down at {t}"
        last[key] = (t, float(value))
        samples += 1
    assert samples == n == 5 * 3 * plan.n_points
    assert len(families) == 5
    assert min(t for t, _ in last.values()) == int(plan.end.timestamp())


def test_promtool_backfills_the_file_into_blocks_covering_the_fleet(tmp_path: Path) -> None:
    small = plan_fleet(FleetParams(services=2, days=3, seed=3), END)
    path = tmp_path / "fleet.om"
    write_openmetrics(small, path)
    promtool = find_binaries()[1]
    subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", "--max-block-duration=96h", str(path),
                    str(tmp_path / "tsdb")],
                   check=True, capture_output=True, timeout=120)
    listing = subprocess.run([promtool, "tsdb", "list", str(tmp_path / "tsdb")], check=True, capture_output=True,
                             text=True, timeout=60).stdout.splitlines()[1:]
    mins = [int(row.split()[1]) for row in listing]
    maxs = [int(row.split()[2]) for row in listing]
    assert min(mins) == int(small.start.timestamp()) * 1000
    assert max(maxs) - 1 == int(small.end.timestamp()) * 1000
    assert sum(int(row.split()[4]) for row in listing) == 5 * 2 * small.n_points


def _without_effects(plan: FleetPlan) -> FleetPlan:
    noops = tuple(replace(f, truth=Truth("noop")) for f in plan.deploys)
    return replace(plan, deploys=noops)


def test_truth_factors_are_exactly_what_the_series_carry() -> None:
    plan = plan_fleet(FleetParams(services=30, days=10, seed=5), END)
    flat = _without_effects(plan)
    ts = plan.timestamps
    index = {s.name: i for i, s in enumerate(plan.services)}
    checked = 0
    cache: dict[int, tuple[dict[str, np.ndarray], dict[str, np.ndarray]]] = {}
    for f in plan.deploys:
        if f.truth.kind == "noop" or f.truth.metric == "error_ratio":
            continue
        raw = {"latency_p99": "p99", "latency_p50": "p50", "cpu": "cpu"}[str(f.truth.metric)]
        i = index[f.deploy.service]
        if i not in cache:
            cache[i] = (service_series(plan, i), service_series(flat, i))
        real, base = cache[i][0][raw], cache[i][1][raw]
        if raw == "cpu":  # counters: compare per-step increases
            real, base = np.diff(real, prepend=0.0), np.diff(base, prepend=0.0)
        k = int(np.searchsorted(ts, f.deploy.started_at.timestamp() + EFFECT_LAG_S))
        before, after = real[k - 1] / base[k - 1], real[k] / base[k]
        assert after / before == pytest.approx(f.truth.factor, rel=1e-9), f.deploy.deploy_id
        checked += 1
    assert checked >= 5


def test_noop_deploys_leave_every_series_untouched() -> None:
    plan = plan_fleet(FleetParams(services=10, days=10, seed=5), END)
    flat = _without_effects(plan)
    for i, svc in enumerate(plan.services):
        if any(f.truth.kind != "noop" for f in plan.deploys if f.deploy.service == svc.name):
            continue
        for key, arr in service_series(plan, i).items():
            np.testing.assert_array_equal(arr, service_series(flat, i)[key])
        return
    pytest.fail("no service with only no-op deploys in this seed: pick another seed")


def test_error_regressions_raise_the_error_ratio_by_the_truth() -> None:
    plan = plan_fleet(FleetParams(services=60, days=10, seed=5), END)
    ts = plan.timestamps
    found = 0
    for f in plan.deploys:
        if f.truth.kind != "regression" or f.truth.metric != "error_ratio":
            continue
        i = next(j for j, s in enumerate(plan.services) if s.name == f.deploy.service)
        s = service_series(plan, i)
        req, err = np.diff(s["requests"], prepend=0), np.diff(s["errors"], prepend=0)
        k = int(np.searchsorted(ts, f.deploy.started_at.timestamp() + EFFECT_LAG_S))
        lo, hi = slice(k - 60, k), slice(k, k + 60)
        jump = err[hi].sum() / req[hi].sum() - err[lo].sum() / req[lo].sum()
        assert jump == pytest.approx(f.truth.factor, abs=0.01), f.deploy.deploy_id
        found += 1
    assert found >= 1


def test_config_renders_one_query_per_catalog_metric_for_every_deploy(plan: FleetPlan) -> None:
    config = fleet_config(plan, "http://127.0.0.1:1")
    assert config.verification.history_s == 86400.0 and config.verification.step_s == STEP_S
    assert config.prometheus.scrape_interval_s == STEP_S  # rate windows of 4 scrapes, not 1
    f = plan.deploys[0]
    plans = plan_metrics(f.deploy, config)
    assert sorted(p.spec.key for p in plans) == ["cpu", "error_ratio", "latency_p50", "latency_p99", "request_rate"]
    q = metric_query(config, "cpu", f.deploy)
    assert q == f'sum(rate(fleet_cpu_seconds_total{{service="{f.deploy.service}"}}[4m]))'
    declared = next(d for d in plan_fleet(FleetParams(services=40, days=30, seed=1), END).deploys
                    if d.truth.kind == "improvement")
    assert [(e.metric, e.expect) for e in declared.deploy.expectations] == [(declared.truth.metric, "decrease")]
