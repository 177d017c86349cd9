"""Event text and ids an attacker controls, in a real browser: no link planted, the right deploy opened.

Streamlit's Markdown turns a bare URL into a live link even when every character is
backslash-escaped, so the deploy page shows event fields as plain text; and every link to a
deploy URL-encodes its id, so an id holding ``&``, ``#``, ``?`` or ``/`` opens that deploy and
not the one a truncated id names.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from analyzers.events.store import open_store
from analyzers.model import Deploy
from dashboard.components.common import deploy_link
from tests.browser.conftest import Dashboard
from tests.browser.test_dashboard_browser import assert_clean_log, body_text, idle, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.integration]

HOSTILE_IDS = ("dep&deploy=decoy#frag", "dep#decoy", "dep/../decoy?x=1", "dep%26decoy", "dep decoy+1")


@pytest.fixture(scope="module")
def hostile(dashboard: Dashboard) -> dict[str, Deploy]:
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    deploys = {
        "decoy": Deploy(deploy_id="decoy", service="checkout", environment="production", version="DECOY-VERSION",
                        started_at=at - timedelta(minutes=5)),
        "dep": Deploy(deploy_id="dep", service="checkout", environment="production", version="TRUNCATED-ID",
                      started_at=at - timedelta(minutes=4)),
    }
    for i, deploy_id in enumerate(HOSTILE_IDS):
        deploys[deploy_id] = Deploy(
            deploy_id=deploy_id, service="checkout", environment="production",
            version=f"https://evil.example/v{i}", author="www.evil.example",
            description="Release notes: https://evil.example/phish and mail x@evil.example",
            started_at=at + timedelta(minutes=i),
        )
    store = open_store(dashboard.store_url)
    try:
        for n, d in enumerate(deploys.values()):
            store.record_event("generic", f"hostile-{n}", d.to_dict(), d)
    finally:
        store.close()
    return deploys


def evil_links(driver: Any) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('a[href]'))"
        ".filter(a => a.hostname.includes('evil.example') || a.protocol === 'mailto:').map(a => a.href)")


@pytest.mark.parametrize("deploy_id", HOSTILE_IDS)
def test_links_open_the_deploy_whose_id_they_carry(dashboard: Dashboard, browser: Any, hostile: dict[str, Deploy],
                                                   deploy_id: str) -> None:
    deploy = hostile[deploy_id]
    browser.get(f"{dashboard.url}/{deploy_link(deploy_id)}")  # the link the Deploys and history grids hold
    wait_for(lambda: idle(browser) and "Deploy: checkout" in body_text(browser), "the deploy page")
    text = body_text(browser)
    assert f"Deploy: checkout {deploy.version}" in text
    assert "DECOY-VERSION" not in text and "TRUNCATED-ID" not in text
    assert parse_qs(urlparse(browser.current_url).query)["deploy"] == [deploy_id]
    # URLs in the version, author and description are shown, and none of them is a link.
    assert deploy.version in text and "www.evil.example" in text and "https://evil.example/phish" in text
    assert evil_links(browser) == []
    assert_clean_log(dashboard)


def test_a_crafted_latency_link_plants_no_link(dashboard: Dashboard, browser: Any) -> None:
    """Values from the URL (a link someone was sent) are shown inert, never as links: an unknown
    service falls back to a known one, a typed breakdown label is refused with its name as text."""
    browser.get(f"{dashboard.url}/latency?svc=https://evil.example/x&lat_range=1h&by=www.evil.example"
                "&panel=Who+is+slow%3F")  # the breakdown's tab, opened by the link
    wait_for(lambda: idle(browser) and "Who is slow?" in body_text(browser), "the latency page")
    wait_for(lambda: "cannot break down by" in body_text(browser), "the breakdown's refusal")
    assert "www.evil.example" in body_text(browser)
    assert evil_links(browser) == []
