"""Custom time ranges from a crafted link: a shared URL can name any text as ``lat_from``/``err_to``.

Found by audit10: ``?lat_range=custom&lat_from=0001-01-01T00:00`` stopped the whole Latency page for
a viewer in New York (the UTC instant has no wall-clock time there: Python's datetime overflows), and
``9999-12-31T23:59`` did the same for a viewer in India. A time the page cannot show must leave the
page working, say which parameter was ignored, and put the range actually shown in the URL.
Prometheus is a closed port here (``store_data``): the panels say so, the page itself must not fail.
"""

from __future__ import annotations

from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from tests.app.conftest import APP, StoreData


def _open(page: str, query: dict[str, str], tz: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.context = {"timezone": tz}
    at.query_params.update(query)
    at.switch_page(page).run()
    return at


@pytest.mark.parametrize(("page", "prefix", "tz", "bad"), [
    ("views/latency.py", "lat_", "America/New_York", "0001-01-01T00:00"),  # before year 1 in New York
    ("views/latency.py", "lat_", "Asia/Kolkata", "9999-12-31T23:59"),  # after year 9999 in India
    ("views/errors.py", "err_", "Pacific/Chatham", "9999-12-31T23:59"),
])
def test_a_time_the_page_cannot_show_is_ignored_said_and_replaced_in_the_url(
        store_data: StoreData, page: str, prefix: str, tz: str, bad: str) -> None:
    at = _open(page, {"svc": "checkout", f"{prefix}range": "custom", f"{prefix}from": bad,
                      f"{prefix}to": "not-a-time"}, tz)
    assert not at.exception, at.exception
    warnings = " ".join(w.value for w in at.warning)
    assert f"{prefix}from" in warnings and bad in warnings and f"{prefix}to" in warnings
    for param in (f"{prefix}from", f"{prefix}to"):  # the URL names the range shown: a valid UTC minute
        shown: Any = at.query_params[param]
        value = shown[-1] if isinstance(shown, list) else shown
        assert value not in (bad, "not-a-time") and len(value) == 16 and value[4] == "-" and value[10] == "T", value
    # the page went on past the picker: its panels queried (Prometheus is closed here, and they say so)
    assert any("Prometheus is unreachable" in e.value for e in at.error), [e.value for e in at.error]


def test_a_valid_custom_range_from_a_link_gives_no_warning(store_data: StoreData) -> None:
    at = _open("views/latency.py", {"svc": "checkout", "lat_range": "custom", "lat_from": "2026-11-27T06:15",
                                    "lat_to": "2026-11-27T12:15"}, "America/New_York")
    assert not at.exception, at.exception
    assert not [w.value for w in at.warning if "lat_" in w.value]
    assert at.query_params["lat_from"] in ("2026-11-27T06:15", ["2026-11-27T06:15"])


#: Every URL parameter of docs/dashboard.md's table, each with a value no widget offers.
JUNK = "</script><b>x</b>\u202e%00"
BOGUS = {
    "views/deploys.py": {"range": "custom", "from": JUNK, "to": "0001-01-01T00:00", "env": JUNK, "service": [JUNK, "x"],
                         "verdict": ["maybe", JUNK], "utc": JUNK},
    "views/latency.py": {"svc": JUNK, "hist": JUNK, "pct": ["p0", JUNK], "lat_range": "custom", "lat_from": JUNK,
                         "lat_to": "9999-12-31T23:59", "live": JUNK, "panel": JUNK, "deploy": JUNK, "cmp": JUNK,
                         "cmp_mode": JUNK, "cmp_len": JUNK, "cmp_a": JUNK, "cmp_b": "0001-01-01T00:00", "by": JUNK,
                         "tail": JUNK, "slo_le": JUNK, "slo_obj": "2", "utc": "1"},
    "views/errors.py": {"svc": JUNK, "err_range": JUNK, "err_from": JUNK, "err_to": JUNK, "err_by": JUNK, "bu": JUNK,
                        "deploy": JUNK},
    "views/history.py": {"hist_svc": JUNK, "hist_n": "7"},
    "views/deploy.py": {"deploy": JUNK},
}


@pytest.mark.parametrize("page", list(BOGUS))
def test_a_link_with_values_no_widget_offers_opens_the_page(store_data: StoreData, page: str) -> None:
    """A crafted or outdated link (a renamed option, a truncated paste) opens the page on its defaults
    and never stops it; nothing of the junk is drawn as markup."""
    at = _open(page, BOGUS[page], "America/New_York")
    assert not at.exception, at.exception
    for block in at.get("html"):  # st.html blocks (banners, headers): the junk only ever escaped
        assert "<b>x</b>" not in block.proto.body and "</script>" not in block.proto.body
