"""Canary releases in the live demo, gated by the receiver as Flagger would gate them.

``demo deploy --strategy canary`` starts pods of the new version beside the old ones and sends
them a share of the traffic: 10%, then 50% (:data:`WEIGHTS`), then all of it (promotion). At
every weight the simulator, playing Flagger, asks the receiver's gate every ``check_every_s``
seconds with Flagger's webhook payload over real HTTP (``POST /v1/gate/flagger?hook=rollout``,
:mod:`analyzers.server.gate`): the gate compares the canary's pods with the baseline's over the
same minutes (:mod:`analyzers.verify.canary`). A 409 (verdict ``fail``) rolls back at once: the
canary pods go away, the old version takes all traffic again and a signed ``rolled_back`` event
goes out. After ``step_s`` at a weight with the gate answering 200 at least once, traffic moves
to the next weight; after the last one the canary is promoted (old pods removed, ``succeeded``).
Like Flagger's ``rollout`` hook, an inconclusive verdict does not stop a canary; only ``fail``
does. A gate that cannot answer (receiver down, 5xx) holds the canary at its weight.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import requests

log = logging.getLogger("analyzers.demo.simulator")
#: Canary traffic shares before promotion (promotion is 100%).
WEIGHTS = (0.10, 0.50)


@dataclass
class CanaryRun:
    """One canary in progress (the simulator's ``Rollout`` holds the deploy event)."""

    deploy_id: str
    service: str
    step_s: float
    check_every_s: float
    weight_index: int = 0
    step_started: float = 0.0
    next_check: float = 0.0
    passed_checks: int = 0
    gate_answers: list[dict[str, Any]] = field(default_factory=list)

    @property
    def weight(self) -> float:
        return WEIGHTS[self.weight_index]

    def ask_gate(self, receiver_url: str, timeout_s: float = 10.0) -> tuple[int | None, dict[str, Any]]:
        """Flagger's ``rollout`` webhook for this canary; ``(None, {...})`` when the gate gave no answer."""
        payload: dict[str, Any] = {"name": self.service, "namespace": "production", "phase": "Progressing",
                   "metadata": {"deploy_id": self.deploy_id, "service": self.service}}
        try:
            resp = requests.post(f"{receiver_url}/v1/gate/flagger", params={"hook": "rollout"}, json=payload,
                                 timeout=timeout_s)
        except requests.RequestException as exc:
            return None, {"error": str(exc)}
        try:
            body = resp.json()
        except ValueError:
            body = {"error": resp.text[:300]}
        if resp.status_code not in (200, 409):
            return None, {"status": resp.status_code, **(body if isinstance(body, dict) else {})}
        return resp.status_code, body if isinstance(body, dict) else {}

    def decide(self, now: float, receiver_url: str | None) -> str | None:
        """``"rollback"``, ``"next"`` (a higher weight or promotion) or ``None`` (stay)."""
        if receiver_url is None:
            return "next" if now - self.step_started >= self.step_s else None
        if now >= self.next_check:
            self.next_check = now + self.check_every_s
            status, body = self.ask_gate(receiver_url)
            self.gate_answers.append({"at": now, "weight": self.weight, "status": status,
                                      "verdict": body.get("verdict"), "reason": str(body.get("reason", ""))[:300]})
            self.gate_answers = self.gate_answers[-10:]
            log.info("canary %s at %.0f%%: gate %s (%s)", self.deploy_id, self.weight * 100, status, body.get("verdict"))
            if status == 409:
                return "rollback"
            if status == 200:
                self.passed_checks += 1
        if now - self.step_started >= self.step_s and self.passed_checks > 0:
            return "next"
        return None

    def state(self) -> dict[str, Any]:
        return {"weight": self.weight, "weights": list(WEIGHTS), "gate": self.gate_answers[-3:]}
