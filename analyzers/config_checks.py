"""Checks a config file's values must pass before they become settings: each error names the key and the fix.

Kept apart from ``analyzers.config`` (which builds the typed settings) so both stay readable.
"""

from __future__ import annotations

from difflib import get_close_matches
from typing import Any

from analyzers.errors import ConfigError

# The [prometheus] keys a file may set, and the type each needs. Secrets are never file keys:
# bearer_token_env / basic_auth_password_env name the environment variables that hold them.
_PROMETHEUS_KEYS: dict[str, tuple[type, ...]] = {
    "url": (str,), "headers": (dict,), "verify_tls": (bool, str), "timeout": (str, int, float),
    "tenant": (str,), "tenant_header": (str,), "path_prefix": (str,), "partial_response": (bool,),
    "dedup": (bool,), "scrape_interval": (str, int, float), "basic_auth_user": (str,),
    "basic_auth_password_env": (str,), "bearer_token_env": (str,),
}
_PROMETHEUS_HINTS = {
    "timeout_s": "timeout", "scrape_interval_s": "scrape_interval", "bearer_token": "bearer_token_env",
    "basic_auth": "basic_auth_user and basic_auth_password_env", "basic_auth_password": "basic_auth_password_env",
    "timout": "timeout", "token": "bearer_token_env",
}
VERIFICATION_KEYS = ("window_before", "window_after", "history", "step", "observation", "overlap", "alpha")
#: The file's tables and the keys each may hold ([prometheus], [verification], [metrics.*], [canary]
#: and [receiver] are checked where they are read).
TOP_KEYS = ("prometheus", "store", "verification", "metrics", "services", "notify", "grafana", "dashboard", "slo",
            "canary", "receiver")
SECTION_KEYS: dict[str, tuple[str, ...]] = {
    "store": ("url",),
    "dashboard": ("url", "allow_actions", "trace_url"),
    "grafana": ("url", "token_env", "tags", "dashboard_uid"),
    "slo": ("threshold", "objective"),
    "notify": ("routes",),
}
SERVICE_KEYS = ("environment", "guards", "depends_on", "slo", "dry_run")
ROUTE_KEYS = ("name", "url", "url_env", "format", "services", "verdicts", "final_only")
_SECRET_WORDS = ("token", "password", "secret", "api_key", "apikey")


def check_prometheus_keys(prom_raw: dict[str, Any]) -> None:
    """Unknown keys name the documented ones (and the likely meant one); wrong types name the key."""
    for k, v in prom_raw.items():
        if k not in _PROMETHEUS_KEYS:
            hint = f" (did you mean {_PROMETHEUS_HINTS[k]}?)" if k in _PROMETHEUS_HINTS else ""
            secret = " Secrets are read from environment variables, never from the file." if "token" in k or "auth" in k else ""
            raise ConfigError(f"[prometheus] has unknown key {k!r}{hint}; allowed: {sorted(_PROMETHEUS_KEYS)}.{secret}")
        types = _PROMETHEUS_KEYS[k]
        if not isinstance(v, types) or (isinstance(v, bool) and bool not in types):
            want = " or ".join({str: "a string", dict: "a table", bool: "true/false", int: "a number", float: "a number"}[t] for t in types)
            # headers often carry credentials (Authorization): name the type given, never the value
            got = f"a {_toml_type(v)} (value not shown: headers may hold credentials)" if k == "headers" else repr(v)
            raise ConfigError(f"prometheus.{k} must be {want}, got {got}")
    for name, value in (prom_raw.get("headers") or {}).items():
        if not isinstance(value, str):
            raise ConfigError(f"prometheus.headers.{name} must be a string (quote it), got a {_toml_type(value)}")


def _toml_type(v: Any) -> str:
    """The TOML name of a value's type, for errors that must not quote the value."""
    if isinstance(v, bool):
        return "boolean"
    return {str: "string", int: "number", float: "number", dict: "table", list: "list"}.get(type(v), type(v).__name__)


