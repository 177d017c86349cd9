"""Run a real Prometheus locally: find or install it, backfill OpenMetrics, start and stop it.

Used by ``python -m analyzers demo`` and the test fixture. Prometheus binds 127.0.0.1 on a
free port by default, scrapes only the targets it is given (the demo's traffic simulator),
refuses remote writes unless asked (anything on loopback could write into it otherwise), and
keeps its config and log in a private work directory (removed on :meth:`PrometheusServer.stop`;
the TSDB stays).

Backfilled blocks must hold data older than about 3 hours (the head block still owns
newer samples) and inside ``--storage.tsdb.retention.time``; see the field notes.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import requests

from analyzers.errors import AnalyzerError

INSTALL_HINT = (
    "install it with `apt-get install -y prometheus` (Debian/Ubuntu; provides prometheus and promtool), "
    "or run the stack with `docker compose up` (docker-compose.yml starts Prometheus for you)"
)


class PrometheusNotInstalled(AnalyzerError):
    """The ``prometheus``/``promtool`` binaries are missing."""


class BackfillError(AnalyzerError):
    """``promtool tsdb create-blocks-from openmetrics`` failed; the message holds its stderr."""


class PrometheusStartError(AnalyzerError):
    """Prometheus exited or did not become ready; the message holds the tail of its log."""


def find_binaries() -> tuple[str, str]:
    """Paths of ``(prometheus, promtool)`` from ``PATH`` or ``/usr/bin``."""
    found: list[str] = []
    for name in ("prometheus", "promtool"):
        path = shutil.which(name) or shutil.which(name, path="/usr/bin:/usr/local/bin")
        if path is None:
            raise PrometheusNotInstalled(f"`{name}` was not found on PATH or in /usr/bin: {INSTALL_HINT}")
        found.append(path)
    return found[0], found[1]


def ensure_installed(*, timeout_s: float = 900.0) -> tuple[str, str]:
    """:func:`find_binaries`, installing Debian's ``prometheus`` package first when missing,
    running as root on Debian/Ubuntu. Anywhere else it raises with the install hint."""
    try:
        return find_binaries()
    except PrometheusNotInstalled:
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            raise
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "--no-install-recommends", "prometheus"]
    result = subprocess.run(install, env=env, capture_output=True, text=True, timeout=timeout_s)
    if result.returncode != 0:  # stale package lists are the usual cause on fresh machines
        update = subprocess.run(["apt-get", "update"], env=env, capture_output=True, text=True, timeout=timeout_s)
        result = subprocess.run(install, env=env, capture_output=True, text=True, timeout=timeout_s)
        if result.returncode != 0:
            tail = (update.stderr + result.stderr).strip()[-1500:]
            raise PrometheusNotInstalled(f"`apt-get install -y prometheus` failed:\n{tail}\nOtherwise: {INSTALL_HINT}")
    return find_binaries()


def backfill(
    om_path: str | os.PathLike[str],
    tsdb_dir: str | os.PathLike[str],
    *,
    promtool: str | None = None,
    max_block_duration: str = "24h",
    timeout_s: float = 900.0,
) -> None:
    """Turn an OpenMetrics file into TSDB blocks in ``tsdb_dir`` (created if missing).

    ``max_block_duration`` lets promtool write blocks longer than 2 h, so a 3-day backfill
    is a few blocks that Prometheus opens quickly instead of dozens it compacts later.
    """
    tool = promtool or find_binaries()[1]
    Path(tsdb_dir).mkdir(parents=True, exist_ok=True)
    cmd = [tool, "tsdb", "create-blocks-from", "openmetrics",
           f"--max-block-duration={max_block_duration}", str(om_path), str(tsdb_dir)]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise BackfillError(f"promtool backfill of {om_path} took over {timeout_s:.0f} s: {' '.join(cmd)}") from exc
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()[-2000:]
        raise BackfillError(
            f"promtool could not backfill {om_path} (exit {result.returncode}): {detail}\n"
            "Check the file is OpenMetrics with timestamps in seconds, ends with '# EOF', and that "
            f"{tsdb_dir} is writable. Command: {' '.join(cmd)}"
        )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it; a race is possible but rare)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_until_up(url: str, *, proc: subprocess.Popen[Any] | None = None, timeout_s: float = 30.0,
                  interval_s: float = 0.1) -> str | None:
    """Poll ``url`` until it answers 200; ``None`` when it did, else why not (for the caller's error).

    Stops early when ``proc`` (the server being waited for) has exited.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        if proc is not None and proc.poll() is not None:
            return f"exited with code {proc.returncode} before it was ready"
        try:
            if requests.get(url, timeout=1.0).status_code == 200:
                return None
        except requests.RequestException:
            pass
        if time.monotonic() >= deadline:
            return f"not ready after {timeout_s:g} s"
        time.sleep(interval_s)


def stop_process(proc: subprocess.Popen[Any] | None, timeout_s: float = 15.0) -> None:
    """Terminate a server we started; kill it when it has not exited after ``timeout_s``."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout_s)


def port_is_free(host: str, port: int) -> bool:
    """True when nothing accepts connections on ``host:port`` and it can be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is free, LISTEN is not
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


class PrometheusServer:
    """A Prometheus process on ``tsdb_dir``.

    ::

        with PrometheusServer(tsdb) as prom:
            requests.get(prom.url + "/api/v1/query", params={"query": "up"})

    ``port=0`` picks a free port. The server scrapes ``scrape_targets`` (``host:port`` strings,
    job ``demo-simulator``) every ``scrape_interval``, dropping the ``job`` and ``instance``
    labels so scraped series continue backfilled ones of the same labels; none by default.
    ``remote_write=True`` turns the remote-write receiver on (tests that push samples);
    ``exemplars=True`` adds ``--enable-feature=exemplar-storage``. Out-of-order samples up to
    ``out_of_order_window`` old (e.g. ``"30d"``) are optionally accepted. ``work_dir`` keeps the
    config and ``prometheus.log`` there (left after :meth:`stop`) instead of a temporary directory.
    """

    def __init__(
        self,
        tsdb_dir: str | os.PathLike[str],
        host: str = "127.0.0.1",
        port: int = 0,
        retention: str = "30d",
        extra_args: Sequence[str] = (),
        *,
        binary: str | None = None,
        out_of_order_window: str | None = None,
        ready_timeout_s: float = 60.0,
        scrape_targets: Sequence[str] = (),
        scrape_interval: str = "15s",
        remote_write: bool = False,
        exemplars: bool = False,
        work_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.tsdb_dir = Path(tsdb_dir).resolve()
        self.host = host
        self.port = port or free_port(host)
        self.retention = retention
        self.extra_args = tuple(extra_args)
        self.binary = binary
        self.out_of_order_window = out_of_order_window
        self.ready_timeout_s = ready_timeout_s
        self.scrape_targets = tuple(scrape_targets)
        self.scrape_interval = scrape_interval
        self.remote_write = remote_write
        self.exemplars = exemplars
        self.command: list[str] = []
        self.work_dir = Path(work_dir).resolve() if work_dir is not None else None
        self._proc: subprocess.Popen[bytes] | None = None
        self._work: Path | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path | None:
        return self._work / "prometheus.log" if self._work else None

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs (the demo records it for ``demo --stop``)."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _config_text(self) -> str:
        text = f"global:\n  scrape_interval: {self.scrape_interval}\n  evaluation_interval: 15s\n"
        if self.scrape_targets:
            targets = ", ".join(f'"{t}"' for t in self.scrape_targets)
            text += (
                "scrape_configs:\n  - job_name: demo-simulator\n"
                f"    scrape_interval: {self.scrape_interval}\n"
                f"    static_configs:\n      - targets: [{targets}]\n"
                "    metric_relabel_configs:\n      - action: labeldrop\n        regex: job|instance\n"
            )
        else:
            text += "scrape_configs: []\n"
        if self.out_of_order_window:
            text += f"storage:\n  tsdb:\n    out_of_order_time_window: {self.out_of_order_window}\n"
        return text

    def start(self) -> PrometheusServer:
        """Start and wait for ``/-/ready``; raises :class:`PrometheusStartError` with the log tail."""
        if self.running:
            return self
        binary = self.binary or find_binaries()[0]
        if not port_is_free(self.host, self.port):  # else /-/ready would answer from the other server
            raise PrometheusStartError(
                f"{self.host}:{self.port} is already in use: stop what listens there or pass another port "
                "(port=0 picks a free one)"
            )
        self.tsdb_dir.mkdir(parents=True, exist_ok=True)
        if self.work_dir is not None:  # kept after stop (the demo's, so its log outlives --no-block)
            self.work_dir.mkdir(parents=True, exist_ok=True)
            self._work = self.work_dir
        else:
            self._work = Path(tempfile.mkdtemp(prefix="prometheus-"))
        config = self._work / "prometheus.yml"
        config.write_text(self._config_text())
        cmd = [
            binary,
            f"--config.file={config}",
            f"--web.listen-address={self.host}:{self.port}",
            f"--storage.tsdb.path={self.tsdb_dir}",
            f"--storage.tsdb.retention.time={self.retention}",
            *(["--web.enable-remote-write-receiver"] if self.remote_write else []),
            *(["--enable-feature=exemplar-storage"] if self.exemplars else []),
            *self.extra_args,
        ]
        self.command = cmd
        log = (self._work / "prometheus.log").open("ab" if self.work_dir is not None else "wb")
        try:
            self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=self._work)
        finally:
            log.close()
        self._wait_ready()
        return self

    def _log_tail(self, lines: int = 20) -> str:
        path = self.log_path
        if path is None or not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def _wait_ready(self) -> None:
        assert self._proc is not None
        why = wait_until_up(self.url + "/-/ready", proc=self._proc, timeout_s=self.ready_timeout_s)
        if why is None:
            return
        if self._proc.poll() is not None:
            tail = self._log_tail()
            self._cleanup()
            raise PrometheusStartError(
                f"Prometheus exited with code {self._proc.returncode} before it was ready "
                f"(port {self.port} in use? TSDB {self.tsdb_dir} locked by another server?). Log:\n{tail}"
            )
        tail = self._log_tail()
        self.stop()
        raise PrometheusStartError(
            f"Prometheus at {self.url} was not ready after {self.ready_timeout_s:.0f} s "
            f"(a large TSDB replays slowly; raise ready_timeout_s). Log:\n{tail}"
        )

    def stop(self, timeout_s: float = 15.0) -> None:
        """Terminate (then kill after ``timeout_s``); the TSDB directory is kept."""
        proc, self._proc = self._proc, None
        stop_process(proc, timeout_s)
        self._cleanup()

    def _cleanup(self) -> None:
        if self._work is not None and self._work != self.work_dir:
            shutil.rmtree(self._work, ignore_errors=True)
        self._work = None

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"PrometheusServer({self.url}, tsdb={self.tsdb_dir}, {state})"
