"""Shared page furniture: time zone, time ranges bound to the URL, safe text, error panels.

Nothing here decides anything about deploys or latency; it only turns widgets and
timestamps into values the analyzers take, and analyzer errors into banners that say
what to do next. Every widget that shapes a view is bound to the URL
(``bind="query-params"``), so a link pasted in the incident channel reopens the same view.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import streamlit as st

from analyzers.errors import (
    AnalyzerError,
    ConfigError,
    PrometheusError,
    PrometheusQueryError,
    PrometheusUnreachable,
    StoreError,
)

log = logging.getLogger("dashboard")

#: Verdict colours shared by every chart, badge and table.
VERDICT_COLORS: dict[str, str] = {
    "pass": "#2e9e44",
    "fail": "#d62728",
    "inconclusive": "#e0a100",
    "unverified": "#8c8c8c",
}
BadgeColor = Literal["red", "orange", "yellow", "blue", "green", "violet", "gray", "grey", "primary"]
BADGE_COLORS: dict[str, BadgeColor] = {"pass": "green", "fail": "red", "inconclusive": "orange", "unverified": "gray"}


# --------------------------------------------------------------------------- time zone


@dataclass(frozen=True)
class ViewerZone:
    """The zone times are shown in. ``from_browser`` is False when we fell back to UTC."""

    tz: ZoneInfo | timezone
    name: str
    from_browser: bool

    def note(self) -> str:
        """One line telling the viewer which zone the page uses and why."""
        if self.from_browser:
            return f"Times are shown in your browser's time zone, {self.name}."
        return "Times are shown in UTC (your browser did not report a time zone)."


def viewer_zone() -> ViewerZone:
    """The viewer's zone from ``st.context.timezone``; UTC (and says so) when unknown or invalid."""
    name: str | None = None
    try:
        name = st.context.timezone
    except Exception:  # noqa: BLE001 - older runtimes / bare mode have no context
        name = None
    if name:
        try:
            return ViewerZone(ZoneInfo(name), name, True)
        except (ZoneInfoNotFoundError, ValueError):
            log.warning("unknown browser time zone %r, using UTC", name)
    return ViewerZone(UTC, "UTC", False)


def fmt_time(ts: datetime | None, zone: ViewerZone, *, seconds: bool = False) -> str:
    """``2026-11-27 14:05 CET`` style text in the viewer's zone; ``—`` for None."""
    if ts is None:
        return "—"
    local = ts.astimezone(zone.tz)
    fmt = "%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M"
    return f"{local.strftime(fmt)} {local.tzname() or zone.name}"


def fmt_duration(seconds: float | None) -> str:
    """Human duration (``45 min``, ``2.5 h``)."""
    if seconds is None or not math.isfinite(seconds):
        return "—"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


# --------------------------------------------------------------------------- time ranges


@dataclass(frozen=True)
class TimeRange:
    """A closed interval in UTC plus the label the viewer picked (``24h`` or ``custom``).

    ``start``/``end`` are integer Unix seconds, which makes them stable cache keys.
    """

    start: int
    end: int
    label: str

    @property
    def start_dt(self) -> datetime:
        return datetime.fromtimestamp(self.start, tz=UTC)

    @property
    def end_dt(self) -> datetime:
        return datetime.fromtimestamp(self.end, tz=UTC)

    @property
    def seconds(self) -> int:
        return self.end - self.start


_PRESET_RE = re.compile(r"^(\d+)([mhdw])$")
_PRESET_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 604800}


def preset_seconds(label: str) -> int:
    """``"24h" -> 86400``. Only the fixed presets reach this, never free text."""
    m = _PRESET_RE.match(label)
    if not m:
        raise ValueError(f"not a preset: {label!r}")
    return int(m.group(1)) * _PRESET_UNITS[m.group(2)]


def floor_now(granularity_s: int, *, now: float | None = None) -> int:
    """Now in Unix seconds rounded down to ``granularity_s``, so reruns hit the cache."""
    t = int(time.time() if now is None else now)
    g = max(int(granularity_s), 1)
    return t // g * g


def time_range_picker(
    presets: tuple[str, ...],
    *,
    default: str,
    zone: ViewerZone,
    key_prefix: str = "",
    granularity_s: int = 60,
) -> TimeRange:
    """Sidebar picker: presets plus "custom"; every choice bound to the URL.

    Custom bounds are entered and kept in UTC (and labelled so): a link pasted in the
    incident channel must mean the same instants for a viewer in another zone, and the URL
    holds the widget's naive value. Charts still draw in the viewer's zone. Query parameter
    names: ``{prefix}range``, ``{prefix}from``, ``{prefix}to``.
    """
    options = [*presets, "custom"]
    label = st.sidebar.selectbox(
        "Time range",
        options,
        index=options.index(default),
        key=f"{key_prefix}range",
        bind="query-params",
        help="The last 1h, 24h, ... up to now, or a custom range (in UTC). Kept in the URL.",
    )  # no format_func: a bound widget writes its *formatted* value into the URL
    end = floor_now(granularity_s)
    if label != "custom":
        return TimeRange(end - preset_seconds(label), end, label)
    utc_help = f"UTC, so shared links mean the same time everywhere. You are in {zone.name}."
    naive_now = datetime.fromtimestamp(end, tz=UTC).replace(tzinfo=None, second=0, microsecond=0)
    start_in = st.sidebar.datetime_input(
        "From (UTC)", value=naive_now - timedelta(days=1), key=f"{key_prefix}from", bind="query-params",
        help=utc_help,
    )
    end_in = st.sidebar.datetime_input(
        "To (UTC)", value=naive_now, key=f"{key_prefix}to", bind="query-params", help=utc_help
    )
    start_ts = _utc_to_unix(start_in) if start_in else end - 86400
    end_ts = _utc_to_unix(end_in) if end_in else end
    if end_ts <= start_ts:
        st.sidebar.warning("'To' is before 'From': showing the day before 'To' instead.")
        start_ts = end_ts - 86400
    return TimeRange(start_ts, end_ts, "custom")