def check_keys(where: str, raw: Any, allowed: tuple[str, ...]) -> None:
    """A table's keys must be known: a typo (``alow_actions``) or a misplaced key would otherwise be
    ignored without a word. The error names the key, the one likely meant, and the allowed ones; a
    secret written into the file (``token = "..."``) is pointed to its ``*_env`` variable instead.
    Values are never quoted (they may be secrets)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a table ([{where}] followed by its keys), got a {_toml_type(raw)}")
    for k in raw:
        if k in allowed:
            continue
        env = f"{k}_env"
        if any(w in k.lower() for w in _SECRET_WORDS) and not k.endswith("_env"):
            fix = (f" Secrets are read from environment variables, never from the file: write "
                   f"{env if env in allowed else 'the *_env key'} = \"VARIABLE_NAME\" and export the variable.")
        else:
            close = get_close_matches(k, allowed, n=1, cutoff=0.6)
            fix = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"[{where}] has unknown key {k!r}; allowed: {sorted(allowed)}.{fix}")


def check_sections(raw: dict[str, Any]) -> None:
    """The file's top-level tables and the keys of those not checked where they are read."""
    for k in raw:
        if k not in TOP_KEYS:
            close = get_close_matches(k, TOP_KEYS, n=1, cutoff=0.6)
            hint = f" Did you mean [{close[0]}]?" if close else ""
            raise ConfigError(f"the config file has an unknown table or key {k!r}; allowed: {sorted(TOP_KEYS)}.{hint}")
    for section, keys in SECTION_KEYS.items():
        if section in raw:
            check_keys(section, raw[section], keys)
    for key in ("prometheus", "verification", "metrics", "services", "canary", "receiver"):
        if key in raw and not isinstance(raw[key], dict):
            raise ConfigError(f"{key} must be a table ([{key}] followed by its keys), got a {_toml_type(raw[key])}")
    for name, sraw in (raw.get("services") or {}).items():
        check_keys(f"services.{name}", sraw, SERVICE_KEYS)
        if "slo" in sraw:
            check_keys(f"services.{name}.slo", sraw["slo"], SECTION_KEYS["slo"])
    routes = (raw.get("notify") or {}).get("routes", [])
    if not isinstance(routes, list):
        raise ConfigError("notify.routes must be a list of tables ([[notify.routes]] blocks)")
    for i, route in enumerate(routes):
        check_keys(f"notify.routes[{i}]", route, ROUTE_KEYS)


def check_windows(window_before_s: float, window_after_s: float, step_s: float) -> None:
    """A compared window shorter than one query step holds no point: a bare number there means seconds."""
    for name, seconds in (("window_before", window_before_s), ("window_after", window_after_s)):
        if seconds < step_s:
            raise ConfigError(f"verification.{name} is {seconds:g} s, shorter than one step ({step_s:g} s): "
                              f"a bare number means seconds; write a duration such as \"30m\"")


def check_positive(settings: dict[str, float]) -> None:
    """Durations that divide or step must be more than zero: ``step = 0`` crashed verification with
    "unexpected ZeroDivisionError" (a bug report) instead of naming the key."""
    for key, seconds in settings.items():
        if not seconds > 0:
            raise ConfigError(f"{key} must be a duration of more than 0 s such as \"60s\" or \"1m\", got {seconds:g} s")


def check_url(key: str, url: str) -> None:
    """A URL that reports, chat messages and the dashboard link to must be http(s): it is written
    into an ``href`` (a ``javascript:`` value would run in whoever clicks the report's link)."""
    if not url.lower().startswith(("http://", "https://")):
        raise ConfigError(f"{key} must start with http:// or https:// (the dashboard's address, e.g. "
                          f"\"https://deploys.example.internal\"), got {url!r}")


def check_promql_brackets(query: str, *, where: str) -> None:
    """Catch a template whose (), {} or [] do not pair up (outside string literals) when the config loads.

    Only pairing is checked here; Prometheus still judges the rest of the syntax at query time.
    """
    pairs = {")": "(", "}": "{", "]": "["}
    stack: list[tuple[str, int]] = []
    quote: str | None = None
    i = 0
    while i < len(query):
        c = query[i]
        if quote:
            if c == "\\" and quote != "`":
                i += 1
            elif c == quote:
                quote = None
        elif c in "\"'`":
            quote = c
        elif c in "({[":
            stack.append((c, i))
        elif c in pairs:
            if not stack or stack[-1][0] != pairs[c]:
                raise ConfigError(f"{where}: {c!r} at character {i + 1} closes nothing; check the brackets of {query!r}")
            stack.pop()
        i += 1
    if quote:
        raise ConfigError(f"{where}: a {quote} string is not closed; check {query!r}")
    if stack:
        c, at = stack[-1]
        raise ConfigError(f"{where}: {c!r} at character {at + 1} is never closed; check the brackets of {query!r}")


def check_name_lists(where: str, raw: dict[str, Any], keys: tuple[str, ...]) -> None:
    """``guards = "error_ratio"`` (a string) would be read letter by letter: name the key instead."""
    for key in keys:
        value = raw.get(key)
        if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
            raise ConfigError(f"{where}.{key} must be a list of names, e.g. {key} = [\"error_ratio\"], got {value!r}")
