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
from urllib.parse import quote
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
from analyzers.text import redact
from dashboard.components.blocks import (  # noqa: F401 - the pages' one import for page furniture
    DOCS,
    banner,
    doc_ref,
    heading_anchor,
    plain_html,
    plain_warning,
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

#: Query parameter (and widget key) of the "times in UTC" switch: ``?utc=true``.
UTC_PARAM = "utc"


@dataclass(frozen=True)
class ViewerZone:
    """The one zone every time on the page is shown in.

    ``from_browser`` is True when it is the browser's zone, False for UTC (chosen with the
    switch, ``chosen=True``, or a fallback because the browser reported nothing usable).
    """

    tz: ZoneInfo | timezone
    name: str
    from_browser: bool
    chosen: bool = False

    def note(self) -> str:
        """One line telling the viewer which zone the page uses, why, and how to change it."""
        if self.from_browser:
            return (f"Times are shown in your browser's time zone, {self.name}"
                    " (switch to UTC in the sidebar).")
        if self.chosen:
            return "Times are shown in UTC (switched in the sidebar; the link keeps it)."
        return "Times are shown in UTC (your browser did not report a time zone)."


def browser_zone() -> ViewerZone:
    """The browser's zone from ``st.context.timezone`` (an IANA name, so DST is followed).

    Falls back to the fixed ``timezone_offset`` when only that is known, then to UTC (and says so).
    """
    name: str | None = None
    offset: int | None = None
    try:
        name = st.context.timezone
        offset = st.context.timezone_offset
    except Exception:  # noqa: BLE001 - older runtimes / bare mode have no context
        name = None
    if name:
        try:
            return ViewerZone(ZoneInfo(name), name, True)
        except (ZoneInfoNotFoundError, ValueError):
            log.warning("unknown browser time zone %r, using its offset or UTC", name)
    if isinstance(offset, int) and offset != 0:
        # JavaScript's getTimezoneOffset(): minutes *behind* UTC (-330 in India).
        fixed = timezone(-timedelta(minutes=offset))
        return ViewerZone(fixed, fixed.tzname(None), True)
    return ViewerZone(UTC, "UTC", False)


def utc_chosen() -> bool:
    """Whether the viewer switched to UTC (the sidebar switch, or ``?utc=true`` in the URL)."""
    value = st.session_state.get(UTC_PARAM)
    if value is None:
        raw = (st.query_params.get(UTC_PARAM) or "").strip().lower()
        return raw in ("true", "1", "yes")
    return bool(value)


def viewer_zone() -> ViewerZone:
    """The zone of this page: UTC when switched, else the browser's zone."""
    if utc_chosen():
        return ViewerZone(UTC, "UTC", False, chosen=True)
    return browser_zone()


def zone_switch() -> None:
    """The sidebar switch between the browser's zone and UTC, kept in the URL as ``?utc=true``.

    Rendered once by the entrypoint, so it keeps its value on every page.
    """
    browser = browser_zone()
    st.sidebar.toggle(
        "Times in UTC", key=UTC_PARAM, bind="query-params",
        help=f"Off: every time on the page is in your browser's zone ({browser.name}). "
             "On: in UTC. Kept in the URL, so a shared link keeps the choice.",
    )


def fmt_time(ts: datetime | None, zone: ViewerZone, *, seconds: bool = False) -> str:
    """``2026-11-27 14:05 CET`` style text in the viewer's zone; ``—`` for None."""
    from analyzers.text import format_time

    return format_time(ts, zone.tz, seconds=seconds, zone_name=zone.name)


def localize_times(text: str, zone: ViewerZone) -> str:
    """Text with every RFC 3339 timestamp in it (``2026-12-06T14:02:00Z``) shown in the viewer's zone.

    Verdict reasons are written once, in UTC, by the verifier; the page reads them in its zone.
    """
    from analyzers.text import localize_timestamps

    return localize_timestamps(text, zone.tz, zone_name=zone.name)


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

    Custom bounds are picked in the page's zone (the one every chart uses) and kept in the URL
    in UTC (``2026-11-27T06:15``), so a link pasted in the incident channel means the same
    instants for a viewer in another zone. Query parameter names: ``{prefix}range``,
    ``{prefix}from``, ``{prefix}to``.
    """
    options = [*presets, "custom"]
    if default not in options:
        default = presets[-1]
    # Always in the URL (url_selectbox): this default can depend on the data (the Latency page opens
    # on its latest deploy), so a link copied from the address bar must carry the range shown.
    label = url_selectbox(
        "Time range", options, key=f"{key_prefix}range", default=default, container=st.sidebar,
        help=f"The last 1h, 24h, ... up to now, or a custom range (in {zone.name}). Kept in the URL.",
    )
    end = floor_now(granularity_s)
    if label != "custom":
        return TimeRange(end - preset_seconds(label), end, label)
    start_ts = zoned_datetime_input(
        f"From ({zone.name})", f"{key_prefix}from", end - 86400, zone, container=st.sidebar,
    )
    end_ts = zoned_datetime_input(f"To ({zone.name})", f"{key_prefix}to", end, zone, container=st.sidebar)
    if end_ts <= start_ts:
        st.sidebar.warning("'To' is before 'From': showing the day before 'To' instead.")
        start_ts = end_ts - 86400
    return TimeRange(start_ts, end_ts, "custom")


def url_selectbox(label: str, options: list[str], *, key: str, default: str | None = None, container: Any = None,
                  help: str | None = None) -> str:
    """A selectbox whose value is always in the URL (``?key=value``), so the address bar is a link to the view.

    Streamlit's ``bind="query-params"`` writes a value to the URL only when the viewer picks it: a
    value the page chose (the first service, which depends on what is stored) stayed out of the URL,
    and a link copied from the address bar named no service. Here the URL value wins when valid, else
    ``default`` (the first option if None); a pick is written back by the change callback, which runs
    before the page."""
    box = container if container is not None else st
    wanted = query_value(key)
    st.session_state[key] = wanted if wanted in options else (default if default in options else options[0])

    def remember() -> None:
        st.query_params[key] = str(st.session_state[key])

    value = str(box.selectbox(label, options, key=key, on_change=remember, help=help))
    if query_value(key) != value:
        st.query_params[key] = value
    return value


def zoned_datetime_input(label: str, param: str, default: int, zone: ViewerZone, *, container: Any = None,
                         help: str | None = None) -> int:
    """A date-time picker shown in the page's zone whose URL parameter ``param`` holds UTC.

    Returns Unix seconds (whole minutes). The widget value is derived from the URL on every
    run (so switching zones or following a link moves it), and a change made in the widget is
    written back to the URL in UTC. Wall-clock times that a DST change makes ambiguous take
    the first occurrence; ones it skips move forward by the gap (zoneinfo's rules).
    """
    box = container if container is not None else st
    key = f"_zdt_{param}"
    raw = query_value(param)
    ts = _parse_url_time(raw)
    if ts is None:
        ts = default // 60 * 60
        if raw is not None:  # a link's value this page cannot read: say so, and put the time shown in the URL
            box.warning(f"The link's {md_code(param)} value {md_code(raw, max_len=60)} is not a time this page "
                        f"reads (UTC minutes such as 2026-11-27T06:15, years {URL_YEARS[0]}-{URL_YEARS[1] - 1}): "
                        "showing the default instead.", icon=":material/link_off:")
            st.query_params[param] = url_time(datetime.fromtimestamp(ts, tz=UTC))
    local = datetime.fromtimestamp(ts, tz=UTC).astimezone(zone.tz).replace(tzinfo=None)

    def _write_back() -> None:
        value = st.session_state.get(key)
        if isinstance(value, datetime):
            st.query_params[param] = url_time(local_to_utc(value, zone))

    st.session_state[key] = local
    value = box.datetime_input(
        label, key=key, on_change=_write_back,
        help=help or f"In {zone.name}, the zone of every chart on the page; the link keeps it in UTC.",
    )
    if param not in st.query_params:
        st.query_params[param] = url_time(datetime.fromtimestamp(ts, tz=UTC))
    if isinstance(value, datetime):
        return int(local_to_utc(value, zone).timestamp()) // 60 * 60
    return ts


def local_to_utc(value: datetime, zone: ViewerZone) -> datetime:
    """A naive wall-clock time in the page's zone to an aware UTC datetime."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone.tz)
    return value.astimezone(UTC)


#: Years a time in the URL may name (end exclusive). The page shows a time in the viewer's zone, and
#: a UTC instant in year 1 or 9999 has no wall-clock time in every zone: Python's datetime overflows
#: (a link with ``lat_from=0001-01-01T00:00`` stopped the whole page for a viewer in New York).
URL_YEARS = (1970, 9000)


def _parse_url_time(raw: str | None) -> int | None:
    """``2026-11-27T06:15`` (UTC, as the URL holds it) to Unix seconds; None when absent, unreadable
    or outside :data:`URL_YEARS`."""
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw)
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    if not URL_YEARS[0] <= value.year < URL_YEARS[1]:
        return None
    return int(value.timestamp())


def url_time(ts: datetime) -> str:
    """A UTC minute as the custom-range URL parameters hold it (``2026-11-27T06:15``)."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")


def deploy_choice_label(version: str, started_at: datetime) -> str:
    """The Latency page's legacy ``?cmp=`` value for a deploy: same for every viewer (UTC)."""
    return f"{version} · {started_at.astimezone(UTC).strftime('%Y-%m-%d %H:%M')} UTC"


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
    detail = md_escape(redact(str(exc).strip()) or type(exc).__name__, max_len=1500)
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


def deploy_link(deploy_id: str) -> str:
    """Relative link to a deploy's page with the id URL-encoded (ids may hold ``&``, ``#``, ``/``);
    a viewer who switched to UTC stays in UTC there (the link opens a new page, not this session)."""
    return f"deploy?deploy={quote(deploy_id, safe='')}" + (f"&{UTC_PARAM}=true" if utc_chosen() else "")


def stale_note(series: Any, end: int, step: int, zone: ViewerZone) -> str | None:
    """"No samples since 20:04 IST" when a series stops well before the end of its range.

    ``series`` is indexed by aware timestamps; ``end`` and ``step`` in Unix seconds. Gaps up to
    three steps (or five minutes) are scrape jitter, not staleness.
    """
    valid = series.dropna() if hasattr(series, "dropna") else series
    if len(valid) == 0:
        return None
    last = valid.index[-1]
    last_dt = last.to_pydatetime() if hasattr(last, "to_pydatetime") else last
    gap = end - last_dt.timestamp()
    if gap <= max(3 * step, 300):
        return None
    return (f"No samples since {fmt_time(last_dt, zone)} ({fmt_duration(gap)} before the end of the range): "
            "the data is stale. Check that Prometheus still scrapes this service (its targets page), or pick "
            "an earlier range.")


def md_code(text: object, *, max_len: int = 200) -> str:
    """A value from the URL or an event as a Markdown code span: inert and never linkified
    (GFM turns bare URLs into links in text, even escaped, but not inside code)."""
    s = " ".join(str(text if text is not None else "").split())
    if len(s) > max_len:
        s = s[: max_len - 1] + "…"
    run = max((len(m) for m in re.findall(r"`+", s)), default=0)
    fence = "`" * (run + 1)
    pad = " " if s.startswith("`") or s.endswith("`") else ""
    return f"{fence}{pad}{s}{pad}{fence}"
