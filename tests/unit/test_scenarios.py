"""The scenario generator: seeded, deploys with the promised shapes, truth that the data shows,
and OpenMetrics that follows the rules promtool needs."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from scipy.special import ndtri

from analyzers.demo.promserver import BackfillError, backfill
from analyzers.demo.scenarios import (
    BUCKETS,
    LE_LABELS,
    CaseSpec,
    EndpointProfile,
    Scenario,
    ScenarioDeploy,
    ServiceProfile,
    default_end,
    demo_cases,
    demo_scenario,
    generate,
    small_cases,
    small_scenario,
)
from analyzers.model import Deploy

NOW = datetime(2026, 11, 27, 13, 37, 12, tzinfo=UTC)
REQUIRED_EVENT_FIELDS = (
    "service", "environment", "version", "started_at", "finished_at", "deploy_id", "event_id",
    "author", "commit_sha", "description", "expectations", "kind",
)


@pytest.fixture(scope="module")
def demo() -> Scenario:
    return demo_scenario(now=NOW)


@pytest.fixture(scope="module")
def small() -> Scenario:
    return small_scenario(now=NOW)


def _parse(ts: str) -> datetime:
    assert ts.endswith("Z"), ts
    return datetime.fromisoformat(ts[:-1] + "+00:00")


# ----------------------------------------------------------------------------- seeding


def test_same_seed_and_end_give_identical_data_and_events() -> None:
    a, b = small_scenario(seed=3, now=NOW, step_s=60), small_scenario(seed=3, now=NOW, step_s=60)
    assert [d.event for d in a.deploys] == [d.event for d in b.deploys]
    assert len(a.series) == len(b.series)
    for sa, sb in zip(a.series, b.series, strict=True):
        assert sa.labels == sb.labels
        np.testing.assert_array_equal(sa.buckets, sb.buckets)
        np.testing.assert_array_equal(sa.errors, sb.errors)
        np.testing.assert_array_equal(sa.latency_sum, sb.latency_sum)


def test_another_seed_gives_other_noise() -> None:
    a, b = small_scenario(seed=3, now=NOW, step_s=60), small_scenario(seed=4, now=NOW, step_s=60)
    assert not np.array_equal(a.series[0].requests, b.series[0].requests)
    assert a.series[0].pod != b.series[0].pod  # pod hashes are seeded too


def test_default_end_is_the_hour_floor_minus_three_hours(small: Scenario) -> None:
    assert default_end(NOW) == datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    assert small.end == datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    assert small.start.tzinfo is not None and small.start.utcoffset() == timedelta(0)


def test_days_outside_retention_or_too_short_for_a_seasonal_baseline_are_refused() -> None:
    with pytest.raises(ValueError, match="days"):
        demo_scenario(days=20, now=NOW)
    with pytest.raises(ValueError, match="days"):
        demo_scenario(days=1, now=NOW)


# ----------------------------------------------------------------------------- deploy shapes


def test_demo_has_the_promised_cases(demo: Scenario) -> None:
    assert len(demo.deploys) >= 10
    assert set(demo.services) == {"checkout", "search", "payments"}
    cases = {d.case for d in demo.deploys}
    assert {"improvement", "regression", "noop", "ramp_noop", "gradual", "pair_first", "pair_second",
            "release"} <= cases
    improvement = demo.deploy("improvement")
    assert improvement.event["expectations"] == [{"metric": "latency_p99", "expect": "decrease"}]
    assert improvement.truth["latency_p99"] == "decrease" and improvement.expected_overall == "pass"
    regression = demo.deploy("regression")
    assert regression.truth["error_ratio"] == "increase" and regression.expected_overall == "fail"
    for case in ("noop", "ramp_noop", "pair_second"):
        d = demo.deploy(case)
        assert set(d.truth.values()) == {"unchanged"} and d.expected_overall == "pass"


def test_every_deploy_carries_a_complete_deploy_event(demo: Scenario, small: Scenario) -> None:
    for d in demo.deploys + small.deploys:
        ev = d.event
        missing = [k for k in REQUIRED_EVENT_FIELDS if k not in ev]
        assert not missing, (d.case, missing)
        assert ev["environment"] == "production"
        assert ev["event_id"] != ev["deploy_id"]
        assert re.fullmatch(r"[0-9a-f]{40}", ev["commit_sha"])
        assert _parse(ev["finished_at"]) - _parse(ev["started_at"]) == timedelta(seconds=d.rollout_s)
        assert set(d.truth) == {"error_ratio", "latency_p99", "latency_shift", "latency_p50", "request_rate"}
        deploy = d.to_deploy()
        assert isinstance(deploy, Deploy) and deploy.started_at == d.started_at
    ids = [d.event["deploy_id"] for d in demo.deploys]
    assert len(set(ids)) == len(ids)


def test_release_is_a_feature_flag_without_new_pods(demo: Scenario) -> None:
    rel = demo.deploy("release")
    assert rel.event["kind"] == "release"
    assert rel.event["flag"] and (rel.event["from"], rel.event["to"]) == ("off", "on")
    assert rel.truth["request_rate"] == "increase"
    pods_before = {s.pod for s in demo.series if s.service == rel.service and s.start_idx < demo.index_of(rel.started_at)}
    k = demo.index_of(rel.started_at + timedelta(minutes=30))
    alive_after = {s.pod for s in demo.series if s.service == rel.service and s.start_idx <= k < s.start_idx + len(s.requests)}
    assert alive_after <= pods_before
    assert rel.to_deploy().flag == rel.event["flag"]


def test_deploy_windows_are_clean_and_have_a_day_of_history(demo: Scenario, small: Scenario) -> None:
    for sc in (demo, small):
        for d in sc.deploys:
            assert d.started_at - sc.start >= timedelta(hours=26), (sc.name, d.case)
            assert sc.end - d.finished_at >= timedelta(hours=1), (sc.name, d.case)
            for other in sc.deploys:
                if other is d:
                    continue
                gap = abs(other.started_at - d.started_at)
                if other.service == d.service:
                    assert gap >= timedelta(hours=3), (sc.name, d.case, other.case)
                    # the seasonal baseline (same windows a day earlier) is clean too
                    assert abs(gap - timedelta(days=1)) >= timedelta(hours=3), (sc.name, d.case, other.case)
                elif {d.case, other.case} != {"pair_first", "pair_second"}:
                    assert gap >= timedelta(minutes=40), (sc.name, d.case, other.case)


def test_pair_is_two_services_within_two_minutes(demo: Scenario) -> None:
    a, b = demo.deploy("pair_first"), demo.deploy("pair_second")
    assert a.service != b.service
    assert timedelta(0) < b.started_at - a.started_at <= timedelta(minutes=2)


@pytest.mark.parametrize("fixture_name", ["demo", "small"])
def test_ramp_noop_sits_in_the_morning_ramp(fixture_name: str, request: pytest.FixtureRequest) -> None:
    sc: Scenario = request.getfixturevalue(fixture_name)
    d = sc.deploy("ramp_noop")
    local = (d.started_at.hour + d.started_at.minute / 60 + sc.utc_offset_h) % 24
    assert 6.5 <= local <= 8.5
    inc = sc.service_increments(d.service)
    k = sc.index_of(d.started_at)
    hour = 3600 // sc.step_s
    assert inc["requests"][k : k + hour].sum() > 1.15 * inc["requests"][k - hour : k].sum()  # traffic rising


def test_gradual_rollout_shifts_the_version_mix_pod_by_pod(demo: Scenario) -> None:
    d = demo.deploy("gradual")
    assert d.finished_at - d.started_at == timedelta(minutes=20)
    new_version = d.event["version"]
    k0 = demo.index_of(d.started_at)
    shares = []
    for minute in (2, 7, 12, 17, 25):
        k = k0 + minute * 60 // demo.step_s
        alive = [s for s in demo.series if s.service == d.service and s.start_idx <= k < s.start_idx + len(s.requests)]
        pods = {s.pod: s.version for s in alive}
        shares.append(sum(v == new_version for v in pods.values()) / len(pods))
    assert shares == sorted(shares) and shares[0] == 0.0 and shares[-1] == 1.0
    assert len(set(shares)) >= 4  # at least two intermediate mixes
    names = {s.pod for s in demo.series if s.service == d.service and s.version == new_version}
    assert all(n.startswith(f"{d.service}-") for n in names) and len(names) == 2


# ----------------------------------------------------------------------------- truth vs data

_LOG_B = np.log(BUCKETS)


def _quantile(counts: np.ndarray, q: float) -> float:
    """Quantile from non-cumulative bucket counts, interpolating probit(F) linearly in log(le).

    Exact for a log-normal, so unlike Prometheus' linear interpolation it does not stick to
    bucket bounds; the truth is about the distribution, not about the estimator.
    """
    cum = np.cumsum(counts)[:-1] / counts.sum()
    z = ndtri(np.clip(cum, 1e-9, 1 - 1e-9))
    i = min(max(int(np.searchsorted(cum, q)), 1), len(BUCKETS) - 1)
    return math.exp(_LOG_B[i - 1] + (_LOG_B[i] - _LOG_B[i - 1]) * (ndtri(q) - z[i - 1]) / (z[i] - z[i - 1]))


def _window(sc: Scenario, inc: dict[str, np.ndarray], start: datetime, seconds: int) -> dict[str, float]:
    a = sc.index_of(start)
    b = a + seconds // sc.step_s
    req = float(inc["requests"][a:b].sum())
    buckets = inc["buckets"][a:b].sum(axis=0)
    return {
        "error_ratio": inc["errors"][a:b].sum() / req,
        "request_rate": req / seconds,
        "latency_p99": _quantile(buckets, 0.99),
        "latency_p50": _quantile(buckets, 0.5),
        "latency_shift": _quantile(buckets, 0.5),  # the median, as latency_shift reads it
    }


def _seasonal_log_changes(sc: Scenario, d: ScenarioDeploy, seconds: int = 3600) -> dict[str, float]:
    """log(after/before) around the deploy minus the same at the same clock time a day earlier.

    ``error_ratio_se`` is the standard error of the error-ratio term under Poisson counts
    (errors are few, so an unchanged ratio is judged against it).
    """
    inc = sc.service_increments(d.service)
    out: dict[str, float] = {}
    inv_errors = 0.0
    for lag, sign in ((timedelta(0), 1.0), (timedelta(days=1), -1.0)):
        t = d.started_at - lag
        for start, sgn in ((t - timedelta(seconds=seconds), -sign), (t + timedelta(seconds=d.rollout_s + 120), sign)):
            w = _window(sc, inc, start, seconds)
            for k, v in w.items():
                out[k] = out.get(k, 0.0) + sgn * math.log(v)
            a = sc.index_of(start)
            inv_errors += 1 / max(int(inc["errors"][a : a + seconds // sc.step_s].sum()), 1)
    out["error_ratio_se"] = math.sqrt(inv_errors)
    return out


# Classification thresholds on the (natural) log change: a changed metric moves beyond it in
# the stated direction, an unchanged one stays within it. Error counts are low, so an
# unchanged error ratio only has to stay within 3.5 standard errors (Poisson).
_THRESHOLD = {"error_ratio": 1.5, "latency_p99": 0.3, "latency_p50": 0.3, "latency_shift": 0.3, "request_rate": 0.2}


def _deploy_cases() -> Iterator[tuple[str, str]]:
    for name, cases in (("demo", demo_cases()), ("small", small_cases())):
        for c in cases:
            yield name, c.case


@pytest.mark.parametrize(("scenario_name", "case"), list(_deploy_cases()))
def test_truth_is_what_the_generated_data_shows(scenario_name: str, case: str, demo: Scenario, small: Scenario) -> None:
    sc = demo if scenario_name == "demo" else small
    d = sc.deploy(case)
    changes = _seasonal_log_changes(sc, d)
    for metric, truth in d.truth.items():
        v = changes[metric]
        if truth == "increase":
            assert v >= _THRESHOLD[metric], (metric, truth, v)
        elif truth == "decrease":
            assert v <= -_THRESHOLD[metric], (metric, truth, v)
        elif metric == "error_ratio":
            assert abs(v) <= 3.5 * changes["error_ratio_se"], (metric, truth, v, changes["error_ratio_se"])
        else:
            assert abs(v) <= _THRESHOLD[metric], (metric, truth, v)


def _truth_mismatches(sc: Scenario) -> list[str]:
    wrong = []
    for d in sc.deploys:
        changes = _seasonal_log_changes(sc, d)
        for metric, truth in d.truth.items():
            v, t = changes[metric], _THRESHOLD[metric]
            if metric == "error_ratio" and truth == "unchanged":
                t = 3.5 * changes["error_ratio_se"]
            ok = {"increase": v >= t, "decrease": v <= -t, "unchanged": abs(v) <= t}[truth]
            if not ok:
                wrong.append(f"{d.case}/{metric}: truth {truth}, log change {v:+.2f}")
    return wrong


def test_a_no_op_deploy_brings_pods_as_fast_as_the_ones_they_replace() -> None:
    """Pod i of a new version runs where pod i ran: a deploy moves latency by its effect only.

    Each slow rollout (an hour, two pods) keeps old and new pod i serving side by side for 15
    minutes; at 2,000 requests a second their medians agree within 1.5 % (sampling error ~0.3 %).
    Pods with offsets drawn anew per pod (sd 3 %) differed by up to 10 % of p99 on a no-op.
    """
    profile = ServiceProfile("api", (EndpointProfile("/a", 2000.0, 0.05), EndpointProfile("/b", 2000.0, 0.2)),
                             sigma=0.5, error_ratio=0.001, first_version="v1.0.0")
    cases = [CaseSpec(f"noop{i}", "api", "no change", rollout_s=3600) for i in range(3)]
    sc = generate(name="nodes", seed=5, end=NOW, days=0.6, step_s=15, services=(profile,), cases=cases,
                  utc_offset_h=0.0, first_deploy_after_s=3600, same_service_gap_s=3 * 3600, tail_s=3600)
    gaps = []
    for d in sc.deploys:
        k0 = sc.index_of(d.started_at)
        for ep in ("/a", "/b"):
            new = sorted((s for s in sc.series if s.endpoint == ep and s.version == d.event["version"]),
                         key=lambda s: s.start_idx)
            old = sorted((s for s in sc.series if s.endpoint == ep and s.start_idx < k0
                          and s.start_idx + len(s.requests) > k0 and s.version != d.event["version"]),
                         key=lambda s: s.start_idx + len(s.requests))
            assert len(new) == len(old) == 2
            for o, n in zip(old, new, strict=True):
                lo, hi = n.start_idx, o.start_idx + len(o.requests)  # both serve in between
                assert hi - lo >= 50
                median = [_quantile(s.buckets[lo - s.start_idx : hi - s.start_idx].sum(axis=0), 0.5) for s in (o, n)]
                gaps.append(math.log(median[1] / median[0]))
    assert len(gaps) == 12
    assert max(abs(g) for g in gaps) < 0.015, gaps


@pytest.mark.parametrize("hours_later", [5, 11, 19])
def test_demo_truth_holds_whatever_hour_it_is_generated(hours_later: int) -> None:
    """The demo's deploy times follow the clock (the ramp case sits at 07:20 UTC), so the
    noise differs with the hour ``make demo`` runs; the truth must hold for every one."""
    sc = demo_scenario(now=NOW + timedelta(hours=hours_later))
    assert _truth_mismatches(sc) == []


def test_small_scenario_data_does_not_depend_on_the_hour() -> None:
    """The fixture regenerates it every session: only the timestamps may move."""
    a = small_scenario(now=NOW, step_s=60)
    b = small_scenario(now=NOW + timedelta(hours=7), step_s=60)
    assert b.start - a.start == timedelta(hours=7)
    assert [(d.case, d.truth) for d in a.deploys] == [(d.case, d.truth) for d in b.deploys]
    for sa, sb in zip(a.series, b.series, strict=True):
        np.testing.assert_array_equal(sa.buckets, sb.buckets)
        np.testing.assert_array_equal(sa.errors, sb.errors)


def test_improvement_cuts_p99_by_about_forty_percent_at_the_deploy(demo: Scenario) -> None:
    d = demo.deploy("improvement")
    inc = demo.service_increments(d.service)
    before = _window(demo, inc, d.started_at - timedelta(minutes=30), 1800)
    after = _window(demo, inc, d.finished_at + timedelta(minutes=2), 1800)
    assert 0.45 <= after["latency_p99"] / before["latency_p99"] <= 0.75
    assert 0.85 <= after["latency_p50"] / before["latency_p50"] <= 1.15


def test_regression_takes_the_error_ratio_from_half_a_percent_to_about_five(demo: Scenario) -> None:
    d = demo.deploy("regression")
    inc = demo.service_increments(d.service)
    before = _window(demo, inc, d.started_at - timedelta(hours=1), 3600)["error_ratio"]
    after = _window(demo, inc, d.finished_at + timedelta(minutes=2), 3600)["error_ratio"]
    assert 0.003 <= before <= 0.008 and 0.035 <= after <= 0.07


# ----------------------------------------------------------------------------- OpenMetrics


def _validate_openmetrics(path: Path) -> tuple[int, set[str]]:
    """Check the rules promtool relies on; returns (samples, families)."""
    sample_re = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+) (\d+)$')
    families_done: set[str] = set()
    family: str | None = None
    last_ts: dict[str, int] = {}
    last_val: dict[str, float] = {}
    point: dict[str, float] = {}
    samples = 0
    lines = path.read_text().splitlines()
    assert lines[-1] == "# EOF"
    for line in lines[:-1]:
        if line.startswith("# TYPE "):
            name = line.split()[2]
            assert name not in families_done, f"family {name} split"
            if family:
                families_done.add(family)
            family = name
            continue
        if line.startswith("#"):
            continue
        m = sample_re.match(line)
        assert m, line
        name, labels, value, ts = m.group(1), m.group(2) or "", float(m.group(3)), int(m.group(4))
        assert family and name.startswith(family), (family, line)
        assert 1_000_000_000 < ts < 4_000_000_000, f"timestamp not in seconds: {line}"
        key = name + labels
        assert ts >= last_ts.get(key, 0), f"series out of time order: {line}"
        if ts == last_ts.get(key):
            raise AssertionError(f"duplicate timestamp: {line}")
        if name.endswith(("_total", "_count", "_bucket", "_sum")):
            assert value >= last_val.get(key, 0.0), f"counter went down: {line}"
        last_ts[key], last_val[key] = ts, value
        if name.endswith("_bucket"):
            base = re.sub(r',?le="[^"]*"', "", labels)
            le = re.search(r'le="([^"]*)"', labels).group(1)  # type: ignore[union-attr]
            if le == LE_LABELS[0]:
                point = {}
            assert value >= max(point.values(), default=0.0), f"buckets not cumulative: {line}"
            point[le] = value
        elif name.endswith("_count") and family.endswith("_seconds"):
            assert list(point) == list(LE_LABELS), "missing buckets before _count"
            assert point["+Inf"] == value, f"+Inf bucket != _count: {line} ({base})"
        samples += 1
    if family:
        families_done.add(family)
    return samples, families_done


def test_openmetrics_follows_the_backfill_rules(tmp_path: Path) -> None:
    sc = small_scenario(now=NOW, step_s=300)
    path = tmp_path / "small.om"
    n = sc.write_openmetrics(path)
    samples, families = _validate_openmetrics(path)
    assert samples == n
    assert families == {"http_request_duration_seconds", "http_requests", "http_request_errors"}
    expected = sum(len(s.requests) for s in sc.series) * (len(LE_LABELS) + 2 + 2)
    assert n == expected


def test_openmetrics_counters_equal_the_generated_increments(tmp_path: Path) -> None:
    sc = small_scenario(now=NOW, step_s=300)
    s = sc.series[0]
    one = dataclasses.replace(sc, series=(s,))
    path = tmp_path / "one.om"
    one.write_openmetrics(path)
    totals = [line for line in path.read_text().splitlines() if line.startswith("http_requests_total{")]
    assert len(totals) == len(s.requests)
    assert int(totals[-1].split()[-2]) == int(s.requests.sum())
    assert f'pod="{s.pod}"' in totals[0] and f'version="{s.version}"' in totals[0]
    first_ts = int(totals[0].split()[-1])
    assert first_ts == int((sc.start + timedelta(seconds=s.start_idx * sc.step_s)).timestamp())


def test_promtool_accepts_the_file_and_reports_broken_ones(tmp_path: Path) -> None:
    sc = small_scenario(now=NOW, step_s=300)
    good = tmp_path / "good.om"
    dataclasses.replace(sc, series=sc.series[:4]).write_openmetrics(good)
    backfill(good, tmp_path / "tsdb")
    assert any(p.is_dir() and (p / "meta.json").exists() for p in (tmp_path / "tsdb").iterdir())
    bad = tmp_path / "bad.om"
    bad.write_text(good.read_text().replace("# EOF\n", ""))
    with pytest.raises(BackfillError, match="EOF|promtool"):
        backfill(bad, tmp_path / "tsdb-bad")


def test_demo_generates_and_writes_in_well_under_a_minute(tmp_path: Path) -> None:
    import time

    t0 = time.perf_counter()
    sc = demo_scenario(now=NOW)
    n = sc.write_openmetrics(tmp_path / "demo.om")
    elapsed = time.perf_counter() - t0
    assert n > 3_000_000  # 3 days at 15 s
    assert elapsed < 60, f"demo generation + write took {elapsed:.1f} s (budget: under a minute)"
    names = {s.pod for s in sc.series}
    assert len(sc.series) * (len(LE_LABELS) + 4) < 2000, "cardinality crept up"
    assert len(names) <= 40


def test_naive_end_is_taken_as_utc() -> None:
    naive = datetime(2026, 11, 20, 12, 0)
    assert small_scenario(end=naive, step_s=300).end == naive.replace(tzinfo=UTC)


def test_the_demo_config_slos_burn_under_1x_in_the_normal_state_and_over_it_on_a_latency_regression(
        tmp_path: Path) -> None:
    """Burn rate = bad share / (1 - objective), from the scenario's own bucket counts: under 1x over
    the last day for every service (the demo's SLO panel must not cry wolf), over 1x in the 30 min
    after checkout's latency regression."""
    from analyzers.config import load_config
    from analyzers.demo.run import _write_demo_config

    cfg = load_config(_write_demo_config(tmp_path, "http://127.0.0.1:9", "sqlite:///x.db", 8501))
    scenario = demo_scenario(seed=7, end=datetime(2026, 12, 1, 21, tzinfo=UTC))
    per_day = 86400 // scenario.step_s

    def burn(service: str, sl: slice) -> float:
        slo = cfg.slo_for(service)
        cum = np.cumsum(scenario.service_increments(service)["buckets"], axis=1)[sl]
        j = LE_LABELS.index(f"{slo.threshold_s:g}")
        return float(1 - cum[:, j].sum() / cum[:, -1].sum()) / (1 - slo.objective)

    for service in scenario.services:
        assert burn(service, slice(scenario.n_steps - per_day, None)) < 1.0, service
    bad = scenario.deploy("latency_regression")
    k = scenario.index_of(bad.finished_at)
    assert burn("checkout", slice(k, k + 1800 // scenario.step_s)) > 2.0
