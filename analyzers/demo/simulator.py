"""The demo's traffic simulator: live metrics for Prometheus to scrape, and deploys while you watch.

Run by ``python -m analyzers demo`` as ``python -m analyzers.demo.simulator --data-dir .demo ...``.
It continues the backfilled scenario (:mod:`analyzers.demo.livemodel`) against the wall clock and
serves the result with ``prometheus_client`` on 127.0.0.1 (OpenMetrics when Prometheus asks for
it, which carries the exemplars): ``http_request_duration_seconds`` (classic histogram, the
scenario's buckets), ``http_requests_total`` and ``http_request_errors_total``, labelled
``service``, ``endpoint``, ``version`` and ``pod``; histogram buckets and both counters carry
exemplars with a ``trace_id``.

It also plays the cluster and its CD system. A deploy (on a schedule, or asked for with
``python -m analyzers demo deploy``, which reaches it through :mod:`analyzers.demo.control`)
sends a signed ``started`` event to the receiver, rolls the new version out pod by pod (a
Kubernetes rolling update with surge 1: pods of both versions serve at once), then sends
``succeeded``. The receiver's worker verifies it like any production deploy.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar

from analyzers.demo import openmetrics as om
from analyzers.demo.canary import WEIGHTS, CanaryRun
from analyzers.demo.control import ControlDir
from analyzers.demo.livemodel import (
    EffectError,
    LiveWorld,
    bump_version,
    effect_dict,
    effect_text,
    parse_effect,
)
from analyzers.demo.scenarios import LE_LABELS, Effect
from analyzers.model import iso

log = logging.getLogger("analyzers.demo.simulator")
LABELS = ("service", "endpoint", "version", "pod")
SNAPSHOT_EVERY_S = 15.0  # counters saved this often, so a restart continues them without a reset
AUTO_EFFECTS = (("noop", 0.6), ("latency+30%", 0.2), ("errors x5", 0.2))


class WorldCollector(Collector):
    """Exposes a :class:`LiveWorld` (read under ``lock``) as the scenario's three metric families."""

    def __init__(self, world: LiveWorld, lock: threading.Lock) -> None:
        self.world, self.lock = world, lock

    def collect(self) -> Iterator[Metric]:
        hist = HistogramMetricFamily(om.HISTOGRAM, "Request latency in seconds.", labels=LABELS, unit="seconds")
        reqs = CounterMetricFamily(om.REQUESTS, "Requests handled.", labels=LABELS)
        errs = CounterMetricFamily(om.ERRORS, "Requests answered with a 5xx status.", labels=LABELS)
        with self.lock:
            for name, svc in self.world.services.items():
                for pod in svc.pods:
                    for ep, st in pod.series.items():
                        labels = (name, ep, pod.version, pod.name)
                        cum = np.cumsum(st.buckets).tolist()
                        buckets: list[Any] = []
                        for le, value, ex in zip(LE_LABELS, cum, st.bucket_exemplars, strict=True):
                            buckets.append((le, value, _exemplar(ex)) if ex else (le, value))
                        hist.add_metric(labels, buckets, st.latency_sum)
                        reqs.add_metric(labels, st.requests, exemplar=_exemplar(st.request_exemplar))
                        errs.add_metric(labels, st.errors, exemplar=_exemplar(st.error_exemplar))
        yield hist
        yield reqs
        yield errs


def _exemplar(ex: tuple[str, float, float] | None) -> Exemplar | None:
    return Exemplar({"trace_id": ex[0]}, ex[1], ex[2]) if ex else None


@dataclass
class Rollout:
    """One deploy in progress: timed pod actions, then the ``succeeded`` event."""

    deploy_id: str
    service: str
    old_version: str
    new_version: str
    effect: Effect  # the new pods' state
    started: float
    actions: list[tuple[float, str, int]]  # (when, "up" | "down", pod index)
    event: dict[str, Any]
    old_pods: list[str] = field(default_factory=list)
    old_effect: Effect | None = None
    canary: CanaryRun | None = None

    @property
    def ends(self) -> float:
        if self.canary is not None:  # an estimate: each weight holds step_s, then promotion
            c = self.canary
            return c.step_started + c.step_s * (len(WEIGHTS) - c.weight_index)
        return max((t for t, _, _ in self.actions), default=self.started)


