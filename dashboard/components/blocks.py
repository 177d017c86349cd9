"""Text blocks that stay plain, and where help texts send the reader.

Streamlit's Markdown turns a bare URL into a link even when every character is
backslash-escaped, so text that came (even partly) from a deploy event is shown through
:func:`banner` / :func:`plain_html`: HTML-escaped, never linkified, never markup.
"""

from __future__ import annotations

import html
import re

import streamlit as st

# --------------------------------------------------------------------------- plain text blocks

#: Background, border and text colours of the plain-text banners (Streamlit's alert palette).
_BANNER_STYLES: dict[str, tuple[str, str, str]] = {
    "fail": ("#fdecea", "#d62728", "#7d1a1a"),
    "error": ("#fdecea", "#d62728", "#7d1a1a"),
    "pass": ("#e8f5ea", "#2e9e44", "#17552a"),
    "inconclusive": ("#fff6de", "#e0a100", "#6b4d00"),
    "warning": ("#fff6de", "#e0a100", "#6b4d00"),
    "unverified": ("#f0f2f6", "#8c8c8c", "#31333f"),
    "info": ("#e8f0fe", "#1f6feb", "#0b3a82"),
}


def plain_html(text: object, *, max_len: int = 5000) -> str:
    """Event text as inert HTML: every character escaped, so it can neither become markup nor a
    link (Streamlit's Markdown turns bare URLs into links even when every character is
    backslash-escaped; HTML text nodes are never linkified)."""
    s = str(text if text is not None else "")
    if len(s) > max_len:
        s = s[: max_len - 1] + "…"
    return html.escape(s, quote=True)


def banner(kind: str, body_html: str, *, title: str | None = None, big: bool = False) -> None:
    """A coloured box whose text is plain (``body_html`` built with :func:`plain_html` only).

    ``kind`` is a verdict state or ``warning``/``error``/``info``; ``big`` makes the title the
    page's most prominent line (the verdict)."""
    bg, border, fg = _BANNER_STYLES.get(kind, _BANNER_STYLES["info"])
    size = "2.1rem" if big else "1.05rem"
    head = (f'<div style="font-size:{size};font-weight:700;line-height:1.2;margin-bottom:.35rem" '
            f'data-testid="verdict-banner-title">{html.escape(title)}</div>') if title else ""
    st.html(
        f'<div role="status" data-kind="{html.escape(kind)}" style="background:{bg};border-left:6px solid {border};'
        f'color:{fg};padding:.8rem 1rem;border-radius:.5rem;margin:.25rem 0 .75rem 0">{head}'
        f'<div style="font-size:1rem;line-height:1.45">{body_html}</div></div>'
    )


def plain_warning(text: object) -> None:
    """A warning whose text came (even partly) from deploy events: shown as plain text."""
    banner("warning", plain_html(text))


# --------------------------------------------------------------------------- help references

#: Every place a page sends the reader for help: (file in the repository, heading). A test
#: (tests/app/test_help_links.py) checks that each heading exists and that its anchor matches.
DOCS: dict[str, tuple[str, str]] = {
    "send_events": ("README.md", "Point it at your Prometheus and send real deploy events"),
    "sources": ("docs/sources.md", "Sending deploy events: one section per source"),
    "configuration": ("README.md", "Configuration reference"),
    "dashboard_access": ("README.md", "Dashboard access"),
}


def heading_anchor(heading: str) -> str:
    """The anchor GitHub (and most Markdown renderers) give a heading: lower case, punctuation
    dropped, spaces to hyphens."""
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


def doc_ref(key: str) -> str:
    """``README.md#configuration-reference ("Configuration reference")`` for help texts."""
    path, heading = DOCS[key]
    return f"{path}#{heading_anchor(heading)} (\u201c{heading}\u201d)"
