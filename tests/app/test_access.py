"""Who sees the dashboard (AppTest): sign-in when ``[auth]`` is configured, open without it;
and every help reference a page prints points at a heading that exists."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from streamlit.testing.v1 import AppTest

from dashboard.components import common
from tests.app.conftest import APP, StoreData

ROOT = Path(__file__).resolve().parents[2]
#: The documented sign-in config: what the README tells operators to copy.
EXAMPLE_SECRETS = ROOT / ".streamlit" / "secrets.example.toml"


def run(page: str, *, auth: bool, user: dict | None = None, **query: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=30)
    at.context = {"timezone": "UTC"}
    if auth:
        at.secrets = tomllib.loads(EXAMPLE_SECRETS.read_text())
    if user is not None:
        at.user = user
    for k, v in query.items():
        at.query_params[k] = v
    at.switch_page(page)
    return at.run()


def test_with_auth_configured_a_signed_out_viewer_sees_only_the_sign_in(store_data: StoreData) -> None:
    for page, query in (("views/deploys.py", {}), ("views/deploy.py", {"deploy": "dep-regression"}),
                        ("views/history.py", {"hist_svc": "checkout"})):
        at = run(page, auth=True, user={"is_logged_in": False}, **query)
        assert not at.exception
        assert [b.proto.label for b in at.button] == ["Sign in"]
        assert any("Sign in to see deploys" in i.value for i in at.info)
        assert not at.dataframe and not at.get("plotly_chart") and not at.metric  # no data at all
        assert "checkout" not in " ".join(h.proto.body for h in at.get("html"))


def test_with_auth_configured_a_signed_in_viewer_sees_the_pages(store_data: StoreData) -> None:
    at = run("views/deploys.py", auth=True, user={"is_logged_in": True, "email": "ana@example.com"})
    assert not at.exception
    assert {m.label: m.value for m in at.metric}["Deploys"] == "4"
    assert any("Signed in as ana@example\\.com" in c.value for c in at.sidebar.caption)
    assert at.button(key="logout").proto.label == "Sign out"


def test_without_auth_the_dashboard_is_open(store_data: StoreData) -> None:
    at = run("views/deploys.py", auth=False)
    assert not at.exception
    assert {m.label: m.value for m in at.metric}["Deploys"] == "4"
    assert not [b for b in at.button if b.key in ("login", "logout")]


def test_every_help_reference_names_a_heading_that_exists() -> None:
    for key, (path, heading) in common.DOCS.items():
        text = (ROOT / path).read_text(encoding="utf-8")
        headings = [m.group(1).strip() for m in re.finditer(r"^#{1,6} (.+)$", text, flags=re.M)]
        assert heading in headings, f"{key}: {path} has no heading {heading!r}"
        ref = common.doc_ref(key)
        anchor = ref.split("#", 1)[1].split(" ", 1)[0]
        assert anchor in {common.heading_anchor(h) for h in headings}, f"{key}: anchor #{anchor} not in {path}"
    # No page cites a section by name outside DOCS (the old texts cited headings that never existed).
    for src in (ROOT / "dashboard").rglob("*.py"):
        for cited in re.findall(r"README, '([^']+)'", src.read_text(encoding="utf-8")):
            raise AssertionError(f"{src.name} cites README section {cited!r} by hand: use common.doc_ref")


def test_heading_anchors_follow_github() -> None:
    assert common.heading_anchor("Point it at your Prometheus and send real deploy events") == \
        "point-it-at-your-prometheus-and-send-real-deploy-events"
    assert common.heading_anchor("Sending deploy events: one section per source") == \
        "sending-deploy-events-one-section-per-source"


def test_deploys_path_is_a_page_not_page_not_found(store_data: StoreData) -> None:
    """``/deploys`` is its own page (Streamlit serves the default page only at ``/``)."""
    at = AppTest.from_file(APP, default_timeout=30)
    at.switch_page("views/deploys.py").run()
    assert not at.exception
    assert at.title[0].value == "Deploys"
    links = [p.proto.page for p in at.sidebar.get("page_link")]
    assert any(link.endswith("deploys") for link in links), links
