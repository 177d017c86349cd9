"""Dashboard helpers that every page relies on: safe text, time zones, error banners, charts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from analyzers.errors import BadDataError, PrometheusUnreachable, StoreUnavailable
from dashboard.components import charts, common, latency_charts, percentile_chart
from dashboard.data import _redact

BERLIN = common.ViewerZone(ZoneInfo("Europe/Berlin"), "Europe/Berlin", True)


@pytest.mark.parametrize(
    "hostile",
    [
        "[click](javascript:alert(1))",
        "<img src=x onerror=alert(1)>",
        "# Heading\n\n**bold**",
        "$x^2$ and :red[colour] and ![img](http://evil/x.png)",
        "`code` | table |",
    ],
)
def test_md_escape_leaves_no_markup(hostile: str) -> None:
    """Every Markdown/HTML metacharacter is backslash-escaped and newlines are gone."""
    out = common.md_escape(hostile)
    assert "\n" not in out
    unescaped = [out[i] for i in range(len(out)) if out[i] in "[]()<>#*`|$:!" and (i == 0 or out[i - 1] != "\\")]
    assert unescaped == []


def test_md_escape_cuts_overlong_values() -> None:
    assert len(common.md_escape("a" * 10_000, max_len=100)) == 100


def test_local_times_follow_daylight_saving() -> None:
    """Wall-clock times in the viewer's zone, across the October DST change in Berlin."""
    utc = pd.DatetimeIndex([datetime(2026, 10, 24, 12, tzinfo=UTC), datetime(2026, 10, 26, 12, tzinfo=UTC)])
    local = charts.local_times(utc, BERLIN)
    assert [t.hour for t in local] == [14, 13]  # CEST (+2) then CET (+1)
    assert local.tz is None  # Plotly would ignore an offset: we hand it wall-clock times


def test_fmt_time_names_the_zone() -> None:
    assert common.fmt_time(datetime(2026, 7, 1, 10, 0, tzinfo=UTC), BERLIN) == "2026-07-01 12:00 CEST"
    assert common.fmt_time(None, BERLIN) == "—"


def test_presets_and_floor_now() -> None:
    assert common.preset_seconds("24h") == 86400 and common.preset_seconds("7d") == 604800
    with pytest.raises(ValueError):
        common.preset_seconds("24 hours; drop table")
    assert common.floor_now(60, now=1_000_000_059.9) == 1_000_000_020


def test_error_banners_say_what_to_do() -> None:
    down = common.explain_error(PrometheusUnreachable("connection refused", url="http://p:9090"), what="Chart")
    assert down.startswith("Chart: Prometheus is unreachable") and "PROMETHEUS_URL" in down
    bad = common.explain_error(BadDataError("parse error", query='up{a="]"}'), what="Percentiles")
    assert "refused the query (bad_data)" in bad and "Query:" in bad
    store = common.explain_error(StoreUnavailable("database is locked"), what="Loading deploys")
    assert "deploy store is unavailable" in store and "DEPLOY_STORE_URL" in store
    bug = common.explain_error(KeyError("x"), what="Heatmap")
    assert "This is a bug" in bug and "KeyError" in bug


def test_store_url_password_is_redacted() -> None:
    assert _redact("postgresql://dash:s3cr3t@db:5432/deploys") == "postgresql://dash:***@db:5432/deploys"
    assert _redact("sqlite:////var/lib/deploys.db") == "sqlite:////var/lib/deploys.db"


def test_unit_scales() -> None:
    assert charts.unit_scale("s") == charts.UnitScale(1000.0, "ms")
    assert charts.unit_scale("ratio") == charts.UnitScale(100.0, "%")
    assert charts.unit_scale("req/s").label == "req/s"


def test_hover_text_escapes_event_fields() -> None:
    from analyzers.model import Deploy

    d = Deploy(deploy_id="x", service="<b>svc</b>", environment="prod", version="v1<script>",
               started_at=datetime(2026, 1, 1, tzinfo=UTC), author="<i>eve</i>", signed=False)
    hover = charts.deploy_hover(d, None, BERLIN)
    assert "<script>" not in hover and "&lt;script&gt;" in hover
    assert "&lt;i&gt;eve&lt;/i&gt;" in hover
    assert "UNSIGNED" in hover and "verdict: unverified" in hover


def test_only_deploy_markers_navigate() -> None:
    marker = {"selection": {"points": [{"curve_number": 3, "customdata": "dep-1"}]}}
    line_point = {"selection": {"points": [{"curve_number": 0, "customdata": [12.5, 25.0]}]}}
    assert common.clicked_deploy(marker) == "dep-1"
    assert common.clicked_deploy({"selection": {"points": [{"customdata": ["dep-2"]}]}}) == "dep-2"
    assert common.clicked_deploy(line_point) is None
    assert common.clicked_deploy({"selection": {"points": []}}) is None
    assert common.clicked_deploy(None) is None


