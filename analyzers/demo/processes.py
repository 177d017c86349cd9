"""The demo's processes from outside: the command a user pastes to reach this program again, and
``demo --stop``, which ends only the processes a ``--no-block`` run recorded and can still prove
are the demo's (same command line, same start time; a reused PID is left alone)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import sys
from pathlib import Path
from typing import Any


def _say(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def shown_path(path: Path) -> str:
    """``path`` relative to the working directory when it is inside it (the printed export line)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def cli_command() -> str:
    """This program as the user can type it again in a new shell: ``deploy-verify`` when the shell
    finds this very script on PATH, else its path (``.venv/bin/deploy-verify`` after ``make demo``),
    else ``<this interpreter> -m analyzers``. A bare ``python -m analyzers`` would pick whatever
    ``python`` comes first on PATH, usually one without this package."""
    argv0 = sys.argv[0] if sys.argv else ""
    if os.path.basename(argv0) == "deploy-verify" and os.path.exists(argv0):
        found = shutil.which("deploy-verify")
        if found and os.path.realpath(found) == os.path.realpath(argv0):
            return "deploy-verify"
        return shlex.quote(shown_path(Path(os.path.abspath(argv0))))
    return f"{shlex.quote(shown_path(Path(sys.executable)))} -m analyzers"


def stop_demo(data_dir: str = ".demo") -> int:
    """End the processes a ``demo --no-block`` run left running (recorded in pids.json).

    A PID is signalled only while ``/proc/PID`` still shows the process the demo started: the
    same command line and the same start time (a PID reused by another program is left alone).
    """
    path = Path(data_dir) / "pids.json"
    if not path.exists():
        _say(f"nothing to stop: {path} does not exist")
        return 0
    for rec in read_pids(path):
        if not isinstance(rec, dict):
            _say(f"not stopping PID {rec}: recorded by an older demo without its command line, so it cannot be "
                 "checked; stop it yourself if it is still the demo's")
            continue
        if not is_ours(rec):
            _say(f"not stopping PID {rec['pid']} ({rec.get('what')}): it is no longer the process the demo started")
            continue
        try:
            os.kill(int(rec["pid"]), signal.SIGTERM)
            _say(f"stopped {rec.get('what')} (PID {rec['pid']})")
        except ProcessLookupError:
            pass
    path.unlink()
    return 0


def proc_start_ticks(pid: int) -> int | None:
    """Field 22 of ``/proc/PID/stat`` (start time in clock ticks since boot), ``None`` when gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2 :].split()[19])


def proc_argv(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.decode(errors="replace").split("\0")[:-1]


def pid_record(what: str, pid: int, argv: list[str]) -> dict[str, Any]:
    return {"what": what, "pid": pid, "argv": [str(a) for a in argv], "start_ticks": proc_start_ticks(pid)}


def is_ours(rec: dict[str, Any]) -> bool:
    """The process at ``rec['pid']`` runs ``rec['argv']`` and started when it was recorded."""
    pid = int(rec.get("pid", 0))
    if pid <= 0 or rec.get("start_ticks") is None:
        return False
    return proc_argv(pid) == rec.get("argv") and proc_start_ticks(pid) == rec["start_ticks"]


def read_pids(path: Path) -> list[Any]:
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError:
        return []
    return data if isinstance(data, list) else []
