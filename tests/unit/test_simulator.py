"""The live demo's traffic simulator: the scenario's model continued tick by tick, rollouts with two
versions serving, the control channel, and `demo --stop` signalling only the demo's own processes."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.exposition import generate_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from analyzers.demo.control import ControlDir
from analyzers.demo.livemodel import (
    MAX_CATCH_UP_S,
    EffectError,
    LiveWorld,
    effect_text,
    handoff_from_scenario,
    parse_effect,
)
from analyzers.demo.scenarios import BUCKETS, Effect, daily_load, small_scenario
from analyzers.demo.simulator import Simulator, WorldCollector

T0 = 1_796_000_000.0  # a fixed Unix time: nothing here depends on the clock or the zone


@pytest.fixture(scope="module")
def handoff() -> dict[str, Any]:
    from datetime import UTC, datetime

    return handoff_from_scenario(small_scenario(seed=11, end=datetime.fromtimestamp(T0, UTC)))


def _sim(handoff: dict[str, Any], tmp_path: Path, **kw: Any) -> tuple[Simulator, list[float]]:
    clock = [float(handoff["time"])]
    world = LiveWorld(json.loads(json.dumps(handoff)), seed=3)
    sim = Simulator(world, ControlDir(tmp_path).ensure(), receiver_url=None, secret=None,
                    deploy_every_s=kw.pop("deploy_every_s", 0), seed=3, clock=lambda: clock[0], **kw)
    return sim, clock


@pytest.mark.parametrize(("text", "effect"), [
    ("noop", Effect()),
    ("latency+30%", Effect(latency_median=1.3)),
    ("latency-20%", Effect(latency_median=0.8)),
    ("tail+50%", Effect(latency_sigma=1.5)),
    ("errors x5", Effect(error_ratio=5.0)),
    ("errors*2.5", Effect(error_ratio=2.5)),
    ("latency+10%, errors x2", Effect(latency_median=1.1, error_ratio=2.0)),
])
def test_effects_read_as_multipliers_and_print_back(text: str, effect: Effect) -> None:
    got = parse_effect(text)
    for key in ("latency_median", "latency_sigma", "error_ratio", "request_rate"):
        assert getattr(got, key) == pytest.approx(getattr(effect, key), rel=1e-12)
    back = parse_effect(effect_text(got))
    assert back.latency_median == pytest.approx(got.latency_median, rel=1e-12)
    assert back.error_ratio == pytest.approx(got.error_ratio, rel=1e-12)


@pytest.mark.parametrize("text", ["latency+", "errors x", "cpu+10%", "latency-100%", "latency+30"])
def test_unreadable_effects_say_what_is_accepted(text: str) -> None:
    with pytest.raises(EffectError, match="latency|zero"):
        parse_effect(text)


def test_the_world_continues_the_backfilled_counters_without_a_reset(handoff: dict[str, Any]) -> None:
    world = LiveWorld(json.loads(json.dumps(handoff)), seed=1)
    pod_name, pod = next(iter(handoff["services"]["checkout"]["pods"].items()))
    ep, start = next(iter(pod["series"].items()))
    st = next(p for p in world.services["checkout"].pods if p.name == pod_name).series[ep]
    assert st.requests == start["requests"] > 0
    last = st.requests
    for k in range(1, 30):
        world.advance(handoff["time"] + k)
        assert st.requests >= last
        last = st.requests
    assert st.requests > start["requests"]
    assert int(st.buckets.sum()) == st.requests  # +Inf equals _count
    assert st.errors <= st.requests


def test_traffic_follows_the_scenario_model_within_poisson_noise(handoff: dict[str, Any]) -> None:
    """Requests over 10 minutes of 1 s ticks match peak rate x daily load x effect (the AR(1)
    noise has sd 4%, so 4 sd of it plus Poisson noise bound the ratio)."""
    world = LiveWorld(json.loads(json.dumps(handoff)), seed=5)
    t0 = float(handoff["time"])
    before = {n: sum(st.requests for p in s.pods for st in p.series.values()) for n, s in world.services.items()}
    for k in range(1, 601):
        world.advance(t0 + k)
    for name, svc in world.services.items():
        got = sum(st.requests for p in svc.pods for st in p.series.values()) - before[name]
        hours = ((t0 + np.arange(600)) / 3600.0 + world.utc_offset_h) % 24
        load = float(np.mean(daily_load(hours)))
        peak = sum(e.peak_rps for e in svc.profile.endpoints if e.path in world.endpoints[name])
        expected = peak * load * 600 * svc.pods[0].effect.request_rate
        assert got == pytest.approx(expected, rel=0.2), name


def test_exemplars_carry_a_trace_id_and_a_value_inside_their_bucket(handoff: dict[str, Any]) -> None:
    world = LiveWorld(json.loads(json.dumps(handoff)), seed=2)
    world.advance(float(handoff["time"]) + 30)
    registry = CollectorRegistry()
    registry.register(WorldCollector(world, threading.Lock()))
    text = generate_latest(registry).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    bounds = dict(zip([f"{b:g}" for b in BUCKETS] + ["+Inf"], [0.0, *BUCKETS], strict=True))
    uppers = {f"{b:g}": b for b in BUCKETS} | {"+Inf": float("inf")}
    seen = 0
    for s in families["http_request_duration_seconds"].samples:
        if s.name.endswith("_bucket") and s.exemplar is not None:
            le = s.labels["le"]
            assert bounds[le] < s.exemplar.value <= uppers[le]
            assert len(s.exemplar.labels["trace_id"]) == 32
            seen += 1
    assert seen > 20
    for fam in ("http_requests", "http_request_errors"):
        assert any(s.exemplar is not None for s in families[fam].samples)
    labels = set(families["http_requests"].samples[0].labels)
    assert labels == {"service", "endpoint", "version", "pod"}


def test_the_first_tick_fills_the_gap_since_the_backfill_up_to_an_hour(handoff: dict[str, Any]) -> None:
    world = LiveWorld(json.loads(json.dumps(handoff)), seed=4)
    assert world.advance(float(handoff["time"]) + 90) == pytest.approx(90)
    assert world.advance(world.time + 5 * 3600) == pytest.approx(MAX_CATCH_UP_S)


def test_a_rolling_deploy_serves_two_versions_at_once_then_only_the_new_one(handoff: dict[str, Any],
                                                                          tmp_path: Path) -> None:
    sim, clock = _sim(handoff, tmp_path, rollout_s=60)
    old = sim.world.services["checkout"].version
    cid = sim.control.submit({"command": "deploy", "service": "checkout", "effect": "latency+30%"})
    sim.tick()
    answer = sim.control.wait_answer(cid, 1)
    assert answer["ok"] and answer["from"] == old and answer["to"] != old
    versions_seen: list[set[str]] = []
    for _ in range(70):
        clock[0] += 1
        sim.tick()
        state = sim.control.read_state()
        assert state is not None
        versions_seen.append({p["version"] for p in state["services"]["checkout"]["pods"]})
        shares = [p["share"] for p in state["services"]["checkout"]["pods"]]
        assert sum(shares) == pytest.approx(1.0, abs=1e-3)
    assert {old, answer["to"]} in versions_seen  # both served at once
    assert versions_seen[-1] == {answer["to"]}
    assert state["deploys"][-1]["status"] == "succeeded"
    new_pods = sim.world.services["checkout"].pods
    assert all(p.effect.latency_median == pytest.approx(
        Effect(**handoff["services"]["checkout"]["effect"]).latency_median * 1.3) for p in new_pods)


def test_a_second_deploy_during_a_rollout_is_refused_with_the_wait(handoff: dict[str, Any], tmp_path: Path) -> None:
    sim, _ = _sim(handoff, tmp_path, rollout_s=60)
    first = sim.handle({"command": "deploy", "service": "search", "effect": "noop"}, sim.clock())
    second = sim.handle({"command": "deploy", "service": "search", "effect": "noop"}, sim.clock())
    assert first["ok"] and not second["ok"]
    assert "still rolling out" in second["error"]
    unknown = sim.handle({"command": "deploy", "service": "nope", "effect": "noop"}, sim.clock())
    assert not unknown["ok"] and "checkout" in unknown["error"]
    bad = sim.handle({"command": "deploy", "service": "payments", "effect": "cpu+5%"}, sim.clock())
    assert not bad["ok"] and "latency+30%" in bad["error"]


def test_the_schedule_reverts_a_change_it_made_before_changing_anything_else(handoff: dict[str, Any],
                                                                           tmp_path: Path) -> None:
    sim, clock = _sim(handoff, tmp_path, rollout_s=0, deploy_every_s=10, canary_step_s=1)
    for _ in range(10 * 12):  # 12 automatic deploys, 4 per service
        clock[0] += 1
        sim.tick()
    deploys = list(sim.recent)
    assert len(deploys) == 12
    by_service: dict[str, list[str]] = {}
    for d in deploys:
        by_service.setdefault(d["service"], []).append(d["effect"])
    assert any(e != "noop" for effects in by_service.values() for e in effects)
    for effects in by_service.values():
        for a, b in zip(effects, effects[1:], strict=False):
            if a != "noop":
                assert b != "noop" and b != a  # the next one for that service undoes it


def test_stop_signals_only_a_process_that_still_matches_its_record(tmp_path: Path) -> None:
    from analyzers.demo.processes import pid_record, stop_demo

    argv = [sys.executable, "-c", "import time; time.sleep(60)"]
    ours = subprocess.Popen(argv)
    other = subprocess.Popen(argv)
    try:
        records = [pid_record("ours", ours.pid, argv),
                   dict(pid_record("reused pid", other.pid, argv), start_ticks=1),  # started at another time
                   dict(pid_record("other program", other.pid, argv), argv=["prometheus"])]
        (tmp_path / "pids.json").write_text(json.dumps(records + [other.pid]))  # a bare PID from an old demo
        assert stop_demo(str(tmp_path)) == 0
        assert ours.wait(timeout=10) != 0  # SIGTERM
        time.sleep(0.3)
        assert other.poll() is None  # never signalled
        assert not (tmp_path / "pids.json").exists()
    finally:
        for p in (ours, other):
            if p.poll() is None:
                p.kill()
            p.wait(timeout=10)


def test_a_canary_takes_10_then_50_percent_of_the_traffic_then_all_of_it(handoff: dict[str, Any],
                                                                        tmp_path: Path) -> None:
    """Without a receiver there is no gate to ask, so each weight just holds its step."""
    sim, clock = _sim(handoff, tmp_path, canary_step_s=20)
    with sim.lock:
        answer = sim.start_deploy("payments", parse_effect("noop"), clock[0], strategy="canary")
    shares_by_weight: dict[float, float] = {}
    served = {"new": 0, "all": 0}

    def totals() -> tuple[int, int]:
        pods = sim.world.services["payments"].pods
        new = sum(st.requests for p in pods if p.version == answer["to"] for st in p.series.values())
        return new, sum(st.requests for p in pods for st in p.series.values())

    for _ in range(70):
        clock[0] += 1
        in_first_step = sim.rollouts.get("payments") is not None and sim.rollouts["payments"].canary.weight_index == 0
        before = totals()
        sim.tick()
        if in_first_step and sim.rollouts["payments"].canary.weight_index == 0:
            after = totals()
            served["new"] += after[0] - before[0]
            served["all"] += after[1] - before[1]
        state = sim.control.read_state()
        assert state is not None
        rollout = state["services"]["payments"]["rollout"]
        if rollout is not None:
            new_share = sum(p["share"] for p in state["services"]["payments"]["pods"] if p["version"] == answer["to"])
            shares_by_weight[rollout["canary"]["weight"]] = new_share
    assert shares_by_weight == {0.1: pytest.approx(0.1, abs=1e-3), 0.5: pytest.approx(0.5, abs=1e-3)}
    assert {p["version"] for p in state["services"]["payments"]["pods"]} == {answer["to"]}
    assert state["deploys"][-1]["status"] == "succeeded"
    # the traffic follows the weight: about 10% of the requests reached the canary pods in its first step
    assert served["new"] / served["all"] == pytest.approx(0.10, abs=0.04), served
    svc = sim.world.services["payments"]
    assert svc.canary_version is None and sum(sim.world.shares(svc)) == pytest.approx(1.0)


@pytest.mark.parametrize("strategy", ["rolling", "canary"])
def test_a_restart_continues_the_counters_and_ends_an_interrupted_rollout(handoff: dict[str, Any], tmp_path: Path,
                                                                          strategy: str) -> None:
    """A stop mid-rollout: on restart a rolling update completes (succeeded), a canary, whose
    gate never finished, is rolled back; either way one version serves and the event is queued."""
    from analyzers.demo.simulator import load_world, resume, save_world

    (tmp_path / "handoff.json").write_text(json.dumps(handoff))
    world, in_flight, restarts = load_world(tmp_path, 3)
    assert (in_flight, restarts) == ([], 0)
    sim = Simulator(world, ControlDir(tmp_path).ensure(), receiver_url="http://127.0.0.1:9", secret="whsec_x",
                    deploy_every_s=0, rollout_s=60, canary_step_s=60, clock=lambda: float(handoff["time"]) + 30)
    with sim.lock:
        answer = sim.start_deploy("search", parse_effect("errors x5"), float(handoff["time"]), strategy=strategy)
        sim.world.advance(float(handoff["time"]) + 30)
        sim._advance_rollouts(float(handoff["time"]) + 30)
    assert {p.version for p in sim.world.services["search"].pods} == {answer["from"], answer["to"]}
    requests_before = sum(st.requests for p in world.services["search"].pods for st in p.series.values()
                          if p.version == answer["from"])
    save_world(tmp_path, sim, restarts)

    world2, in_flight2, restarts2 = load_world(tmp_path, 3)
    assert restarts2 == 1 and len(in_flight2) == 1
    sim2 = Simulator(world2, ControlDir(tmp_path), receiver_url="http://127.0.0.1:9", secret="whsec_x",
                     deploy_every_s=0)
    resume(sim2, in_flight2, float(handoff["time"]) + 60)
    keep = answer["from"] if strategy == "canary" else answer["to"]
    assert {p.version for p in world2.services["search"].pods} == {keep}
    assert world2.services["search"].version == keep
    assert [e["status"] for e in sim2.pending_events] == ["rolled_back" if strategy == "canary" else "succeeded"]
    if strategy == "canary":  # the old pods' counters go on from where they were
        assert sum(st.requests for p in world2.services["search"].pods for st in p.series.values()) == requests_before


def test_a_canary_runs_on_the_nodes_of_the_pods_it_is_compared_with(handoff: dict[str, Any], tmp_path: Path) -> None:
    """A pod's latency offset is its node's: canary pod i starts on stable pod i's node, so a
    no-op canary is as fast as the pods the gate compares it with (offsets drawn anew per pod
    made a no-op canary up to ~10 % slower or faster); promotion and rolling updates keep the
    nodes, and a restart from the saved world keeps them too."""
    from analyzers.demo.simulator import load_world, save_world

    sim, clock = _sim(handoff, tmp_path, canary_step_s=20, rollout_s=20)
    nodes = {name: list(s.node_offsets) for name, s in sim.world.services.items()}
    assert all(len(set(v)) == len(v) > 1 for v in nodes.values())  # the nodes differ from each other
    with sim.lock:
        canary = sim.start_deploy("payments", parse_effect("noop"), clock[0], strategy="canary")
        rolling = sim.start_deploy("search", parse_effect("noop"), clock[0])
    svc = sim.world.services["payments"]
    stable = [svc.offset(p) for p in svc.pods if p.version == canary["from"]]
    assert [svc.offset(p) for p in svc.pods if p.version == canary["to"]] == stable == nodes["payments"]
    (tmp_path / "handoff.json").write_text(json.dumps(handoff))
    save_world(tmp_path, sim, 0)
    restored, _, _ = load_world(tmp_path, 3)
    for name, s in restored.services.items():
        assert s.node_offsets == nodes[name]
        live = sim.world.services[name]
        assert {p.name: s.offset(p) for p in s.pods} == {p.name: live.offset(p) for p in live.pods}
    for _ in range(70):
        clock[0] += 1
        sim.tick()
    for service, version in (("payments", canary["to"]), ("search", rolling["to"])):
        svc = sim.world.services[service]
        assert {p.version for p in svc.pods} == {version}
        assert [svc.offset(p) for p in svc.pods] == nodes[service]


def test_gc_pauses_hit_each_pod_about_once_in_six_hours_whatever_its_endpoints(handoff: dict[str, Any]) -> None:
    """The scenario's rate (one 15-45 s burst per pod in 6 h) holds live too: a pod's pause is
    drawn once per tick, not once per endpoint (which tripled it on a three-endpoint service).
    400 ten-minute ticks, 6 pods: 67 bursts expected (Poisson sd 8); per endpoint would be ~130.
    The pods serve 0.1 % of the traffic (their effect), which keeps the test quick."""
    quiet = json.loads(json.dumps(handoff))
    for spec in quiet["services"].values():
        for pod in spec["pods"].values():
            pod["effect"] = {"latency_median": 1.0, "latency_sigma": 1.0, "error_ratio": 1.0, "request_rate": 0.001}
    world = LiveWorld(quiet, seed=6)
    t, started = float(handoff["time"]), 0
    for _ in range(400):
        before = {p.name: p.gc_until for s in world.services.values() for p in s.pods}
        t += 600.0
        world.advance(t)
        started += sum(p.gc_until != before[p.name] for s in world.services.values() for p in s.pods)
    pods = sum(len(s.pods) for s in world.services.values())
    expected = pods * 400 * 600.0 / (6 * 3600.0)
    assert 0.7 * expected <= started <= 1.35 * expected, (started, expected)
