"""One deploy's before/after verdict and its canary-vs-baseline verdict, combined.

The two checks answer different questions. Before/after compares the service with itself in
time (all traffic, both versions mixed while a canary runs); canary vs baseline compares the
new version with the old one over the same minutes, which removes traffic drift (a daily
cycle, a load spike) but needs both versions serving. The rule, written once here (in the
events layer, so the store can apply it: ``latest_verdicts`` answers :func:`combined_verdict`)
and used by the gate (:mod:`analyzers.server.gate`), the CLI's exit code, notifications, the
reports and the dashboard:

Per metric (a metric key present in either verdict):

1. ``fail`` when either check found an enforced regression (before/after ``regressed`` or
   ``opposite``; canary ``regressed``). Dry-run metrics never fail.
2. otherwise the **canary decides** when it reached a decision (``ok``): it is the comparison
   without drift. Not over a declared expectation that before/after decided (``confirmed``,
   ``no_effect``, ``improved``): "no worse than the baseline" does not answer "did it change as
   declared";
3. otherwise the before/after outcome when it is decided (anything but ``inconclusive`` /
   ``error``);
4. otherwise ``inconclusive``.

Overall:

1. ``fail`` when either verdict fails;
2. otherwise, while both versions serve (the canary verdict has at least one metric with
   intervals holding both versions), the canary's verdict: a before/after pass does not
   promote a canary that has not decided, because before/after mixes both versions' traffic
   and says little about a version taking 5% of it. Once the rollout is over (``rolled_out``:
   the deploy's status is terminal, see :data:`ROLLED_OUT`) an undecided canary from the
   canary period no longer overrides a decided before/after verdict (a two-minute rolling
   update's overlap must not leave the deploy inconclusive for ever);
3. otherwise (no canary verdict, no version label, or the canary was promoted already) the
   before/after verdict stands;
4. a canary verdict alone (no before/after yet) stands; neither: ``inconclusive``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from analyzers.model import DeployVerdict, MetricVerdict

_UNDECIDED = ("inconclusive", "error")
#: Deploy statuses after which no canary runs any more (promoted, rolled back or stopped).
ROLLED_OUT = frozenset({"succeeded", "failed", "cancelled", "rolled_back"})


@dataclass(frozen=True)
class CombinedMetric:
    """One metric's two results side by side and what they give together."""

    metric: str
    before_after: MetricVerdict | None
    canary: MetricVerdict | None
    outcome: str  # "fail", "ok" (or a before/after outcome such as "confirmed"), "inconclusive"
    decided_by: str  # "canary", "before/after", "both" (both failed) or "neither"

    def to_dict(self) -> dict[str, object]:
        return {
            "metric": self.metric,
            "before_after": None if self.before_after is None else self.before_after.outcome,
            "canary": None if self.canary is None else self.canary.outcome,
            "outcome": self.outcome,
            "decided_by": self.decided_by,
        }


def combine_metric(metric: str, ba: MetricVerdict | None, canary: MetricVerdict | None) -> CombinedMetric:
    """The per-metric rule (module docstring)."""
    ba_fail = ba is not None and ba.failed
    c_fail = canary is not None and canary.failed
    if ba_fail or c_fail:
        by = "both" if ba_fail and c_fail else ("canary" if c_fail else "before/after")
        return CombinedMetric(metric, ba, canary, "fail", by)
    declared = ba is not None and ba.role == "expectation" and ba.outcome not in _UNDECIDED
    if canary is not None and canary.outcome == "ok" and not declared:
        return CombinedMetric(metric, ba, canary, "ok", "canary")
    if ba is not None and ba.outcome not in _UNDECIDED:
        return CombinedMetric(metric, ba, canary, ba.outcome, "before/after")
    return CombinedMetric(metric, ba, canary, "inconclusive", "neither")


def combine_metrics(canary: DeployVerdict | None, before_after: DeployVerdict | None) -> list[CombinedMetric]:
    """Per metric, before/after order first, then metrics only the canary compares."""
    ba = {m.metric: m for m in (before_after.metrics if before_after else ())}
    cn = {m.metric: m for m in (canary.metrics if canary else ())}
    keys = list(ba) + [k for k in cn if k not in ba]
    return [combine_metric(k, ba.get(k), cn.get(k)) for k in keys]


def canary_serving(canary: DeployVerdict | None) -> bool:
    """Whether the canary verdict saw both versions serve (some metric compared intervals)."""
    if canary is None:
        return False
    return any(int((m.result or {}).get("intervals") or 0) > 0 for m in canary.metrics)


def combine(canary: DeployVerdict | None, before_after: DeployVerdict | None, *,
            rolled_out: bool = False) -> tuple[str, str]:
    """The overall verdict and one sentence why (rule in the module docstring)."""
    if canary is not None and canary.overall == "fail":
        return "fail", canary.reason
    if before_after is not None and before_after.overall == "fail":
        return "fail", "Before/after: " + before_after.reason
    decided_after = rolled_out and before_after is not None and before_after.overall != "inconclusive"
    if canary is not None and canary_serving(canary) and not decided_after:
        if canary.overall != "pass" and before_after is not None and before_after.overall == "pass":
            return canary.overall, (canary.reason + " (Before/after passes, but it mixes both versions' "
                                    "traffic: the canary decides while both serve.)")
        return canary.overall, canary.reason
    if before_after is not None:
        return before_after.overall, "Before/after: " + before_after.reason
    if canary is not None:
        return canary.overall, canary.reason
    return "inconclusive", "No verdict yet for this deploy: wait for the first check."


def latest_pair(history: list[DeployVerdict]) -> tuple[DeployVerdict | None, DeployVerdict | None]:
    """The latest canary verdict and the latest before/after verdict of a deploy's history (oldest first)."""
    canary = next((v for v in reversed(history) if v.check_kind == "canary"), None)
    before_after = next((v for v in reversed(history) if v.check_kind != "canary"), None)
    return canary, before_after


def combined_verdict(canary: DeployVerdict | None, before_after: DeployVerdict | None, *,
                     rolled_out: bool = False) -> DeployVerdict | None:
    """The deploy's one answer as a verdict: what lists, ``/v1/deploys``, the CLI's exit code and
    notifications show, whichever check was stored last.

    Without a canary verdict the before/after verdict as it is (and the reverse). With both: the
    before/after verdict with the combined ``overall`` and ``reason`` (rule above), both checks'
    metrics (the canary's with ``role="canary"``) and the later of the two check times.
    """
    if canary is None or before_after is None:
        return before_after if canary is None else canary
    overall, reason = combine(canary, before_after, rolled_out=rolled_out)
    return replace(before_after, overall=overall, reason=reason,  # type: ignore[arg-type]
                   metrics=before_after.metrics + canary.metrics,
                   checked_at=max(before_after.checked_at, canary.checked_at))


def answer_at_last_check(history: list[DeployVerdict], *, rolled_out: bool = False) -> DeployVerdict | None:
    """The combined answer as it stood when the latest before/after verdict was stored (canary
    verdicts stored after it, e.g. by the gate, not counted): what the last notification said,
    so a change the gate stored in between is still a change at the next check."""
    last = next((i for i in range(len(history) - 1, -1, -1) if history[i].check_kind != "canary"), None)
    if last is None:
        return None
    canary, before_after = latest_pair(history[: last + 1])
    return combined_verdict(canary, before_after, rolled_out=rolled_out)
