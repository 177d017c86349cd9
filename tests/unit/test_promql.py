"""PromQL building: no label value can escape its string literal, templates fail loudly."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzers.errors import ConfigError
from analyzers.prometheus.promql import (
    escape_label_value,
    escape_regex_value,
    is_duration,
    matchers,
    render,
    selector,
)

# --- a tiny PromQL lexer for double-quoted strings (Go strconv.Unquote rules) -----------

_SIMPLE = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\", '"': '"', "'": "'"}


def parse_string_literal(text: str, pos: int) -> tuple[str, int]:
    """Parse the Go/PromQL string literal starting at ``text[pos] == '"'``.

    Returns (value, index just after the closing quote). Raises ValueError where
    Prometheus's lexer would: raw newline, unknown escape, unterminated string.
    """
    assert text[pos] == '"'
    out: list[str] = []
    i = pos + 1
    while True:
        if i >= len(text):
            raise ValueError("unterminated quoted string")
        ch = text[i]
        if ch == "\n":
            raise ValueError("raw newline in string")
        if ch == '"':
            return "".join(out), i + 1
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        esc = text[i + 1]
        if esc in _SIMPLE:
            out.append(_SIMPLE[esc])
            i += 2
        elif esc == "x":
            out.append(chr(int(text[i + 2 : i + 4], 16)))
            i += 4
        elif esc == "u":
            out.append(chr(int(text[i + 2 : i + 6], 16)))
            i += 6
        elif esc == "U":
            out.append(chr(int(text[i + 2 : i + 10], 16)))
            i += 10
        elif esc in "01234567":
            out.append(chr(int(text[i + 1 : i + 4], 8)))
            i += 4
        else:
            raise ValueError(f"unknown escape sequence \\{esc}")


def parse_selector(text: str) -> tuple[str, dict[str, tuple[str, str]]]:
    """Parse ``metric{a="..",b=~".."}`` into (metric, {label: (op, value)}); strict."""
    m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)", text)
    assert m
    metric, i = m.group(1), m.end()
    labels: dict[str, tuple[str, str]] = {}
    if i == len(text):
        return metric, labels
    assert text[i] == "{"
    i += 1
    while text[i] != "}":
        lm = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)(=~|!~|!=|=)").match(text, i)
        assert lm, text[i:]
        value, i = parse_string_literal(text, lm.end())
        labels[lm.group(1)] = (lm.group(2), value)
        if text[i] == ",":
            i += 1
    assert i == len(text) - 1, f"trailing text after selector: {text[i + 1:]!r}"
    return metric, labels


def go_regex_literal(pattern: str) -> str:
    """What the Go regexp parser reads an escaped literal as: ``\\X`` with X punctuation -> X."""
    out, i = [], 0
    while i < len(pattern):
        if pattern[i] == "\\":
            nxt = pattern[i + 1]
            assert not nxt.isalnum(), f"Go regexp would read \\{nxt} as a class or escape"
            out.append(nxt)
            i += 2
        else:
            assert pattern[i] not in ".+*?()|[]{}^$", f"unescaped metacharacter {pattern[i]!r}"
            out.append(pattern[i])
            i += 1
    return "".join(out)


# --- escaping --------------------------------------------------------------------------

NASTY = [
    'say "hi"',
    "back\\slash",
    "trailing\\",
    "line\nbreak",
    "cr\rtab\tvt\vff\fbell\abs\b",
    'x"} or up{job=~".+',
    '"}[5m])) or vector(1) #',
    "nul\x00esc\x1bdel\x7f",
    "c1\x85ls\u2028ps\u2029",
    "ünïcödé ✓ 日本 🚀",
    "a.b*c+d?e(f)g[h]i{j}k|l^m$n",
    "",
]


@pytest.mark.parametrize("value", NASTY)
def test_escaped_value_parses_back_to_itself_inside_a_selector(value: str) -> None:
    query = selector("http_requests_total", service=value, version="v1")
    metric, labels = parse_selector(query)
    assert metric == "http_requests_total"
    assert labels == {"service": ("=", value), "version": ("=", "v1")}


def test_injection_attempt_stays_one_label_value() -> None:
    query = render('sum(rate(http_requests_total{service="$service"}[$window]))', service='x"} or up{job=~".+')
    assert query == 'sum(rate(http_requests_total{service="x\\"} or up{job=~\\".+"}[5m]))'
    _, labels = parse_selector(query[len("sum(rate(") : query.index("[")])
    assert labels == {"service": ("=", 'x"} or up{job=~".+')}


def test_escapes_use_only_named_escapes_and_hex_for_other_controls() -> None:
    assert escape_label_value('a"b\\c\n') == 'a\\"b\\\\c\\n'
    assert escape_label_value("\x00\x1f\x7f") == "\\x00\\x1f\\x7f"
    assert escape_label_value("\x85") == "\\u0085"
    assert escape_label_value("é🚀") == "é🚀"  # printable unicode passes through
    assert not any(ord(c) < 0x20 for c in escape_label_value("".join(map(chr, range(0x20)))))


def test_lone_surrogate_is_refused_with_advice() -> None:
    with pytest.raises(ConfigError, match="surrogate"):
        escape_label_value("bad\ud800")


def test_regex_escaping_matches_the_literal_only() -> None:
    value = "a.b*c+d?e(f)g[h]i{j}k|l^m$n\\o"
    escaped = escape_regex_value(value)
    pattern, end = parse_string_literal('"' + escaped + '"', 0)
    assert go_regex_literal(pattern) == value
    # Prometheus anchors the regex; Python's re agrees on these escapes.
    assert re.fullmatch(pattern, value)
    assert not re.fullmatch(pattern, "aXb*c+d?e(f)g[h]i{j}k|l^m$n\\o")


# --- property: any text round-trips ---------------------------------------------------

# Hypothesis' text() excludes surrogates by default, exactly what PromQL can express.
@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.text())
def test_any_value_round_trips_through_a_selector(value: str) -> None:
    _, labels = parse_selector(selector("m", a=value))
    assert labels == {"a": ("=", value)}


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.text())
def test_any_regex_value_matches_exactly_itself(value: str) -> None:
    query = render('m{a=~"${a:regex}"}', a=value)
    _, labels = parse_selector(query)
    op, pattern = labels["a"]
    assert op == "=~"
    assert go_regex_literal(pattern) == value
    assert re.fullmatch(pattern, value, flags=re.DOTALL)


# --- templates -------------------------------------------------------------------------

def test_render_fills_all_placeholder_forms() -> None:
    template = 'm{a="$svc",b="${svc}",c=~"${ver:regex}"}[$window] offset ${window}'
    out = render(template, window="1h30m", svc='q"', ver="1.2")
    assert out == 'm{a="q\\"",b="q\\"",c=~"1\\\\.2"}[1h30m] offset 1h30m'


def test_grafana_rate_interval_variables_mean_the_window() -> None:
    assert render("rate(m[$__rate_interval]) + rate(m[${__interval}])", window="2m") == "rate(m[2m]) + rate(m[2m])"


def test_render_leaves_regex_anchor_dollars_alone() -> None:
    assert render('m{path=~"/api/.*$"}') == 'm{path=~"/api/.*$"}'


@pytest.mark.parametrize(
    "template, message",
    [
        ('m{a="$servce"}', r"\$servce"),
        ('m{a="${servce}"}', r"\$servce"),
        ('m{a="${service:json}"}', r"format"),
        ('m{a="${}"}', r"malformed placeholder"),
        ("m[${window:regex}]", r"no format"),
    ],
)
def test_render_rejects_unknown_placeholders_naming_them(template: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        render(template, service="checkout")


@pytest.mark.parametrize("window", ["5m", "30s", "1h30m", "250ms", "1d", "2w", "1y"])
def test_valid_windows_accepted(window: str) -> None:
    assert is_duration(window)
    assert render("rate(m[$window])", window=window) == f"rate(m[{window}])"


@pytest.mark.parametrize("window", ["", "5", "5 m", "5m]) or vector(1", "-5m", "1.5m", "$x", "5M"])
def test_invalid_windows_refused(window: str) -> None:
    with pytest.raises(ConfigError, match="window"):
        render("rate(m[$window])", window=window)


def test_selector_validates_names_and_keeps_order() -> None:
    assert selector("up") == "up"
    assert selector("a:b_c", z="1", a="2") == 'a:b_c{z="1",a="2"}'
    assert matchers({"service": "s"}, le="0.5") == 'service="s",le="0.5"'
    with pytest.raises(ConfigError, match="metric name"):
        selector('up{job="x"}')
    with pytest.raises(ConfigError, match="label name"):
        matchers({"bad-label": "x"})
