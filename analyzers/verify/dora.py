"""DORA-style change metrics per service, from what the store already holds.

* **Deploy frequency**: deploys (kind ``deploy``; releases of flags are not counted) per day
  over the window.
* **Change failure rate**: share of those deploys that failed: the latest verdict is ``fail``
  (canary or before/after), or the deploy was rolled back (``status="rolled_back"``).
* **Time to restore**: from a failing deploy's start to the first moment the service was good
  again: the next deploy of the same service and environment whose verdict is ``pass``
  (its ``started_at``), or the rollback (the failing deploy's ``finished_at``/``updated_at``
  when its status is ``rolled_back``). Failures not restored yet are counted as open.

Deploys still inconclusive count in the frequency but are neither failures nor successes.
All times are UTC; "per day" uses the window length, not calendar days.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from analyzers.model import Deploy, DeployVerdict


@dataclass(frozen=True)
class ChangeMetrics:
    """One service's change metrics over ``[start, end)``."""

    service: str
    start: datetime
    end: datetime
    deploys: int
    failures: int
    rollbacks: int
    restored: int
    open_failures: int
    restore_s: tuple[float, ...] = field(default_factory=tuple)

    @property
    def days(self) -> float:
        return max((self.end - self.start).total_seconds() / 86400.0, 1e-9)

    @property
    def deploys_per_day(self) -> float:
        return self.deploys / self.days

    @property
    def change_failure_rate(self) -> float | None:
        return self.failures / self.deploys if self.deploys else None

    @property
    def median_restore_s(self) -> float | None:
        return statistics.median(self.restore_s) if self.restore_s else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "service": self.service, "start": self.start.isoformat(), "end": self.end.isoformat(),
            "deploys": self.deploys, "deploys_per_day": self.deploys_per_day, "failures": self.failures,
            "rollbacks": self.rollbacks, "change_failure_rate": self.change_failure_rate,
            "restored": self.restored, "open_failures": self.open_failures,
            "median_restore_s": self.median_restore_s,
        }


def _failed(d: Deploy, v: DeployVerdict | None) -> bool:
    return d.status == "rolled_back" or (v is not None and v.overall == "fail")


def _restore_time(d: Deploy, later: Sequence[Deploy], verdicts: Mapping[str, DeployVerdict]) -> datetime | None:
    if d.status == "rolled_back":
        return d.finished_at or d.updated_at or d.started_at
    for n in later:
        v = verdicts.get(n.deploy_id)
        if n.status != "rolled_back" and v is not None and v.overall == "pass":
            return n.started_at
    return None


def change_metrics(
    deploys: Iterable[Deploy],
    verdicts: Mapping[str, DeployVerdict],
    *,
    start: datetime,
    end: datetime,
) -> dict[str, ChangeMetrics]:
    """Change metrics per service for deploys started in ``[start, end)``.

    ``verdicts``: latest verdict per deploy id (``store.latest_verdicts``). Restores may come
    from deploys after ``end`` when they are in ``deploys``.
    """
    by_key: dict[tuple[str, str], list[Deploy]] = defaultdict(list)
    for d in deploys:
        if d.kind == "deploy":
            by_key[(d.service, d.environment)].append(d)
    acc: dict[str, dict[str, Any]] = defaultdict(lambda: {"deploys": 0, "failures": 0, "rollbacks": 0, "restored": 0,
                                                         "open": 0, "restore": []})
    for (service, _env), items in by_key.items():
        items.sort(key=lambda d: d.started_at)
        for i, d in enumerate(items):
            if not start <= d.started_at < end:
                continue
            a = acc[service]
            a["deploys"] += 1
            v = verdicts.get(d.deploy_id)
            if not _failed(d, v):
                continue
            a["failures"] += 1
            a["rollbacks"] += d.status == "rolled_back"
            fixed = _restore_time(d, items[i + 1:], verdicts)
            if fixed is None:
                a["open"] += 1
            else:
                a["restored"] += 1
                a["restore"].append(max(0.0, (fixed - d.started_at).total_seconds()))
    return {
        s: ChangeMetrics(service=s, start=start, end=end, deploys=a["deploys"], failures=a["failures"],
                         rollbacks=a["rollbacks"], restored=a["restored"], open_failures=a["open"],
                         restore_s=tuple(a["restore"]))
        for s, a in sorted(acc.items())
    }


