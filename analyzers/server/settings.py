"""Receiver settings: one frozen object, built once from flags, environment and config, validated once.

Precedence, highest first: ``serve`` flags (or :func:`Settings.build` keywords), the
environment, the config file's ``[receiver]`` table, the defaults below. Secrets never sit
in the config file: it names the environment variable that holds them.

================================  ==============================  ==================================
setting                           environment                     config (``[receiver]``)
================================  ==============================  ==================================
``secrets``                       ``DEPLOY_WEBHOOK_SECRET``       (environment only)
``source_secrets[github]`` ...    ``DEPLOY_WEBHOOK_SECRET_GITHUB``  (environment only)
``read_token`` (``--read-token``)  ``DEPLOY_READ_TOKEN``           ``read_token_env = "NAME"``
``protect_metrics``               (flag ``--protect-metrics``)    ``protect_metrics = true``
``header_timeout_s``              (flag ``--header-timeout``)     ``header_timeout = "10s"``
``body_timeout_s``                (flag ``--body-timeout``)       ``body_timeout = "10s"``
``max_inflight``                  (flag ``--max-inflight``)       ``max_inflight = 64``
``max_body_reads``                (flag ``--max-body-reads``)     ``max_body_reads = 256``
``access_log`` (``--access-log``)  (flag only)                     ``access_log = true``
``worker`` (``--worker``)           ``ANALYZERS_WORKER=1``          (none)
``worker_poll_s``                 ``ANALYZERS_WORKER_POLL``       (none)
================================  ==============================  ==================================

With ``workers > 1`` uvicorn starts each worker as its own process; the parent hands them
the validated settings as one JSON document in ``$ANALYZERS_RECEIVER_SETTINGS``
(:meth:`Settings.to_json` / :meth:`Settings.from_json`) instead of one variable per option.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from analyzers.config import Config, parse_duration
from analyzers.errors import ConfigError
from analyzers.events.signatures import ENV_SECRET, parse_secrets

ENV_READ_TOKEN = "DEPLOY_READ_TOKEN"
ENV_SETTINGS = "ANALYZERS_RECEIVER_SETTINGS"
#: A path prefix: each receiver process then logs its group commits to PREFIX.PID (a diagnostic of
#: ``benchmarks.bench_ingest``; see :class:`analyzers.server.commit.GroupCommitter`).
ENV_COMMIT_LOG = "ANALYZERS_COMMIT_LOG"
SOURCE_NAMES = ("github", "gitlab", "argocd", "spinnaker", "grafana")
ALL_SOURCES = frozenset(("generic", *SOURCE_NAMES))
DEFAULT_MAX_BODY = 256 * 1024
RETRY_AFTER_S = 5  # Retry-After of a 503 when the store is locked or down


@dataclass(frozen=True)
class Settings:
    """Everything the receiver needs to run; immutable, checked in ``__post_init__``.

    ``allow_unsigned``: sources whose unsigned posts are accepted (stored ``signed=false``).
    ``max_inflight``: authenticated events being parsed or committed at once before 503.
    ``max_body_reads``: bodies read at once *before* authentication; when full, the slowest
    reader is cut off (408) so a newcomer always gets a turn.
    ``header_timeout_s``: a connection must finish a request's headers within this time of
    opening (or of its previous answer), else it is closed. ``body_timeout_s``: the whole
    body must arrive within this time of the headers (408 otherwise).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    store_url: str = "sqlite:///data/deploys.db"
    secrets: tuple[str, ...] = ()
    source_secrets: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    allow_unsigned: frozenset[str] = frozenset()
    max_body: int = DEFAULT_MAX_BODY
    metric_keys: frozenset[str] | None = None
    read_token: str | None = None
    protect_metrics: bool = False
    workers: int = 1
    log_level: str = "info"
    max_inflight: int = 64
    max_body_reads: int = 256
    header_timeout_s: float = 10.0
    body_timeout_s: float = 10.0
    keep_alive_s: float = 5.0
    access_log: bool = False
    worker: bool = False
    worker_poll_s: float = 5.0
    config_path: str | None = None

    def __post_init__(self) -> None:
        for name in ("max_body", "max_inflight", "max_body_reads", "workers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"receiver setting {name} must be a whole number, 1 or more, got {value!r}")
        for name in ("header_timeout_s", "body_timeout_s", "keep_alive_s", "worker_poll_s"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0 < float(value) <= 3600:
                raise ConfigError(f"receiver setting {name[:-2]} must be between 0 and 1h, got {value!r}")
        if not 0 < self.port < 65536:
            raise ConfigError(f"port must be 1..65535, got {self.port}")
        unknown = set(self.allow_unsigned) - ALL_SOURCES
        if unknown:
            raise ConfigError(f"allow_unsigned names unknown sources {sorted(unknown)}; known: {sorted(ALL_SOURCES)}")
        unknown = set(self.source_secrets) - set(SOURCE_NAMES)
        if unknown:
            raise ConfigError(f"source secrets for unknown sources {sorted(unknown)}; known: {list(SOURCE_NAMES)}")
        if self.read_token is not None and not self.read_token.strip():
            raise ConfigError("the read token is empty: generate one with "
                              "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`")
        if not isinstance(self.access_log, bool):
            raise ConfigError(f"receiver setting access_log must be true or false, got {self.access_log!r}")
        if self.log_level.upper() not in logging.getLevelNamesMapping():
            raise ConfigError(f"log level {self.log_level!r} is not one of debug, info, warning, error")

    # -- building -------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        *,
        config: Config | None = None,
        env: Mapping[str, str] | None = None,
        secrets: str | Sequence[str] | None = None,
        source_secrets: Mapping[str, str | Sequence[str]] | None = None,
        allow_unsigned: bool | Collection[str] = False,
        metric_keys: Collection[str] | None = None,
        read_token: str | None = None,
        **options: Any,
    ) -> Settings:
        """Settings from keywords (flags), then ``env`` (default ``os.environ``), then ``config``.

        ``secrets=None`` reads ``$DEPLOY_WEBHOOK_SECRET`` (comma/space-separated: several are
        valid at once while rotating); ``source_secrets=None`` reads
        ``$DEPLOY_WEBHOOK_SECRET_<SOURCE>``; ``read_token=None`` reads ``$DEPLOY_READ_TOKEN``,
        then the variable the config's ``receiver.read_token_env`` names. ``allow_unsigned``:
        True (every source) or source names. Other keywords are fields of :class:`Settings`;
        a keyword left ``None`` falls back to the config, then the default.
        """
        env = os.environ if env is None else env
        rx = dict(config.receiver) if config is not None else {}
        sec = parse_secrets(env.get(ENV_SECRET) if secrets is None else secrets)
        if source_secrets is None:
            src = {n: parse_secrets(env[f"{ENV_SECRET}_{n.upper()}"]) for n in SOURCE_NAMES
                   if env.get(f"{ENV_SECRET}_{n.upper()}")}
        else:
            src = {k: parse_secrets(v) for k, v in source_secrets.items()}
        if read_token is None:
            read_token = env.get(ENV_READ_TOKEN) or None
        if read_token is None and rx.get("read_token_env"):
            name = str(rx["read_token_env"])
            read_token = env.get(name) or None
            if read_token is None:
                raise ConfigError(f"receiver.read_token_env names {name!r}, which is not set: export it")
        unsigned = ALL_SOURCES if allow_unsigned is True else frozenset(allow_unsigned or ())
        from_config = {
            "protect_metrics": rx.get("protect_metrics"),
            "access_log": rx.get("access_log"),
            "max_inflight": rx.get("max_inflight"),
            "max_body_reads": rx.get("max_body_reads"),
            "header_timeout_s": _seconds(rx, "header_timeout"),
            "body_timeout_s": _seconds(rx, "body_timeout"),
        }
        unknown = set(rx) - {"read_token_env", "protect_metrics", "max_inflight", "max_body_reads",
                             "header_timeout", "body_timeout", "access_log"}
        if unknown:
            raise ConfigError(f"[receiver] has unknown keys {sorted(unknown)}")
        kw: dict[str, Any] = {k: v for k, v in from_config.items() if v is not None}
        if env.get("ANALYZERS_WORKER") == "1":  # run the scheduler inside the receiver
            kw["worker"] = True
        if env.get("ANALYZERS_WORKER_POLL"):
            kw["worker_poll_s"] = parse_duration(env["ANALYZERS_WORKER_POLL"], key="ANALYZERS_WORKER_POLL")
        kw.update({k: v for k, v in options.items() if v is not None})
        if config is not None:
            kw.setdefault("store_url", config.store_url)
            kw.setdefault("config_path", config.source_path)
        return cls(secrets=sec, source_secrets=src, allow_unsigned=unsigned,
                   metric_keys=frozenset(metric_keys) if metric_keys is not None else None,
                   read_token=read_token, **kw)

    # -- handing to worker processes ------------------------------------------------
    def to_json(self) -> str:
        d = asdict(self)
        d["allow_unsigned"] = sorted(self.allow_unsigned)
        d["metric_keys"] = sorted(self.metric_keys) if self.metric_keys is not None else None
        d["source_secrets"] = {k: list(v) for k, v in self.source_secrets.items()}
        d["secrets"] = list(self.secrets)
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str) -> Settings:
        d = json.loads(text)
        d["allow_unsigned"] = frozenset(d["allow_unsigned"])
        d["metric_keys"] = frozenset(d["metric_keys"]) if d["metric_keys"] is not None else None
        d["source_secrets"] = {k: tuple(v) for k, v in d["source_secrets"].items()}
        d["secrets"] = tuple(d["secrets"])
        return cls(**d)

    def __repr__(self) -> str:  # never print a secret or the read token
        return (f"Settings(store_url={self.store_url!r}, host={self.host!r}, port={self.port}, "
                f"secrets={len(self.secrets)}, sources={sorted(self.source_secrets)}, "
                f"allow_unsigned={sorted(self.allow_unsigned)}, read_token={'set' if self.read_token else 'unset'})")


def _seconds(raw: Mapping[str, Any], key: str) -> float | None:
    if key not in raw:
        return None
    return parse_duration(raw[key], key=f"receiver.{key}")
