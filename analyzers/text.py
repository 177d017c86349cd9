"""Formatting shared by every output (reports, chat, CLI, dashboard): numbers with units, times,
p-values, and secrets kept out of error text.

One place decides how a value reads, so a report, a chat message and the dashboard say the
same thing:

* a value carries its unit: ratios as percentages (``4.50%``), seconds as milliseconds below one
  second (``250.0 ms``) and as seconds above; several values in one sentence share one scale
  (:func:`format_values`), so a sentence never mixes ``ms`` and ``s``;
* the change of a ratio is in percentage points, kept apart from the relative change:
  ``+3.39 pp (x6.5)`` or ``+0.40 pp (+12%)``, never ``+3.39% (+549.2%)`` (:func:`format_change`);
* p-values never read ``p = 0``: below 0.0001 they read ``< 0.0001`` (:func:`format_p` alone,
  :func:`p_equals` in a sentence: ``p < 0.0001``);
* an effect interval names its level (``99% CI +19.4 ms to +130.9 ms``, :func:`format_interval`);
* durations read ``45 s``, ``4 min``, ``2.5 h``, ``3 d`` (:func:`human_duration`), and ``5m``, ``2h`` where
  they are PromQL or config durations (:func:`format_duration`);
* timestamps are shown in a given zone with the zone named (:func:`format_time`);
* error text that is stored or shown passes :func:`redact` first (webhook paths, tokens,
  userinfo, Authorization headers).

Escaping for a particular output format (Markdown, Slack mrkdwn, HTML) lives with the output, in
:mod:`analyzers.delivery.escape`; :func:`deploy_link` builds the one dashboard URL of a deploy.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "P_FLOOR",
    "ci_label",
    "deploy_link",
    "format_change",
    "format_delta",
    "format_effect",
    "format_interval",
    "format_number",
    "format_p",
    "format_relative",
    "format_time",
    "format_value",
    "format_values",
    "human_duration",
    "localize_timestamps",
    "p_equals",
    "redact",
    "value_scale",
]

#: Smallest p-value printed as a number; anything below reads "< 0.0001" (a p-value that small
#: says "certain" and its digits only reflect how far the test's model is trusted in its tail).
P_FLOOR = 1e-4


# -- values with units ---------------------------------------------------------------------
@dataclass(frozen=True)
class Scale:
    """How values of one unit are shown: multiply by ``factor``, then append ``suffix``."""

    factor: float
    suffix: str
    decimals: int | None  # fixed decimals, or None for 4 significant digits
    space: bool = True

    def render(self, v: float, *, sign: bool = False) -> str:
        x = v * self.factor
        if self.decimals is None:
            num = f"{x:+.4g}" if sign else f"{x:.4g}"
        else:
            num = f"{x:+.{self.decimals}f}" if sign else f"{x:.{self.decimals}f}"
        if num.lstrip("+-") in ("0", "0.0", "0.00", "0.000"):  # "-0.0 ms" reads as a change
            num = num.replace("-", "+" if sign else "")
        if not self.suffix:
            return num
        return f"{num} {self.suffix}" if self.space else f"{num}{self.suffix}"


_RATIO = Scale(100.0, "%", 2, space=False)
_PP = Scale(100.0, "pp", 2)
_MS = Scale(1000.0, "ms", 1)
_S = Scale(1.0, "s", 3)


def _finite(x: Any) -> float | None:
    if x is None or isinstance(x, bool):
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def value_scale(unit: str, values: Iterable[Any] = ()) -> Scale:
    """The one scale for a group of values of ``unit``: seconds become ms when every value is
    below one second, seconds otherwise; ratios are percent; any other unit is printed as is."""
    if unit == "ratio":
        return _RATIO
    if unit == "s":
        finite = [abs(v) for v in (_finite(x) for x in values) if v is not None]
        return _MS if not finite or max(finite) < 1 else _S
    return Scale(1.0, unit, None)


def format_value(x: Any, unit: str = "", *, scale: Scale | None = None) -> str:
    """A number with its unit: ratios as %, seconds as ms below 1 s; ``n/a`` when missing."""
    v = _finite(x)
    if v is None:
        return "n/a" if x is None or _is_number(x) else str(x)
    return (scale or value_scale(unit, [v])).render(v)


def _is_number(x: Any) -> bool:
    try:
        float(x)
    except (TypeError, ValueError):
        return False
    return True


def format_number(x: Any, digits: int = 3) -> str:
    """A number without a unit (a statistic, a factor): ``digits`` significant digits, an exponent
    only outside 0.001 .. 100,000; ``n/a`` when missing."""
    v = _finite(x)
    if v is None:
        return "n/a"
    a = abs(v)
    return f"{v:.{digits}g}" if (a >= 1e-3 or a == 0) and a < 1e5 else f"{v:.{max(digits - 1, 1)}e}"


def format_values(values: Sequence[Any], unit: str = "") -> list[str]:
    """Several values for one sentence or one row, all on one scale (never "900.0 ms to 1.200 s")."""
    scale = value_scale(unit, values)
    return [format_value(v, unit, scale=scale) for v in values]


def format_relative(x: Any) -> str:
    """A relative change (0.5 = +50%) as people read it: ``+12%``, ``+1.2%`` below 10%, a factor
    from doubling on (``x6.5`` rather than ``+549%``) and near -100% (``x0.05``); ``n/a`` if missing."""
    rel = _finite(x)
    if rel is None:
        return "n/a"
    if rel >= 1.0:
        factor = 1.0 + rel
        return f"x{factor:.2g}" if factor < 100 else f"x{factor:.0f}"
    if rel <= -0.9:
        return f"x{1.0 + rel:.2g}"
    return f"{rel * 100:+.0f}%" if abs(rel) >= 0.1 else f"{rel * 100:+.2g}%"


def format_change(effect: Any, unit: str = "", *, rel: Any = None, scale: Scale | None = None,
                  signed: bool = True) -> str:
    """A signed change with its unit, and the relative change apart from it.

    For a ratio the change is in percentage points: ``+3.39 pp (x6.5)``; for other units
    ``-106.9 ms (-16%)``. ``rel`` is the change over the before level (0.5 = +50%).
    ``signed=False`` gives the size alone (``3.39 pp``), for "an increase of ...".
    """
    v = _finite(effect)
    if v is None:
        return "n/a"
    if unit == "ratio":
        scale = _PP
    if not signed:
        v = abs(v)
    out = (scale or value_scale(unit, [v])).render(v, sign=signed)
    if _finite(rel) is not None:
        out += f" ({format_relative(rel)})"
    return out


def format_delta(x: Any, unit: str = "") -> str:
    """A signed change with its unit alone (``+3.39 pp``, ``-106.9 ms``): :func:`format_change`
    without the relative change."""
    return format_change(x, unit)


def format_interval(lo: Any, hi: Any, unit: str = "", *, level: float | None = None, signed: bool = True,
                    scale: Scale | None = None, label: str | None = None) -> str:
    """An effect interval on one scale, named by its level: ``99% CI +19.4 ms to +130.9 ms``.

    ``signed`` (the default) reads the bounds as changes (ratios in pp); otherwise as levels.
    ``label`` names the interval instead of ``level`` (:func:`ci_label` of a result).
    """
    a, b = _finite(lo), _finite(hi)
    if a is None or b is None:
        return "n/a"
    if signed and unit == "ratio":
        scale = _PP
    else:
        scale = scale or value_scale(unit, [a, b])
    text = f"{scale.render(a, sign=signed)} to {scale.render(b, sign=signed)}"
    if label:
        return f"{label} {text}"
    return f"{level * 100:g}% CI {text}" if level is not None else text


def format_effect(effect: Any, unit: str = "", *, rel: Any = None, ci: Sequence[Any] | None = None,
                  level: float | None = None, label: str | None = None) -> str:
    """A change, its relative change and its interval on one scale, for one sentence or cell:
    ``+0.700 s (+50%), 99% CI +0.400 s to +1.100 s`` (never ``+700.0 ms ... +1.100 s``)."""
    lo, hi = (ci[0], ci[1]) if ci is not None and len(ci) == 2 else (None, None)
    has_ci = _finite(lo) is not None and _finite(hi) is not None
    scale = value_scale(unit, [effect, lo, hi] if has_ci else [effect])
    out = format_change(effect, unit, rel=rel, scale=scale)
    if out != "n/a" and has_ci:
        out += f", {format_interval(lo, hi, unit, level=level, scale=scale, label=label)}"
    return out


def format_p(p: Any) -> str:
    """A p-value alone (a table cell, a card): ``0.034``, ``0.00043``, ``< 0.0001``, never ``0``;
    ``n/a`` when missing. In a sentence use :func:`p_equals`."""
    v = _finite(p)
    if v is None:
        return "n/a"
    if v < P_FLOOR:
        return "< 0.0001"
    return f"{min(v, 1.0):.2g}"  # two significant digits; fixed notation from 0.0001 up


def p_equals(p: Any) -> str:
    """A p-value in a sentence: ``p = 0.034`` or ``p < 0.0001``, never ``p = 0``."""
    s = format_p(p)
    if s == "n/a":
        return "p n/a"
    return f"p {s}" if s.startswith("<") else f"p = {s}"


def ci_label(result: dict[str, Any] | None) -> str:
    """"99% CI": the level of a result's effect interval (1 - alpha of its test).

    Verdicts stored before the level was recorded were computed at alpha 0.05: 95 %.
    """
    level = (result or {}).get("ci_level", 0.95)
    if (result or {}).get("ci_kind") == "confidence sequence":  # valid at every look (analyzers.verify.anytime)
        return f"{float(level) * 100:.3g}% any-look CI"
    return f"{float(level) * 100:g}% CI"


# -- durations and times -----------------------------------------------------------------
def human_duration(seconds: Any) -> str:
    """``45 s``, ``4 min``, ``2.5 h``, ``3 d`` (a value meant for people, not PromQL)."""
    v = _finite(seconds)
    if v is None:
        return "n/a"
    a = abs(v)
    if a < 90:
        return f"{v:.0f} s"
    if a < 90 * 60:
        return f"{v / 60:.0f} min"
    if a < 48 * 3600:
        h = v / 3600
        return f"{h:.0f} h" if abs(h - round(h)) < 0.05 else f"{h:.1f} h"
    d = v / 86400
    return f"{d:.0f} d" if abs(d - round(d)) < 0.05 else f"{d:.1f} d"


def _zone(zone: str | tzinfo | None) -> tzinfo:
    if zone is None or zone == "UTC":
        return UTC
    if isinstance(zone, str):
        try:
            return ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {zone!r}: use an IANA name such as Europe/Paris or UTC") from exc
    return zone


def format_time(
    ts: datetime | None, zone: str | tzinfo | None = "UTC", *, seconds: bool = False, zone_name: str | None = None
) -> str:
    """``2026-11-20 15:30 IST``: an instant as wall-clock time in ``zone`` (an IANA name or a
    tzinfo, so each instant gets the offset in force then, DST included), the zone always named.

    Zones without a letter abbreviation are named by their offset (``+1345`` -> ``UTC+13:45``);
    ``zone_name`` names a zone whose tzinfo gives no name. A naive datetime is taken as UTC.
    ``—`` for None.
    """
    if ts is None:
        return "—"
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    local = ts.astimezone(_zone(zone))
    name = local.tzname() or zone_name or ""
    if not name or not name.replace("/", "").replace("_", "").isalpha():
        off = local.utcoffset()
        mins = int(off.total_seconds() // 60) if off is not None else 0
        name = "UTC" if mins == 0 else f"UTC{'+' if mins > 0 else '-'}{abs(mins) // 60:02d}:{abs(mins) % 60:02d}"
    return f"{local:%Y-%m-%d %H:%M{':%S' if seconds else ''}} {name}"


_RFC3339 = re.compile(
    r"\b(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)(Z|[+-]\d{2}:?\d{2})(?![\d:])"
)


def localize_timestamps(text: str, tz: str | tzinfo | None, *, zone_name: str | None = None) -> str:
    """``text`` with every RFC 3339 timestamp that carries an offset (``2026-12-06T14:02:00Z``)
    rewritten by :func:`format_time` in ``tz``; timestamps without an offset are left alone."""

    def repl(m: re.Match[str]) -> str:
        off = m.group(3)
        raw = f"{m.group(1)}T{m.group(2)}{'+00:00' if off == 'Z' else off}"
        try:
            ts = datetime.fromisoformat(raw)
        except ValueError:
            return m.group(0)
        return format_time(ts, tz, seconds=ts.second != 0, zone_name=zone_name)

    return _RFC3339.sub(repl, text)


# -- links --------------------------------------------------------------------------------
def deploy_link(dashboard_url: str, deploy_id: str) -> str:
    """The dashboard page of one deploy; the id is percent-encoded (``&``, ``#``, ``/`` included)."""
    return f"{dashboard_url.rstrip('/')}/deploy?deploy={quote(str(deploy_id), safe='')}"


# -- secrets out of error text -------------------------------------------------------------
REDACTED = "[redacted]"

_URL = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://)([^\s'\"<>`]+)")
#: ``...Max retries exceeded with url: /services/T0/B0/XXXX (Caused by ...)`` from urllib3.
_URL_PATH = re.compile(r"(\burl: )(/[^\s'\"<>`]*)", re.IGNORECASE)
_AUTH_HEADER = re.compile(
    r"(\b(?:proxy-)?authorization\b['\"]?\s*[:=]\s*['\"]?)(?:(bearer|basic|token|digest)\s+)?[^\s'\",}]+",
    re.IGNORECASE,
)
_SCHEME_TOKEN = re.compile(r"\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE)
_KNOWN_TOKENS = re.compile(
    r"\b(?:xox[abposr]-[A-Za-z0-9-]{8,}|whsec_[A-Za-z0-9+/=]{8,}|gh[pousr]_[A-Za-z0-9]{16,}|"
    r"github_pat_[A-Za-z0-9_]{16,}|glpat-[A-Za-z0-9_-]{16,}|sk-[A-Za-z0-9_-]{16,})"
)
_SECRET_KEYS = re.compile(
    r"((?:api[_-]?key|token|secret|password|passwd|signature|sig|access[_-]?key)\s*[=:]\s*)[^\s&'\",;]+",
    re.IGNORECASE,
)


def _token_like(segment: str) -> bool:
    """A path segment that may be a credential: 20+ characters, or 8+ mixing letters and digits
    (Slack's ``T0123ABCD/B0456EFGH/kT9x...``, Discord's and Teams' ids and tokens, tenant keys)."""
    s = segment.split("@")[0]
    if len(s) >= 20:
        return True
    return len(s) >= 8 and any(c.isdigit() for c in s) and any(c.isalpha() for c in s)


def _redact_path(path: str) -> str:
    return "/".join(REDACTED if _token_like(seg) else seg for seg in path.split("/"))


def _redact_query(query: str) -> str:
    parts = []
    for pair in query.split("&"):
        key, eq, _ = pair.partition("=")
        parts.append(f"{key}={REDACTED}" if eq else REDACTED)
    return "&".join(parts)


def _redact_url(scheme: str, rest: str) -> str:
    # Trailing punctuation belongs to the sentence, not the URL.
    tail = ""
    while rest and rest[-1] in ".,;:)]}":
        tail = rest[-1] + tail
        rest = rest[:-1]
    parts = urlsplit(scheme + rest)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = host + (f":{port}" if port else "")
    if "@" in parts.netloc:
        netloc = f"{REDACTED}@{netloc}"
    out = f"{scheme}{netloc}{_redact_path(parts.path)}"
    if parts.query:
        out += "?" + _redact_query(parts.query)
    if parts.fragment:
        out += "#" + REDACTED
    return out + tail


def _redact_url_path(path_and_query: str) -> str:
    path, q, query = path_and_query.partition("?")
    return _redact_path(path) + (f"?{_redact_query(query)}" if q else "")


def redact(text: Any, secrets: Iterable[str | None] = ()) -> str:
    """Error text with secrets taken out, for storing or showing.

    Removed: every URL's userinfo, query values, fragment and token-like path segments (a
    webhook URL's path *is* its secret: ``https://hooks.slack.com/services/[redacted]/...``;
    scheme, host, port and plain segments such as ``/api/v1/query`` stay, so the reader knows
    which target failed), the same in ``url: /path`` fragments from urllib3, Authorization headers and
    ``Bearer``/``Basic`` credentials, ``token=``/``password=``-style pairs, well-known token
    shapes (Slack ``xox*-``, ``whsec_``, GitHub, GitLab), and every string in ``secrets``
    (for example a route's full URL, its path and a Grafana token) wherever it appears.
    """
    out = "" if text is None else str(text)
    # Known secrets first, longest first, so a URL is replaced before its own path.
    for s in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        out = out.replace(s, REDACTED)
    out = _URL.sub(lambda m: _redact_url(m.group(1), m.group(2)), out)
    out = _URL_PATH.sub(lambda m: m.group(1) + _redact_url_path(m.group(2)), out)
    out = _AUTH_HEADER.sub(lambda m: m.group(1) + (m.group(2) + " " if m.group(2) else "") + REDACTED, out)
    out = _SCHEME_TOKEN.sub(lambda m: f"{m.group(1)} {REDACTED}", out)
    out = _KNOWN_TOKENS.sub(REDACTED, out)
    out = _SECRET_KEYS.sub(lambda m: m.group(1) + REDACTED, out)
    return out


def url_secrets(url: str | None) -> list[str]:
    """The parts of a target URL that must never be shown: the URL itself, its path, its query
    and its userinfo (pass them to :func:`redact`)."""
    if not url:
        return []
    parts = urlsplit(url)
    out = [url]
    if parts.path not in ("", "/"):
        out.append(parts.path)
        # Token-like segments also leave the URL in error text (urllib3 quotes the path alone).
        out.extend(s for s in parts.path.split("/") if _token_like(s))
    if parts.query:
        out.append(parts.query)
    if parts.password:
        out.append(parts.password)
    return out


def format_duration(seconds: float) -> str:
    """PromQL duration for a number of seconds (``300 -> '5m'``)."""
    s = int(round(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size and s % size == 0:
            return f"{s // size}{unit}"
    return f"{max(s, 1)}s"