def test_plot_x_numbers_only_when_the_browser_draws_the_pages_zone() -> None:
    """Plotly.js draws numbers in the browser's zone and strings as written: numbers (real instants)
    only when the page follows the browser by name; wall-clock strings otherwise, DST per instant."""
    from datetime import timedelta, timezone

    ts = [datetime(2026, 11, 1, 5, 30, tzinfo=UTC), datetime(2026, 11, 1, 6, 30, tzinfo=UTC)]  # NY falls back at 06:00
    browser = common.ViewerZone(ZoneInfo("America/New_York"), "America/New_York", True)
    assert charts.plot_x(ts, browser).tolist() == [t.timestamp() * 1000 for t in ts]
    switched = common.ViewerZone(ZoneInfo("America/New_York"), "America/New_York", False, chosen=True)
    assert charts.plot_x(ts, switched).tolist() == ["2026-11-01T01:30:00", "2026-11-01T01:30:00"]  # EDT, then EST
    fixed = common.ViewerZone(timezone(-timedelta(hours=5)), "UTC-05:00", True)  # only an offset was known
    assert charts.plot_x(ts, fixed).tolist() == ["2026-11-01T00:30:00", "2026-11-01T01:30:00"]
    assert charts.local_time(ts[0], browser) == ts[0].timestamp() * 1000
    assert charts.local_time(ts[0], switched) == "2026-11-01T01:30:00"


@pytest.mark.parametrize("value", ["https://evil.example/x", "a`b", "``x``", "`", "www.evil.example [t](http://e)"])
def test_md_code_fences_any_value(value: str) -> None:
    """A code span whose fence is longer than any backtick run inside: the value stays one literal."""
    out = common.md_code(value)
    fence = out[: len(out) - len(out.lstrip("`"))]
    assert out.endswith(fence) and fence not in out[len(fence):-len(fence)]
    assert out[len(fence):-len(fence)].strip() == value


def _quantiles(start: str, periods: int, step_s: int) -> dict[str, pd.DataFrame]:
    idx = pd.date_range(start, periods=periods, freq=pd.Timedelta(seconds=step_s), tz="UTC")
    values = pd.Series(range(periods), index=idx, dtype=float) / 1000
    return {"p99": pd.DataFrame({"value": values, "lower": values * 0.5, "upper": values * 2})}


