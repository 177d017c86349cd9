"""Every URL parameter a dashboard page reads or binds is in docs/dashboard.md's table for that page.

A link pasted in the incident channel is only as good as the parameters people know they can set:
the Errors page bound ``svc``, ``err_range``, ``err_from``/``err_to``, ``err_by`` and ``bu`` to the URL
but had no row in the table at all. Read from the page scripts' source (no Streamlit run needed).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VIEWS = ROOT / "dashboard" / "views"
#: page script -> its URL path (dashboard/app.py's st.Page url_path)
PAGES = {"deploys.py": "/deploys", "deploy.py": "/deploy", "latency.py": "/latency", "errors.py": "/errors",
         "history.py": "/history"}


def url_params(script: Path) -> set[str]:
    """Query parameters the script binds (``bind="query-params"`` widgets, ``url_selectbox``, the
    time-range picker, the service header) or reads (``common.query_value("...")``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(script.read_text())):
        if not isinstance(node, ast.Call):
            continue
        kw = {k.arg: k.value for k in node.keywords if k.arg}
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if isinstance(kw.get("bind"), ast.Constant) and kw["bind"].value == "query-params":
            key = kw.get("key")
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                found.add(key.value)
        if name == "time_range_picker":
            prefix = kw.get("key_prefix")
            p = prefix.value if isinstance(prefix, ast.Constant) else ""
            found |= {f"{p}range", f"{p}from", f"{p}to"}
        if name == "url_selectbox" and isinstance(kw.get("key"), ast.Constant):
            found.add(kw["key"].value)
        if name == "service_page":
            found.add("svc")
        if name == "query_value" and node.args and isinstance(node.args[0], ast.Constant):
            found.add(node.args[0].value)
    return found


def table_row(path: str) -> str:
    text = (ROOT / "docs" / "dashboard.md").read_text()
    section = text.split("## Links and URL parameters", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|") and f"`{path}`" in line.split("|")[1]]
    assert rows, f"docs/dashboard.md has no URL-parameter row for {path}"
    return rows[0]


@pytest.mark.parametrize("script", sorted(PAGES))
def test_every_url_parameter_of_a_page_is_documented(script: str) -> None:
    params = url_params(VIEWS / script)
    assert params, script
    row = table_row(PAGES[script])
    missing = [p for p in sorted(params) if not re.search(rf"`{re.escape(p)}(`|=)", row)]
    assert not missing, f"{PAGES[script]}: {missing} not in docs/dashboard.md's table"