def weekly_trend(deploys: Sequence[Deploy], verdicts: Mapping[str, DeployVerdict], *, end: datetime,
                 weeks: int = 8, service: str | None = None) -> list[ChangeMetrics]:
    """One :class:`ChangeMetrics` per week (oldest first) for one service (or all, merged as ``*``)."""
    out = []
    chosen = [d for d in deploys if service is None or d.service == service]
    if service is None:
        chosen = [Deploy(**{**d.__dict__, "service": "*"}) for d in chosen]
    for k in range(weeks, 0, -1):
        a, b = end - timedelta(weeks=k), end - timedelta(weeks=k - 1)
        per = change_metrics(chosen, verdicts, start=a, end=b)
        name = service or "*"
        out.append(per.get(name) or ChangeMetrics(service=name, start=a, end=b, deploys=0, failures=0, rollbacks=0,
                                                  restored=0, open_failures=0))
    return out


def store_change_metrics(store: Any, *, now: datetime | None = None, days: float = 30.0,
                         service: str | None = None) -> dict[str, ChangeMetrics]:
    """:func:`change_metrics` over the last ``days`` read from a store (plus later restores)."""
    now = now or datetime.now(UTC)
    start = now - timedelta(days=days)
    deploys = store.list_deploys(service=service, since=start, limit=100000)
    verdicts = store.latest_verdicts([d.deploy_id for d in deploys])
    return change_metrics(deploys, verdicts, start=start, end=now)


class ChangeMetricsCollector:
    """prometheus_client collector: the change metrics per service, read from the store at scrape.

    ``deploy_frequency_per_day``, ``change_failure_rate``, ``time_to_restore_seconds`` (median),
    ``deploys_in_window``, ``open_failures``; label ``service``; window 30 days. A store that
    cannot answer yields nothing (the scrape still succeeds; ``up``-style alerting stays with the
    receiver's own metrics).
    """

    def __init__(self, store: Any, *, days: float = 30.0, clock: Any = None) -> None:
        self.store = store
        self.days = days
        self.clock = clock

    def collect(self) -> Iterable[Any]:
        from prometheus_client.core import GaugeMetricFamily

        now = datetime.fromtimestamp(self.clock(), tz=UTC) if self.clock else datetime.now(UTC)
        try:
            per = store_change_metrics(self.store, now=now, days=self.days)
        except Exception:  # noqa: BLE001 - a scrape must not fail because the store is busy
            return
        fams = {
            "freq": GaugeMetricFamily("deploy_frequency_per_day", "Deploys per day over the last 30 days", labels=["service"]),
            "cfr": GaugeMetricFamily("change_failure_rate", "Share of deploys that failed or were rolled back (30 days)", labels=["service"]),
            "ttr": GaugeMetricFamily("time_to_restore_seconds", "Median time from a failing deploy to a pass or rollback (30 days)", labels=["service"]),
            "n": GaugeMetricFamily("deploys_in_window", "Deploys in the last 30 days", labels=["service"]),
            "open": GaugeMetricFamily("open_failures", "Failing deploys not yet followed by a pass or rollback", labels=["service"]),
        }
        for s, m in per.items():
            fams["freq"].add_metric([s], m.deploys_per_day)
            fams["n"].add_metric([s], m.deploys)
            fams["open"].add_metric([s], m.open_failures)
            if m.change_failure_rate is not None:
                fams["cfr"].add_metric([s], m.change_failure_rate)
            if m.median_restore_s is not None:
                fams["ttr"].add_metric([s], m.median_restore_s)
        yield from fams.values()

    def describe(self) -> list[Any]:
        return []  # collected at scrape time only (never at registration)
