"""Automatic verification: every deploy gets checked without anyone asking.

For each deploy the scheduler plans three checks:

* ``first``: as soon as the post-deploy window can hold enough points for every metric
  (the largest ``min_points`` in the plan, times the step, plus one rate window);
* ``finished``: again whenever a status update says the deploy finished, failed, was
  cancelled or rolled back;
* ``final``: at the end of the observation window (``verification.observation``).

An inconclusive verdict that only lacks data is retried when the analysis says enough data
will be there.

When Prometheus cannot be reached (refused, timeout, 5xx), a check gives no verdict:
:func:`~analyzers.verify.deploy.verify_deploy` raises
:class:`~analyzers.errors.PrometheusUnreachable`, and the worker stores nothing, notifies
no one and keeps the check pending. It retries with exponential backoff (``OUTAGE_BASE_S``
doubling per consecutive outage up to ``OUTAGE_CAP_S``, times a seeded jitter in [0.5, 1])
and pauses the whole pass until then, so an outage costs one query per backoff step, not
one per due check. Outage retries never run out: once Prometheus is back, every check ends
with a real verdict, and the deploy's latest verdict is never replaced by "could not check". A verdict is delivered (chat routes, Grafana) when it differs from the
previous one or is final. Each stored verdict says which check produced it and what changed.

The scheduler's state (checks, leases, deliveries, marks) lives in the same database as the
deploys (SQLite or PostgreSQL), so it survives restarts and is shared by several workers. Its
tables are part of the store's schema and migrations, and the worker calls the store's public
scheduling API directly (``schedule_check``, ``claim_check``, ``complete_check``, ...; each one
transaction): :mod:`analyzers.events.store.scheduling` describes them, including how a lease
guarantees that two workers never verify the same deploy at once.

Run it inside the receiver (``ANALYZERS_WORKER=1``) or as ``python -m analyzers worker``;
several workers on PostgreSQL are safe (per-deploy leases).
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from analyzers.config import Config
from analyzers.errors import AnalyzerError, PrometheusUnreachable
from analyzers.events.combined import answer_at_last_check, canary_serving, combined_verdict, latest_pair
from analyzers.events.store.base import SQLStore
from analyzers.events.store.scheduling import Check
from analyzers.model import Deploy, DeployVerdict
from analyzers.text import redact
from analyzers.verify.deploy import nearby_deploys, plan_metrics, rate_window, verify_deploy
from analyzers.verify.plan import ramp_s

log = logging.getLogger(__name__)

TERMINAL = frozenset({"succeeded", "failed", "cancelled", "rolled_back"})
MAX_ATTEMPTS = 30
OUTAGE_BASE_S = 5.0  # first retry after an unreachable Prometheus
OUTAGE_CAP_S = 300.0  # backoff bound: a recovered Prometheus is used within 5 minutes
DISCOVERY_OVERLAP_US = 60_000_000
_MARK = "events_received_us"


def first_due(deploy: Deploy, config: Config) -> datetime:
    """When the after-window first holds enough points for every planned metric."""
    step = config.verification.step_s
    try:
        points = max((p.spec.min_points for p in plan_metrics(deploy, config)), default=10)
    except AnalyzerError:
        points = 10
    from analyzers.config import parse_duration

    lag = parse_duration(rate_window(config, step))
    return deploy.started_at + timedelta(seconds=points * step + lag + step)


def final_due(deploy: Deploy, config: Config) -> datetime:
    """When the final check runs: after the observation time, and never before the sequential
    horizon (the after-window plus the rollout's ramp), where every look's decision is frozen."""
    v = config.verification
    horizon = v.window_after_s + ramp_s(deploy, config)
    return deploy.started_at + timedelta(seconds=max(v.observation_s, horizon + 60))


def describe_changes(prev: DeployVerdict | None, new: DeployVerdict) -> tuple[str, ...]:
    """One sentence per difference between two verdicts of the same deploy."""
    if prev is None:
        return ("first verdict",)
    out = []
    if prev.overall != new.overall:
        out.append(f"overall {prev.overall} -> {new.overall}")
    before = {m.metric: m for m in prev.metrics}
    for m in new.metrics:
        old = before.get(m.metric)
        if old is None:
            out.append(f"{m.metric}: newly checked ({m.outcome})")
        elif old.outcome != m.outcome:
            out.append(f"{m.metric}: {old.outcome} -> {m.outcome} ({m.reason.rstrip('.')})")
    return tuple(out) or ("no change",)


class Worker:
    """Discovers deploys, runs due checks, stores verdicts, delivers reports."""

    def __init__(
        self,
        store: Any,
        config: Config,
        *,
        client: Any = None,
        worker_id: str | None = None,
        clock: Callable[[], datetime] | None = None,
        deliver_fn: Callable[..., list[Any]] | None = None,
        lease_s: float = 300.0,
        on_verdict: Callable[[DeployVerdict, float], None] | None = None,
        seed: int = 0,
        outage_base_s: float = OUTAGE_BASE_S,
        outage_cap_s: float = OUTAGE_CAP_S,
    ) -> None:
        from analyzers.delivery.notify import deliver
        from analyzers.prometheus.client import PrometheusClient

        if not isinstance(store, SQLStore):
            raise TypeError("the scheduler needs a SQL store from analyzers.events.store.open_store "
                            f"(a sqlite:/// or postgresql:// URL), not {type(store).__name__}")
        self.store: SQLStore = store
        self.config = config
        self.client = client if client is not None else PrometheusClient(config.prometheus)
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
        self.clock = clock or (lambda: datetime.now(UTC))
        self.deliver = deliver_fn or deliver
        self.lease_s = lease_s
        self.on_verdict = on_verdict
        self.rng = random.Random(seed)
        self.outage_base_s = outage_base_s
        self.outage_cap_s = outage_cap_s
        self.outages = 0  # consecutive checks that found Prometheus unreachable
        self.paused_until: datetime | None = None

    # -- discovery ------------------------------------------------------------------
    def discover(self) -> int:
        """Schedule checks for deploys whose events arrived since the last scan."""
        mark = self.store.get_mark(_MARK)
        # Look back a little: on PostgreSQL concurrent commits can land out of time order.
        # Re-scanning is harmless: scheduling is idempotent.
        rows = self.store.deploys_with_events_since(max(mark - DISCOVERY_OVERLAP_US, 0))
        if not rows:
            return 0
        n = 0
        for deploy_id, received in rows:
            deploy = self.store.get_deploy(deploy_id)
            if deploy is None:
                continue
            n += self.store.schedule_check(deploy_id, "first", first_due(deploy, self.config))
            n += self.store.schedule_check(deploy_id, "final", final_due(deploy, self.config))
            if deploy.status in TERMINAL and (deploy.finished_at or deploy.updated_at):
                when = max(self.clock(), first_due(deploy, self.config))
                n += self.store.schedule_check(deploy_id, "finished", when, reschedule=True, cause_us=int(received))
        self.store.set_mark(_MARK, max(mark, max(int(r[1]) for r in rows)))
        return n

    # -- running checks -------------------------------------------------------------
    def run_once(self) -> list[DeployVerdict]:
        """Discover, then run every check that is due now; returns the verdicts produced."""
        self.discover()
        out: list[DeployVerdict] = []
        while True:
            now = self.clock()
            if self.paused_until is not None and now < self.paused_until:
                return out  # Prometheus was unreachable: due checks wait for the backoff
            check = self.store.claim_check(self.worker_id, now, self.lease_s)
            if check is None:
                return out
            v = self.process(check, now)
            if v is not None:
                out.append(v)

    def process(self, check: Check, now: datetime) -> DeployVerdict | None:
        deploy = self.store.get_deploy(check.deploy_id)
        if deploy is None:
            self.store.complete_check(check, self.worker_id, now, error="deploy not found")
            return None
        t0 = time.monotonic()
        try:
            others = nearby_deploys(self.store, deploy, self.config)
            verdict = verify_deploy(deploy, self.config, self.client, others=others, now=now)
            canary = self.judge_canary(deploy, now)
        except PrometheusUnreachable as exc:
            delay = self.outage_delay()
            retry = now + timedelta(seconds=delay)
            self.paused_until = retry
            why = redact(str(exc))
            log.warning("check %s of %s could not run (%s); nothing stored, retrying in %.0f s",
                        check.kind, check.deploy_id, why, delay)
            self.store.complete_check(check, self.worker_id, now, error=f"could not check: {why}", retry_at=retry)
            return None
        except AnalyzerError as exc:
            error = redact(str(exc))  # stored and shown on the deploy page: no tokens, no URL paths
            log.warning("check %s of %s failed: %s", check.kind, check.deploy_id, error)
            retry = now + timedelta(seconds=min(60 * 2 ** check.attempts, 3600))
            self.store.complete_check(check, self.worker_id, now, error=error,
                                      retry_at=retry if check.attempts < MAX_ATTEMPTS else None)
            return None
        self.outages = 0
        self.paused_until = None
        history = self.store.verdict_history(deploy.deploy_id)
        prev_canary, prev = latest_pair(history)
        said = answer_at_last_check(history, rolled_out=deploy.status in TERMINAL)  # what the last notification said
        from dataclasses import replace

        if canary is not None:  # saved first, so the deploy's latest verdict stays the before/after one
            canary = replace(canary, changes=describe_changes(prev_canary, canary))
            if canary.changes != ("no change",):  # like the gate: a canary verdict per change, not per look
                self.store.save_verdict(canary)
        verdict = replace(verdict, check_kind=check.kind, changes=describe_changes(prev, verdict))
        self.store.save_verdict(verdict)
        if self.on_verdict is not None:
            self.on_verdict(verdict, time.monotonic() - t0)
        final = check.kind == "final"
        # notify on the combined answer (a failing canary notifies), once per change of it
        answer = combined_verdict(canary or prev_canary, verdict, rolled_out=deploy.status in TERMINAL) or verdict
        if said is None or said.overall != answer.overall or final:
            for d in self.deliver(answer, deploy, self.config, final=final):
                self.store.save_delivery(deploy.deploy_id, d.at, d.target, d.to_dict())
        retry_at = None
        if (
            verdict.overall == "inconclusive"
            and verdict.retry_after_s
            and not final
            and check.attempts < MAX_ATTEMPTS
        ):
            retry_at = now + timedelta(seconds=max(verdict.retry_after_s, self.config.verification.step_s))
        self.store.complete_check(check, self.worker_id, now, retry_at=retry_at)
        return verdict

    def judge_canary(self, deploy: Deploy, now: datetime) -> DeployVerdict | None:
        """The canary-vs-baseline verdict while both versions serve, else None (nothing to store).

        A canary that is not serving (no version label, not started, promoted already) gives
        an inconclusive-no-data judgement, which must never replace a real verdict, so it is
        not stored. An unreachable Prometheus raises (the check is retried, nothing stored).
        """
        from analyzers.verify.canary import canary_verdict, judge_canary

        try:
            report = judge_canary(deploy, self.config, self.client, now=now, raise_unreachable=True)
        except PrometheusUnreachable:
            raise
        except AnalyzerError as exc:  # e.g. a bad [canary] setting: the before/after verdict still stands
            log.warning("canary check of %s could not run: %s", deploy.deploy_id, redact(str(exc)))
            return None
        verdict = canary_verdict(deploy, report, now=now)
        return verdict if canary_serving(verdict) else None

    def outage_delay(self) -> float:
        """Seconds until the next try after one more consecutive outage (bounded, jittered)."""
        self.outages += 1
        base = min(self.outage_cap_s, self.outage_base_s * 2 ** min(self.outages - 1, 30))
        return base * (0.5 + 0.5 * self.rng.random())

    def run_forever(self, stop: threading.Event, poll_s: float = 5.0) -> None:
        """Loop until ``stop`` is set; store outages are logged and retried, never fatal."""
        while not stop.is_set():
            try:
                self.run_once()
            except AnalyzerError as exc:
                log.warning("scheduler pass failed (will retry in %.0f s): %s", poll_s, exc)
            stop.wait(poll_s)


def start_background_worker(store_url: str, config: Config, *, poll_s: float = 5.0,
                            on_verdict: Callable[[DeployVerdict, float], None] | None = None) -> tuple[threading.Thread, threading.Event]:
    """Run a :class:`Worker` in a daemon thread (used inside the receiver process)."""
    from analyzers.events.store import open_store

    stop = threading.Event()

    def run() -> None:
        store = open_store(store_url)
        try:
            Worker(store, config, on_verdict=on_verdict).run_forever(stop, poll_s)
        finally:
            store.close()

    thread = threading.Thread(target=run, name="verification-worker", daemon=True)
    thread.start()
    return thread, stop