def test_percentile_rows_keep_gaps_and_each_point_its_own_time() -> None:
    """The percentile chart (uPlot) gets one row per step: a step Prometheus did not answer is a
    missing value (a gap in the line, not bridged), and each time is converted on its own: the
    instant when the page follows the browser's zone (uPlot draws it there), else the page zone's
    wall-clock time written as UTC, drawn as UTC."""
    q = _quantiles("2026-06-01T00:00", 100, 120)
    q["p99"] = q["p99"].drop(q["p99"].index[40])  # Prometheus returned no sample at one step
    grid = pd.date_range("2026-06-01T00:00", periods=100, freq="120s", tz="UTC")
    t, lines = percentile_chart.latency_columns(q, BERLIN, 120)
    v, hi = lines["v"][0], lines["hi"][0]
    assert percentile_chart.time_scale(BERLIN) == "local"
    assert t.tolist() == [float(ts.value // 1_000_000) for ts in grid]  # instants, ms
    assert pd.isna(v[40]) and not pd.isna(v[39]) and not pd.isna(v[41])
    assert v[41] == pytest.approx(41.0, rel=1e-6) and hi[41] == pytest.approx(82.0, rel=1e-6)
    utc = common.ViewerZone(UTC, "UTC", False, chosen=True)
    assert percentile_chart.time_scale(utc) == "utc"
    assert percentile_chart.latency_columns(q, utc, 120)[0][0] == pd.Timestamp("2026-06-01T00:00").value // 1_000_000
    fixed = common.ViewerZone(timezone(timedelta(hours=5, minutes=30)), "UTC+05:30", True)  # only an offset known
    assert percentile_chart.time_scale(fixed) == "utc"  # wall-clock times on a utc scale
    assert percentile_chart.latency_columns(q, fixed, 120)[0][0] == pd.Timestamp("2026-06-01T05:30").value // 1_000_000


def test_latest_values_line_names_unit_band_and_time() -> None:
    """The line under the percentile chart: each percentile's latest value in ms with the band
    holding it, the time of the latest point in the page's zone, and its own time for a percentile
    whose data stops earlier; nothing when no percentile has a value."""
    q = _quantiles("2026-06-01T00:00", 10, 60)  # p99: 0 .. 9 ms, the band half to twice the value
    p50 = q["p99"] / 2
    p50.loc[p50.index[-3]:, "value"] = np.nan  # p50's last answers missing: its latest point is older
    line = latency_charts.latest_values({"p50": p50, "p99": q["p99"]}, BERLIN)
    assert line == ("Latest at 2026-06-01 02:09 CEST: p50 **3.0 ms** (bucket 1.5–6 ms at 2026-06-01 02:06 CEST)"
                    " · p99 **9.0 ms** (bucket 4.5–18 ms)")
    assert "(instances 4.5–18 ms)" in (latency_charts.latest_values(q, BERLIN, "instances") or "")
    empty = q["p99"].assign(value=np.nan)
    assert latency_charts.latest_values({"p99": empty}, BERLIN) is None


def test_percentile_payload_is_strict_json_with_gaps_as_null_and_event_text_as_plain_strings() -> None:
    """What the uPlot chart receives: one time column shared by every line, a missing step as null
    (JSON has no NaN: a NaN would make the browser refuse the whole payload), values to 7 significant
    digits, and a deploy's text as plain strings for ``textContent`` (never markup)."""
    import json

    from analyzers.model import Deploy

    q = _quantiles("2026-06-01T00:00", 100, 120)
    q["p50"] = q["p99"] / 2
    q["p99"] = q["p99"].drop(q["p99"].index[40])
    hostile = Deploy(deploy_id="d&1", service="checkout", environment="prod", version="<img src=x onerror=alert(1)>",
                     started_at=datetime(2026, 6, 1, 1, 0, tzinfo=UTC))
    utc = common.ViewerZone(UTC, "UTC", False, chosen=True)
    data = percentile_chart.payload(q, utc, x_range=(datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 6, 1, 4, tzinfo=UTC)),
                                    step_s=120, deploys=[hostile])
    text = json.dumps(data, allow_nan=False)  # raises on NaN/Infinity
    # 7 significant digits, written short (the nearest double to the rounded decimal)
    assert json.dumps(percentile_chart._num([122.145712, 0.000123456789, 12345678.9, float("nan"), float("inf")])) \
        == "[122.1457, 0.0001234568, 12345680.0, null, null]"
    assert json.loads(text) == data
    assert data["labels"] == ["p99", "p50"] and len(data["t"]) == 100 and len(data["v"]) == 2
    assert data["v"][0][40] is None and data["v"][1][40] == pytest.approx(20.0, rel=1e-6)  # a gap in p99 only
    assert data["v"][0][41] == pytest.approx(41.0, rel=1e-6) and data["hi"][0][41] == pytest.approx(82.0, rel=1e-6)
    assert data["x"] == {"title": "time (UTC)", "scale": "utc",
                         "range": [pd.Timestamp("2026-06-01T00:00").value / 1e6, pd.Timestamp("2026-06-01T04:00").value / 1e6]}
    assert data["y"]["scale"] == "log" and "ms" in data["y"]["title"]
    assert data["deploys"]["deploy_id"] == ["d&1"] and data["deploys"]["t"] == [pd.Timestamp("2026-06-01T01:00").value / 1e6]
    assert ["deploy", "checkout <img src=x onerror=alert(1)>"] in data["deploys"]["hover"][0]  # as written, for textContent
    # the script writes event text with textContent / the canvas only
    script = (percentile_chart.ASSETS / "percentile_chart.js").read_text()
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script and "textContent" in script


def test_a_range_across_a_dst_change_keeps_every_point_at_its_own_time() -> None:
    """Across New York's fall-back every percentile point keeps its own time (not a first time plus a
    step, which would put every later point an hour off). Plotly turns a heatmap's x0 into wall-clock
    time once and adds dx, so such a heatmap sends its times one by one, a calm one as x0/dx."""
    new_york = common.ViewerZone(ZoneInfo("America/New_York"), "America/New_York", True)
    q = _quantiles("2026-11-01T03:00", 180, 120)  # 23:00 EDT -> 04:00 EST, across 06:00 UTC
    t, _ = percentile_chart.latency_columns(q, new_york, 120)
    assert len(t) == 180 and (np.diff(t) == 120_000).all()  # instants, one step apart
    as_wall = common.ViewerZone(ZoneInfo("America/New_York"), "America/New_York", False)
    wall = pd.Series(percentile_chart.chart_ms(q["p99"].index, as_wall))
    assert wall.diff().min() == -3_600_000 + 120_000  # as wall-clock times the repeated hour goes back
    heat = latency_charts.heatmap_chart(pd.DataFrame({0.1: q["p99"]["value"]}), [0.05, 0.1], new_york, step_s=120)
    assert heat.data[0].x is not None and heat.data[0].x0 is None
    calm = _quantiles("2026-11-02T03:00", 180, 120)["p99"]["value"]
    assert latency_charts.heatmap_chart(pd.DataFrame({0.1: calm}), [0.05, 0.1], new_york, step_s=120).data[0].x0 is not None
