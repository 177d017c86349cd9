"""The local control channel between the demo runner and the traffic simulator: files in ``.demo/``.

A file channel, not an HTTP endpoint, on purpose: a web page in the browser can POST to any
loopback port, but it cannot write into the demo's directory. Layout under ``<data>/simulator/``
(created 0700):

* ``inbox/<id>.json``: a command (``{"command": "deploy", "service": ..., "effect": ...}``),
  written atomically (temporary file, then rename) so the simulator never reads half a command;
* ``outbox/<id>.json``: the simulator's answer to that command (``{"ok": true, ...}`` or
  ``{"ok": false, "error": "..."}``);
* ``state.json``: what the simulator serves right now (versions, pods with their traffic share,
  running rollouts, recent deploys), rewritten every tick.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from analyzers.demo.processes import cli_command
from analyzers.errors import AnalyzerError


class ControlDir:
    """``<data_dir>/simulator``: commands in, answers and state out."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.root = Path(data_dir) / "simulator"
        self.inbox = self.root / "inbox"
        self.outbox = self.root / "outbox"
        self.state_path = self.root / "state.json"

    def ensure(self) -> ControlDir:
        for d in (self.root, self.inbox, self.outbox):
            d.mkdir(parents=True, exist_ok=True)
            d.chmod(0o700)
        return self

    # -- runner side ------------------------------------------------------------------------
    def submit(self, command: dict[str, Any]) -> str:
        """Queue ``command`` for the simulator; returns its id (the answer's file name)."""
        self.ensure()
        cid = f"{time.time_ns()}-{uuid.uuid4().hex[:8]}"
        _write_atomic(self.inbox / f"{cid}.json", command)
        return cid

    def wait_answer(self, cid: str, timeout_s: float = 30.0) -> dict[str, Any]:
        """The simulator's answer to command ``cid``; raises when none came within ``timeout_s``."""
        path = self.outbox / f"{cid}.json"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if path.exists():
                answer = json.loads(path.read_text())
                path.unlink(missing_ok=True)
                return dict(answer)
            time.sleep(0.2)
        (self.inbox / f"{cid}.json").unlink(missing_ok=True)  # do not let it run later by surprise
        raise AnalyzerError(
            f"the traffic simulator did not answer within {timeout_s:.0f} s (no {path.name} in {self.outbox}). "
            f"Is the demo running? Start it with `{cli_command()} demo` (or check .demo/simulator.log)."
        )

    def read_state(self) -> dict[str, Any] | None:
        try:
            return dict(json.loads(self.state_path.read_text()))
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    # -- simulator side ---------------------------------------------------------------------
    def take(self) -> list[tuple[str, dict[str, Any]]]:
        """Commands waiting in the inbox, oldest first, each removed as it is read."""
        out = []
        for path in sorted(self.inbox.glob("*.json")):
            try:
                command = json.loads(path.read_text())
            except json.JSONDecodeError as exc:
                command = {"command": "invalid", "error": f"not JSON: {exc}"}
            path.unlink(missing_ok=True)
            out.append((path.stem, command if isinstance(command, dict) else {"command": "invalid"}))
        return out

    def answer(self, cid: str, answer: dict[str, Any]) -> None:
        _write_atomic(self.outbox / f"{cid}.json", answer)

    def write_state(self, state: dict[str, Any]) -> None:
        _write_atomic(self.state_path, state)


def _write_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    tmp.chmod(0o600)
    os.replace(tmp, path)


def request_deploy(data_dir: str | os.PathLike[str], service: str, effect: str, *, rollout_s: float | None = None,
                   wait: bool = True, say: Any = print, timeout_s: float = 30.0, strategy: str = "rolling",
                   canary_step_s: float | None = None) -> dict[str, Any]:
    """``python -m analyzers demo deploy``: ask the running simulator for a deploy and follow it.

    Returns the simulator's answer (``deploy_id``, ``from``, ``to``, ``effect``, ...). With
    ``wait`` it reports the pods of both versions (and, for a canary, each gate answer) while the
    rollout runs and returns when the ``succeeded`` or ``rolled_back`` event has gone out
    (``answer["status"]``). Raises :class:`AnalyzerError` when the simulator refuses
    (unknown service, a rollout already running, an effect it cannot read) or is not running.
    """
    control = ControlDir(data_dir)
    if control.read_state() is None:
        raise AnalyzerError(
            f"no running demo found in {Path(data_dir).resolve()} (no simulator state): start it with "
            f"`{cli_command()} demo` (or pass the --data-dir it runs with)"
        )
    command: dict[str, Any] = {"command": "deploy", "service": service, "effect": effect}
    if rollout_s is not None:
        command["rollout_s"] = rollout_s
    if strategy != "rolling":
        command["strategy"] = strategy
    if canary_step_s is not None:
        command["canary_step_s"] = canary_step_s
        if (config_path := Path(data_dir) / "config.toml").exists():  # the running demo's [canary] window
            from analyzers.config import load_config
            from analyzers.verify.canary import canary_warnings

            for text in canary_warnings(load_config(config_path).canary, step_s=canary_step_s):
                say(f"warning: {text}")
    answer = control.wait_answer(control.submit(command), timeout_s)
    if not answer.get("ok"):
        raise AnalyzerError(f"the demo did not deploy: {answer.get('error')}")
    how = "canary of" if answer.get("strategy") == "canary" else "deploying"
    say(f"{how} {answer['service']} {answer['from']} -> {answer['to']} ({answer['effect']}), deploy id "
        f"{answer['deploy_id']}; rollout ends about {answer['ends_at']}")
    if not wait:
        return answer
    seen, last_gate = "", 0.0
    deadline = time.monotonic() + 2 * float(answer.get("rollout_s", 0)) + 120
    while time.monotonic() < deadline:
        state = control.read_state() or {}
        svc = state.get("services", {}).get(service, {})
        pods = ", ".join(f"{p['pod']} {p['version']} {p['share']:.0%}" for p in svc.get("pods", []))
        if pods != seen:
            say(f"  serving: {pods}")
            seen = pods
        for g in ((svc.get("rollout") or {}).get("canary") or {}).get("gate", []):
            if g.get("at", 0) > last_gate:
                last_gate = g["at"]
                say(f"  gate at {g['weight']:.0%}: HTTP {g['status']} verdict {g.get('verdict')}")
        done = [d for d in state.get("deploys", []) if d.get("deploy_id") == answer["deploy_id"]]
        status = done[0].get("status") if done else None
        if status in ("succeeded", "rolled_back") and not state.get("pending_events"):
            answer["status"] = status
            gate = (done[0].get("canary") or {}).get("gate") or [{}]
            if gate[-1].get("at", 0) > last_gate:
                say(f"  gate at {gate[-1]['weight']:.0%}: HTTP {gate[-1]['status']} verdict {gate[-1].get('verdict')}")
            answer["canary"] = done[0].get("canary")
            if status == "rolled_back":
                say("the canary failed its gate: rolled back; the receiver has the 'rolled_back' event.")
            else:
                say(f"rollout done; the receiver has the '{status}' event and its worker posts the first verdict "
                    "on its own (the dashboard's Deploys page shows it).")
            return answer
        time.sleep(0.5)
    raise AnalyzerError(f"the rollout of {answer['deploy_id']} did not finish in time: see the simulator log in "
                        f"{Path(data_dir).resolve() / 'simulator.log'}")