class Simulator:
    """The world, its rollouts, the schedule and the event sender; :meth:`tick` drives it all."""

    def __init__(self, world: LiveWorld, control: ControlDir, *, receiver_url: str | None, secret: str | None,
                 rollout_s: float = 120.0, deploy_every_s: float = 900.0, seed: int = 7,
                 canary_step_s: float = 300.0, canary_check_s: float = 30.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.world, self.control = world, control
        self.lock = threading.Lock()
        self.receiver_url, self.secret = receiver_url, secret
        self.rollout_s, self.deploy_every_s = rollout_s, deploy_every_s
        self.canary_step_s, self.canary_check_s = canary_step_s, canary_check_s
        self.rng = np.random.default_rng(seed + 1)
        self.clock = clock
        self.rollouts: dict[str, Rollout] = {}
        self.recent: list[dict[str, Any]] = []
        self.pending_events: list[dict[str, Any]] = []
        self.next_auto = clock() + deploy_every_s if deploy_every_s > 0 else float("inf")
        self._auto_turn = int(self.rng.integers(len(world.services)))

    # -- one tick -----------------------------------------------------------------------
    def tick(self) -> None:
        now = self.clock()
        with self.lock:
            for cid, command in self.control.take():
                self.control.answer(cid, self.handle(command, now))
            if now >= self.next_auto:
                self.next_auto = now + self.deploy_every_s
                self._auto_deploy(now)
            self.world.advance(now)  # traffic up to now, then pods change
            self._advance_rollouts(now)
        self._flush_events()
        self._advance_canaries(now)  # asks the receiver's gate over HTTP: outside the lock
        self._flush_events()
        self.control.write_state(self.state(now))

    def handle(self, command: dict[str, Any], now: float) -> dict[str, Any]:
        if command.get("command") != "deploy":
            return {"ok": False, "error": f"unknown command {command.get('command')!r}: the simulator takes 'deploy'"}
        try:
            effect = parse_effect(str(command.get("effect", "noop")))
            rollout_s = float(command.get("rollout_s", self.rollout_s))
            strategy = str(command.get("strategy", "rolling"))
            return {"ok": True, **self.start_deploy(str(command.get("service", "")), effect, now, rollout_s=rollout_s,
                                                    author=str(command.get("author", "you (demo deploy)")),
                                                    description=command.get("description"), strategy=strategy,
                                                    canary_step_s=command.get("canary_step_s"))}
        except (EffectError, ValueError) as exc:
            return {"ok": False, "error": str(exc)}

    # -- deploys --------------------------------------------------------------------------
    def start_deploy(self, service: str, delta: Effect, now: float, *, rollout_s: float | None = None,
                     author: str = "demo autopilot", description: str | None = None, strategy: str = "rolling",
                     canary_step_s: float | None = None) -> dict[str, Any]:
        """Begin a rolling update (or a canary, :mod:`analyzers.demo.canary`) of ``service`` whose
        new pods change it by ``delta``. Call with :attr:`lock` held."""
        if strategy not in ("rolling", "canary"):
            raise ValueError(f"unknown strategy {strategy!r}: use rolling or canary")
        if service not in self.world.services:
            raise ValueError(f"unknown service {service!r}: the demo runs {', '.join(sorted(self.world.services))}")
        if service in self.rollouts:
            r = self.rollouts[service]
            raise ValueError(f"{service} is still rolling out {r.new_version} (done in about "
                             f"{max(0.0, r.ends - now):.0f} s): deploy again after that")
        rollout_s = self.rollout_s if rollout_s is None else rollout_s
        if not 0 <= rollout_s <= 3600:
            raise ValueError(f"rollout must take 0 to 3600 s, got {rollout_s:g}")
        svc = self.world.services[service]
        old, new = svc.version, bump_version(svc.version)
        stamp = time.strftime("%Y%m%dt%H%M%S", time.gmtime(now))
        deploy_id = f"{service}-{new}-{stamp}"
        digest = hashlib.sha1(f"{deploy_id}/{effect_text(delta)}".encode()).hexdigest()
        event = {
            "service": service, "environment": "production", "version": new, "kind": "deploy",
            "status": "started", "started_at": iso_s(now), "deploy_id": deploy_id,
            "event_id": f"{deploy_id}:started", "source": "generic", "author": author,
            "commit_sha": digest, "ref": "refs/heads/main",
            "description": description or f"Live demo deploy ({effect_text(delta)}).",
            "labels": {"scenario": "live", "effect": effect_text(delta), "team": service},
        }
        n = max(1, len(svc.pods))
        actions = []
        if strategy == "rolling":
            for i in range(n):  # surge 1: a new pod up, then an old one down
                actions.append((now + rollout_s * (2 * i + 1) / (2 * n), "up", i))
                actions.append((now + rollout_s * (2 * i + 2) / (2 * n), "down", i))
        rollout = Rollout(deploy_id, service, old, new, svc.effect.then(delta), now, actions, event,
                          [p.name for p in svc.pods], old_effect=svc.effect)
        if strategy == "canary":
            step = float(canary_step_s if canary_step_s is not None else self.canary_step_s)
            if not 1 <= step <= 3600:
                raise ValueError(f"a canary step must take 1 to 3600 s, got {step:g}")
            rollout.canary = CanaryRun(deploy_id, service, step, self.canary_check_s, step_started=now,
                                       next_check=now + self.canary_check_s)
            for i in range(n):
                self.world.add_pod(service, new, rollout.effect, i)
            svc.canary_version, svc.canary_share = new, WEIGHTS[0]
            rollout_s = step * (len(WEIGHTS) + 1)
            event["description"] = (description or f"Live demo canary ({effect_text(delta)}).") + (
                f" Canary at {', '.join(f'{w:.0%}' for w in WEIGHTS)}, then 100%.")
        self.rollouts[service] = rollout
        svc.version, svc.effect = new, rollout.effect
        self._queue_event(dict(event))
        self.recent.append({"deploy_id": deploy_id, "service": service, "from": old, "to": new,
                            "effect": effect_text(delta), "started_at": iso_s(now), "status": "started",
                            "strategy": strategy})
        self.recent = self.recent[-20:]
        log.info("deploy %s: %s %s -> %s (%s) over %.0f s", deploy_id, service, old, new, effect_text(delta), rollout_s)
        return {"deploy_id": deploy_id, "service": service, "from": old, "to": new, "effect": effect_text(delta),
                "rollout_s": rollout_s, "ends_at": iso_s(now + rollout_s), "strategy": strategy}

    def _advance_rollouts(self, now: float) -> None:
        for service, r in list(self.rollouts.items()):
            if r.canary is not None:
                continue
            due = [a for a in r.actions if a[0] <= now]
            r.actions = [a for a in r.actions if a[0] > now]
            for _, kind, i in due:
                if kind == "up":
                    self.world.add_pod(service, r.new_version, r.effect, i)
                elif i < len(r.old_pods):
                    self.world.remove_pod(service, r.old_pods[i])
            if not r.actions:
                self._finish(r, "succeeded", now)

    def _finish(self, r: Rollout, status: str, now: float) -> None:
        del self.rollouts[r.service]
        self._queue_event(dict(r.event, status=status, finished_at=iso_s(now), event_id=f"{r.deploy_id}:{status}"))
        for d in self.recent:
            if d["deploy_id"] == r.deploy_id:
                d.update(status=status, finished_at=iso_s(now))
                if r.canary is not None:
                    d["canary"] = r.canary.state()

    def _advance_canaries(self, now: float) -> None:
        """Each canary asks the gate (Flagger's ``rollout`` hook), then rolls back, steps up or is promoted."""
        url = self.receiver_url if self.secret else None
        for r in [r for r in self.rollouts.values() if r.canary is not None]:
            c = r.canary
            assert c is not None
            decision = c.decide(now, url)
            if decision is None:
                continue
            with self.lock:
                svc = self.world.services[r.service]
                if decision == "rollback":
                    for p in [p for p in svc.pods if p.version == r.new_version]:
                        self.world.remove_pod(r.service, p.name)
                    svc.version, svc.effect = r.old_version, r.old_effect or svc.effect
                    svc.canary_version = None
                    log.info("canary %s failed its gate at %.0f%%: rolled back", r.deploy_id, c.weight * 100)
                    self._finish(r, "rolled_back", now)
                elif c.weight_index + 1 < len(WEIGHTS):
                    c.weight_index += 1
                    c.step_started, c.passed_checks = now, 0
                    svc.canary_share = c.weight
                else:  # promotion: the new version takes all traffic, the old pods go
                    for name in r.old_pods:
                        self.world.remove_pod(r.service, name)
                    svc.canary_version = None
                    log.info("canary %s promoted", r.deploy_id)
                    self._finish(r, "succeeded", now)

    def _auto_deploy(self, now: float) -> None:
        names = sorted(self.world.services)
        for _ in names:  # the next service in turn that is not rolling out
            service = names[self._auto_turn % len(names)]
            self._auto_turn += 1
            if service not in self.rollouts:
                break
        else:
            return
        svc = self.world.services[service]
        if not _same(svc.effect, svc.baseline):  # an earlier change is still in: revert it
            b, e = svc.baseline, svc.effect
            delta = Effect(b.latency_median / e.latency_median, b.latency_sigma / e.latency_sigma,
                           b.error_ratio / e.error_ratio, b.request_rate / e.request_rate)
            self.start_deploy(service, delta, now, description=f"Revert to the behaviour before {svc.version}.")
            return
        names_p = [e for e, _ in AUTO_EFFECTS]
        choice = names_p[int(self.rng.choice(len(names_p), p=[p for _, p in AUTO_EFFECTS]))]
        strategy = "canary" if self.rng.random() < 0.5 else "rolling"
        self.start_deploy(service, parse_effect(choice), now, strategy=strategy)

    # -- events -----------------------------------------------------------------------------
    def _queue_event(self, event: dict[str, Any]) -> None:
        if self.receiver_url and self.secret:
            self.pending_events.append(event)

    def _flush_events(self) -> None:
        """Send queued events in order; a receiver that is down gets them on a later tick."""
        from analyzers.events.send import send_event

        while self.pending_events:
            event = self.pending_events[0]
            try:
                resp = send_event(f"{self.receiver_url}/webhooks/deploys", event, str(self.secret),
                                  msg_id=f"msg_{event['event_id']}", timeout=5)
            except Exception as exc:  # noqa: BLE001 - the receiver may be down for a while: retry
                log.warning("could not send %s (%s); retrying next tick", event["event_id"], exc)
                return
            if resp.status_code >= 500 or resp.status_code == 429:
                log.warning("receiver answered %s for %s; retrying next tick", resp.status_code, event["event_id"])
                return
            if resp.status_code >= 300:
                log.error("receiver refused %s: %s %s", event["event_id"], resp.status_code, resp.text[:300])
            self.pending_events.pop(0)

    # -- state ------------------------------------------------------------------------------
    def state(self, now: float) -> dict[str, Any]:
        services = {}
        for name, svc in self.world.services.items():
            shares = self.world.shares(svc)
            r = self.rollouts.get(name)
            services[name] = {
                "version": svc.version, "effect": effect_text(svc.effect),
                "pods": [{"pod": p.name, "version": p.version, "share": round(s, 4)} for p, s in zip(svc.pods, shares, strict=True)],
                "rollout": None if r is None else {"deploy_id": r.deploy_id, "from": r.old_version, "to": r.new_version,
                                                   "ends_at": iso_s(r.ends),
                                                   "canary": r.canary.state() if r.canary else None},
            }
        return {"time": iso_s(now), "services": services, "deploys": self.recent,
                "next_auto_deploy": None if self.next_auto == float("inf") else iso_s(self.next_auto),
                "pending_events": len(self.pending_events)}


def _same(a: Effect, b: Effect) -> bool:
    return all(abs(x / y - 1) < 1e-9 for x, y in zip(
        (a.latency_median, a.latency_sigma, a.error_ratio, a.request_rate),
        (b.latency_median, b.latency_sigma, b.error_ratio, b.request_rate), strict=True))


def iso_s(ts: float) -> str:
    """Unix seconds as RFC 3339 UTC, to the second."""
    from datetime import UTC, datetime

    return str(iso(datetime.fromtimestamp(int(ts), UTC)))


def load_world(data: Path, seed: int) -> tuple[LiveWorld, list[dict[str, Any]], int]:
    """The world to continue, the rollouts a stop interrupted, and the number of restarts so far.

    The last saved counters (``simulator/live.json``) when they belong to this backfill, else the
    handoff. Each restart draws from a new stream (``seed`` + restarts), still seeded.
    """
    handoff = json.loads((data / "handoff.json").read_text())
    live_path = data / "simulator" / "live.json"
    if live_path.exists():
        live = json.loads(live_path.read_text())
        if live.get("handoff_time") == handoff["time"]:
            restarts = int(live.get("restarts", 0)) + 1
            return LiveWorld(live["world"], seed=seed + restarts), list(live.get("in_flight", [])), restarts
    return LiveWorld(handoff, seed=seed), [], 0


def save_world(data: Path, sim: Simulator, restarts: int) -> None:
    """Counters and in-flight rollouts, so a restart continues them (call with ``sim.lock`` held)."""
    handoff = json.loads((data / "handoff.json").read_text())
    in_flight = [{"event": r.event, "canary": r.canary is not None, "old_version": r.old_version,
                  "new_version": r.new_version, "old_effect": effect_dict(r.old_effect or r.effect)}
                 for r in sim.rollouts.values()]
    path = data / "simulator" / "live.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"handoff_time": handoff["time"], "restarts": restarts, "world": sim.world.snapshot(),
                               "in_flight": in_flight}))
    tmp.replace(path)


