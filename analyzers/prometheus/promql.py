"""Building PromQL safely: escaping label values and rendering metric templates.

Every value that reaches a query (service, version, endpoint, anything from a deploy event
or the dashboard's URL) goes through :func:`escape_label_value` or
:func:`escape_regex_value`. Without that a value such as ``x"} or up{job=~".+`` closes the
string and turns a template into a query over every series.

Usage::

    >>> render('rate(http_requests_total{service="$service"}[$window])', service="checkout", window="1m")
    'rate(http_requests_total{service="checkout"}[1m])'
    >>> selector("http_requests_total", service="checkout", version="v1.2")
    'http_requests_total{service="checkout",version="v1.2"}'

Caveats: PromQL string literals are Go strings, so only the escapes ``\\a \\b \\f \\n \\r
\\t \\v \\\\ \\"`` plus hex/unicode escapes exist; other control characters are written as
``\\xNN`` / ``\\uNNNN``. A lone surrogate cannot be expressed at all and raises ConfigError.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping

from analyzers.errors import ConfigError
from analyzers.text import format_duration

__all__ = [
    "by_clause",
    "escape_label_value",
    "escape_regex_value",
    "histogram_base",
    "is_duration",
    "matchers",
    "quantile_text",
    "render",
    "selector",
    "validate_label_name",
    "validate_metric_name",
    "window_text",
    "with_matchers",
]

_NAMED_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
    "\\": "\\\\",
    '"': '\\"',
}

# One PromQL duration: 1h30m, 5m, 250ms, 1y ... (units as accepted by Prometheus 2.x).
_DURATION = re.compile(r"^(?:\d+(?:ms|s|m|h|d|w|y))+$")
_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# $name, ${name}, ${name:format}. A "$" followed by anything else (a regex anchor such as
# =~"foo$") is left alone.
_PLACEHOLDER = re.compile(r"\$(?:\{([^}]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
# Grafana's rate-window variables mean the same thing: accept them in copied dashboards' queries.
_WINDOW_NAMES = frozenset({"window", "__rate_interval", "__interval"})
_BRACED = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z_]+))?$")


def _escape_char(ch: str) -> str:
    named = _NAMED_ESCAPES.get(ch)
    if named is not None:
        return named
    cp = ord(ch)
    if cp < 0x20 or cp == 0x7F:
        return f"\\x{cp:02x}"
    if 0x80 <= cp <= 0x9F or cp in (0x2028, 0x2029):
        # C1 controls and Unicode line/paragraph separators: printable-safe form.
        return f"\\u{cp:04x}"
    if 0xD800 <= cp <= 0xDFFF:
        raise ConfigError(
            f"label value contains a lone surrogate (U+{cp:04X}), which PromQL cannot express: "
            "fix the value at its source (deploy event or config)"
        )
    return ch


def escape_label_value(value: str) -> str:
    """Escape ``value`` for use inside a double-quoted PromQL string (no quotes added).

    The result contains no raw control character and no unescaped ``"`` or ``\\``, so it can
    never end the string it is placed in.
    """
    return "".join(_escape_char(ch) for ch in str(value))


def escape_regex_value(value: str) -> str:
    """Escape ``value`` so a ``=~"..."`` matcher matches exactly that literal text.

    :func:`re.escape` first (it backslashes only punctuation and whitespace, which Go's RE2
    syntax reads as literals too), then string-literal escaping. Prometheus anchors regex
    matchers, so the matcher equals ``="value"`` in effect.
    """
    return escape_label_value(re.escape(str(value)))


def is_duration(value: str) -> bool:
    """True when ``value`` is a PromQL duration literal such as ``5m`` or ``1h30m``."""
    return bool(_DURATION.match(value))


def validate_metric_name(name: str) -> str:
    """Return ``name`` or raise ConfigError when it is not a valid metric name."""
    if not _METRIC_NAME.match(name):
        raise ConfigError(f"{name!r} is not a valid Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)")
    return name


def validate_label_name(name: str) -> str:
    """Return ``name`` or raise ConfigError when it is not a valid label name."""
    if not _LABEL_NAME.match(name):
        raise ConfigError(f"{name!r} is not a valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)")
    return name


def render(template: str, *, window: str = "5m", **labels: str) -> str:
    """Fill a metric template's placeholders with escaped values.

    ``$name`` and ``${name}`` become the string-escaped value (the template supplies the
    quotes), ``${name:regex}`` the regex-escaped value (for ``=~"..."``), and ``$window``
    (or ``${window}``; Grafana's ``$__rate_interval`` and ``$__interval`` too) the rate window
    verbatim after checking it is a PromQL duration.
    An unknown placeholder or format raises ConfigError naming it, so a typo in the config
    fails loudly instead of querying for the literal text ``$servce``.
    """
    if not is_duration(window):
        raise ConfigError(f"window must be a PromQL duration such as '5m' or '1h30m', got {window!r}")

    def replace(m: re.Match[str]) -> str:
        if m.group(2) is not None:
            name, fmt = m.group(2), None
        else:
            braced = _BRACED.match(m.group(1))
            if braced is None:
                raise ConfigError(f"malformed placeholder {m.group(0)!r} in template {template!r}")
            name, fmt = braced.group(1), braced.group(2)
        if name in _WINDOW_NAMES:
            if fmt is not None:
                raise ConfigError(f"placeholder {m.group(0)!r}: $window takes no format")
            return window
        if name not in labels:
            known = ", ".join(["window", *sorted(labels)])
            raise ConfigError(
                f"unknown placeholder ${name} in template {template!r}: available here are {known}"
            )
        value = str(labels[name])
        if fmt is None:
            return escape_label_value(value)
        if fmt == "regex":
            return escape_regex_value(value)
        raise ConfigError(f"unknown placeholder format {m.group(0)!r}: use ${{{name}}} or ${{{name}:regex}}")

    return _PLACEHOLDER.sub(replace, template)


def matchers(labels: Mapping[str, str] | None = None, /, **more: str) -> str:
    """``a="..",b=".."`` (equality matchers, escaped, in the order given), without braces."""
    merged = {**(labels or {}), **more}
    return ",".join(f'{validate_label_name(k)}="{escape_label_value(str(v))}"' for k, v in merged.items())


def selector(metric: str, **labels: str) -> str:
    """``metric{a="..",b=".."}`` with every value escaped; just ``metric`` without labels."""
    validate_metric_name(metric)
    inner = matchers(labels)
    return f"{metric}{{{inner}}}" if inner else metric


# --- pieces the latency builders share --------------------------------------------------

def histogram_base(histogram: str) -> str:
    """A classic histogram's base name (``x`` for ``x`` or ``x_bucket``), validated."""
    return validate_metric_name(histogram.removesuffix("_bucket"))


def with_matchers(selector: str, *extra: str) -> str:
    """``{selector,extra...}``: matcher text with or without braces joined, or ``""`` when empty."""
    inner = selector.strip()
    if inner.startswith("{") and inner.endswith("}"):
        inner = inner[1:-1].strip()
    parts = [p for p in (inner, *extra) if p]
    return "{" + ",".join(parts) + "}" if parts else ""


def window_text(window: str | float) -> str:
    """A range window as a PromQL duration: seconds are rounded up, text is validated."""
    if isinstance(window, (int, float)):
        return format_duration(math.ceil(window))
    if not is_duration(window):
        raise ConfigError(f"window must be a PromQL duration such as '5m', got {window!r}")
    return window


def window_increases(series: str, windows: Iterable[tuple[int, int]]) -> tuple[int, list[str]]:
    """``increase(series[end-start] offset (at-end))`` for each ``(start, end)`` window (Unix s), and
    ``at``, the latest end: evaluated at ``at`` as an instant query, each part counts exactly its own
    window (the same numbers as one instant query per window at its end).

    ``series`` is the selector with its matchers (``h_bucket{service="x"}`` for classic buckets,
    ``h{service="x"}`` for a native histogram). The classic and native before/after builders share
    this preamble; a window that does not end after it starts is refused.
    """
    spans = list(windows)
    if not spans:
        raise ConfigError("at least one window is needed")
    at = max(end for _, end in spans)
    parts = []
    for start, end in spans:
        if end <= start:
            raise ConfigError(f"a window must end after it starts (got {start}..{end})")
        offset = f" offset {format_duration(at - end)}" if at > end else ""
        parts.append(f"increase({series}[{format_duration(end - start)}]{offset})")
    return at, parts


def quantile_text(q: float) -> str:
    """A quantile between 0 and 1 as PromQL text (``0.99``)."""
    if not 0.0 <= q <= 1.0:
        raise ConfigError(f"quantile must be between 0 and 1 (0.99 for p99), got {q}")
    return format(q, "g")


def by_clause(by: Iterable[str], *, keep_le: bool) -> str:
    """The labels of a ``by (...)`` clause: validated, deduplicated, ``le`` first when kept."""
    labels = [validate_label_name(b) for b in by if b != "le"]
    labels = list(dict.fromkeys(labels))
    if keep_le:
        labels.insert(0, "le")
    return ", ".join(labels)
