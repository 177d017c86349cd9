"""What every command shares: reading times and durations, the config, the store to read, --output."""

from __future__ import annotations

import argparse
import os
from datetime import datetime, timedelta

from analyzers.config import Config, load_config, parse_duration
from analyzers.errors import ConfigError, EventError
from analyzers.model import to_utc


def parse_time(value: str, *, now: datetime) -> datetime:
    """A time as the receiver reads it (RFC 3339, Unix seconds or milliseconds), else a duration
    back from now (``24h``); a timestamp without zone is taken as UTC."""
    from analyzers.events.schema import parse_timestamp

    v = value.strip()
    try:
        return parse_timestamp(v, "time")
    except EventError:
        pass
    try:
        seconds = parse_duration(v, key="--since")
    except ConfigError:
        pass
    else:
        try:
            return now - timedelta(seconds=seconds)
        except (OverflowError, ValueError):
            raise ConfigError(f"{value!r} reaches back before the year 1: use a shorter duration (e.g. 30d) "
                              "or a date (2026-11-27T10:00:00Z)") from None
    try:
        return to_utc(v)
    except ValueError:
        raise ConfigError(f"cannot read time {value!r}: use RFC 3339 (2026-11-27T10:00:00Z), Unix seconds or a duration such as 24h") from None


def workers_arg(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"--workers takes a whole number of processes (0: one per CPU), got {text!r}")
    return n


def cli_config(args: argparse.Namespace) -> Config:
    cfg = load_config(getattr(args, "config", None))
    if getattr(args, "prometheus_url", None):
        cfg = cfg.with_prometheus_url(args.prometheus_url)
    return cfg


def store_url(args: argparse.Namespace, cfg: Config) -> str:
    """The store to read: ``--store``, else ``$DEPLOY_STORE_URL``, else the config file's.

    Without any of them (the built-in default config) the CLI refuses rather than creating
    an empty ``./data/deploys.db`` and reporting "no deploys", and an SQLite file that does
    not exist is an error too: reading commands never create a store.
    """
    from analyzers.events.store import sqlite_path

    if args.store:
        url, where = args.store, "--store"
    elif os.environ.get("DEPLOY_STORE_URL"):
        url, where = cfg.store_url, "$DEPLOY_STORE_URL"
    elif cfg.source_path:
        url, where = cfg.store_url, f"store.url in {cfg.source_path}"
    else:
        raise ConfigError(
            "no deploy store configured: looked for --store, $DEPLOY_STORE_URL and a config file "
            "(--config, or $ANALYZERS_CONFIG: unset). Point at one, e.g. after make demo: "
            "export ANALYZERS_CONFIG=.demo/config.toml")
    path = sqlite_path(url)
    if path is not None and not os.path.exists(path):
        raise ConfigError(f"the deploy store {path} (from {where}) does not exist: check the path, or start the "
                          "receiver (python -m analyzers serve) to create it")
    return url


def check_output(path: str | None) -> None:
    """Refuse an --output the report cannot be written to, before any work is done."""
    if not path:
        return
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path) or not os.path.isdir(folder) or not os.access(folder, os.W_OK) or (
            os.path.exists(path) and not os.access(path, os.W_OK)):
        raise ConfigError(f"cannot write the report to {path}: its folder must exist and be writable "
                          "(and the path must not be a folder); choose another --output")