def url_time(ts: datetime) -> str:
    """A UTC minute as the custom-range URL parameters hold it (``2026-11-27T06:15``)."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")


def deploy_choice_label(version: str, started_at: datetime) -> str:
    """The Latency page's label (and URL value) for a deploy to compare: same for every viewer."""
    return f"{version} · {started_at.astimezone(UTC).strftime('%Y-%m-%d %H:%M')} UTC"


def _utc_to_unix(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp())


# --------------------------------------------------------------------------- safe text


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:=\"'])")


def md_escape(text: object, *, max_len: int = 500) -> str:
    """Text from deploy events made inert for ``st.markdown`` (no links, HTML, LaTeX, headings).

    Newlines become spaces and overlong values are cut, so one field cannot reshape the page.
    """
    s = str(text if text is not None else "")
    s = " ".join(s.split())
    if len(s) > max_len:
        s = s[: max_len - 1] + "…"
    return _MD_SPECIAL.sub(r"\\\1", s)


def show_query(query: str) -> None:
    """A PromQL query shown verbatim in a monospace block the viewer can select and copy.

    Not ``st.code``: any code block makes the browser load and run Streamlit's syntax
    highlighter (0.3-0.7 s of main-thread time per page load measured in headless Chromium),
    and PromQL gets no highlighting from it anyway. ``st.text`` renders the string as plain
    text, so label values can never turn into markup.
    """
    st.text(query)


# --------------------------------------------------------------------------- errors


def explain_error(exc: BaseException, *, what: str) -> str:
    """A banner message for an analyzer error: what failed, the server's words, what to do."""
    detail = md_escape(str(exc).strip() or type(exc).__name__, max_len=1500)
    if isinstance(exc, PrometheusUnreachable):
        return (
            f"{what}: Prometheus is unreachable. {detail}\n\n"
            "Check that Prometheus is running and that `PROMETHEUS_URL` (or [prometheus] url in the "
            "config file) points at it, then reload the page."
        )
    if isinstance(exc, PrometheusQueryError):
        q = f"\n\nQuery: {md_escape(exc.query, max_len=1500)}" if getattr(exc, "query", None) else ""
        return f"{what}: Prometheus refused the query ({exc.error_type}). {detail}{q}"
    if isinstance(exc, PrometheusError):
        return f"{what}: Prometheus error. {detail}"
    if isinstance(exc, StoreError):
        return (
            f"{what}: the deploy store is unavailable. {detail}\n\n"
            "Check `DEPLOY_STORE_URL` (or [store] url in the config file) and that the database is "
            "reachable, then reload the page. Nothing acknowledged is lost."
        )
    if isinstance(exc, ConfigError):
        return f"{what}: configuration problem. {detail}\n\nFix the config file named by `ANALYZERS_CONFIG`."
    if isinstance(exc, AnalyzerError):
        return f"{what}: {detail}"
    return (
        f"{what}: unexpected internal error ({type(exc).__name__}). This is a bug: please report it "
        "with the page URL. The rest of the page still works."
    )


@contextlib.contextmanager
def panel(what: str) -> Iterator[None]:
    """Run one panel; on failure show a banner in its place and let the rest of the page go on.

    ``st.stop()``/``st.rerun()`` raise ``BaseException`` subclasses, so they pass through.
    """
    try:
        yield
    except AnalyzerError as exc:
        log.warning("%s failed: %s", what, exc)
        st.error(explain_error(exc, what=what), icon=":material/error:")
    except Exception as exc:  # noqa: BLE001 - one broken panel must not take the page down
        log.exception("%s failed", what)
        st.error(explain_error(exc, what=what), icon=":material/error:")


def clicked_deploy(event: Any) -> str | None:
    """The deploy id of a clicked deploy marker in a Plotly selection event, if any.

    Deploy markers carry the id as a string in ``customdata``; other traces carry numbers
    (or nothing), so clicking a data point never navigates away.
    """
    try:
        points = event["selection"]["points"] if event else []
    except (KeyError, TypeError):
        return None
    for p in points:
        cd = p.get("customdata") if isinstance(p, dict) else None
        if isinstance(cd, list) and len(cd) == 1:
            cd = cd[0]
        if isinstance(cd, str) and cd:
            return cd
    return None


def query_value(name: str) -> str | None:
    """One query-parameter value (the last if repeated), stripped; None when absent or empty."""
    values = st.query_params.get_all(name)
    if not values:
        return None
    return values[-1].strip() or None