def resume(sim: Simulator, in_flight: list[dict[str, Any]], now: float) -> None:
    """End the rollouts a stop interrupted: a rolling update completes (``succeeded``), a canary is
    rolled back (``rolled_back``: its gate never finished), each with its event sent."""
    for rec in in_flight:
        ev = rec["event"]
        svc = sim.world.services.get(str(ev["service"]))
        if svc is None:
            continue
        keep = rec["old_version"] if rec["canary"] else rec["new_version"]
        for p in [p for p in svc.pods if p.version != keep]:
            sim.world.remove_pod(str(ev["service"]), p.name)
        svc.canary_version = None
        if rec["canary"]:
            svc.version, svc.effect = rec["old_version"], Effect(**rec["old_effect"])
        status = "rolled_back" if rec["canary"] else "succeeded"
        sim._queue_event(dict(ev, status=status, finished_at=iso_s(now), event_id=f"{ev['deploy_id']}:{status}"))
        log.info("deploy %s was interrupted by a stop: %s", ev["deploy_id"], status)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m analyzers.demo.simulator", description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=".demo")
    p.add_argument("--port", type=int, required=True, help="serve /metrics on 127.0.0.1:PORT")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--tick", type=float, default=1.0, help="seconds between draws")
    p.add_argument("--deploy-every", type=float, default=900.0, help="seconds between automatic deploys (0: none)")
    p.add_argument("--rollout", type=float, default=120.0, help="seconds a rolling update takes")
    p.add_argument("--canary-step", type=float, default=300.0, help="seconds a canary holds each traffic weight")
    p.add_argument("--canary-check", type=float, default=30.0, help="seconds between the canary's gate checks")
    p.add_argument("--receiver-url", help="where deploy events go (signed with <data-dir>/webhook-secret)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    data = Path(args.data_dir).resolve()
    secret_path = data / "webhook-secret"
    secret = secret_path.read_text().strip() if secret_path.exists() else None
    world, in_flight, restarts = load_world(data, args.seed)
    sim = Simulator(world, ControlDir(data).ensure(), receiver_url=args.receiver_url, secret=secret,
                    rollout_s=args.rollout, deploy_every_s=args.deploy_every, seed=args.seed,
                    canary_step_s=args.canary_step, canary_check_s=args.canary_check)
    resume(sim, in_flight, time.time())
    registry = CollectorRegistry()
    registry.register(WorldCollector(world, sim.lock))
    server, _ = start_http_server(args.port, addr="127.0.0.1", registry=registry)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    log.info("serving metrics on http://127.0.0.1:%d/metrics; control files in %s", args.port, sim.control.root)
    last_save = 0.0
    try:
        while not stop.is_set():
            sim.tick()
            if time.monotonic() - last_save >= SNAPSHOT_EVERY_S:
                with sim.lock:
                    save_world(data, sim, restarts)
                last_save = time.monotonic()
            stop.wait(args.tick)
    finally:
        with sim.lock:
            save_world(data, sim, restarts)
        server.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
