"""Escaping per output format: event text (version, author, deploy id, description, reasons that
quote them) is data, and no output may read it as markup.

Every deploy-event field comes from a CI system and may be hostile. Each output has its own
metacharacters, so each has its own function:

* :func:`md_text` for GitHub-flavoured Markdown text and table cells: backslash-escapes the
  punctuation that opens inline syntax (``[ ] * _ ` ~ | # \\``: without an unescaped ``[`` no
  link or image can start), writes ``<`` and ``&`` as entities where they could open a tag, an
  autolink or an entity, escapes a block marker at the start (``>``, ``-``, ``+``, ``1.``), and
  breaks GitHub's bare-link autolinks (``http://``, ``www.``, e-mail addresses; the last with an
  invisible word joiner after ``@``). The rest stays readable in the raw text;
* :func:`md_code` for a Markdown code span: a backtick fence longer than any run inside;
* :func:`slack_text` for Slack mrkdwn (also the fallback ``text``): ``& < >`` become
  ``&amp; &lt; &gt;`` as Slack's formatting rules ask, so ``<!channel>``, ``<@U123>`` and
  ``<url|text>`` cannot be written by an event;
* HTML uses :func:`html.escape` directly.

All of them first pass :func:`plain`: control characters and newlines become spaces, Unicode
bidirectional overrides (which can make text read in a different order than it is stored) are
shown as ``[U+202E]``, and very long values are cut with an ellipsis.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["md_code", "md_text", "plain", "slack_text", "MAX_FIELD"]

#: Longest event value shown in a message (a PR comment holds 65,536 characters, a Slack
#: section 3,000): longer values are cut with "…".
MAX_FIELD = 300

_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\t\n\r\u2028\u2029]")
_MD_PUNCT = re.compile(r"([\\`*_\[\]|~#])")
_MD_TAG_OPEN = re.compile(r"<(?=[A-Za-z/!?])")  # CommonMark raw HTML and autolinks start so
_MD_ENTITY = re.compile(r"&(?=[#A-Za-z])")
_MD_BLOCK = re.compile(r"^(\s*)(>|[-+=]|\d+[.)])")
_AUTOLINK_SCHEME = re.compile(r"(?<=[A-Za-z0-9]):(?=//)")
_WWW = re.compile(r"(?i)\b(www)\.")


def plain(text: Any, limit: int | None = MAX_FIELD) -> str:
    """One line of plain text: controls and newlines as spaces, bidi controls made visible, cut."""
    s = "" if text is None else str(text)
    s = _BIDI.sub(lambda m: f"[U+{ord(m.group(0)):04X}]", s)
    s = _CONTROL.sub(" ", s)
    if limit is not None and len(s) > limit:
        s = s[: limit - 1] + "…"
    return s


def md_text(text: Any, limit: int | None = MAX_FIELD, *, line_start: bool = False) -> str:
    """Text for a GitHub-flavoured Markdown paragraph or table cell, shown exactly as written.

    ``line_start``: the text opens a line (a paragraph), so a block marker there is escaped too.
    """
    s = plain(text, limit)
    s = _MD_ENTITY.sub("&amp;", s)
    s = _MD_TAG_OPEN.sub("&lt;", s)
    s = _MD_PUNCT.sub(r"\\\1", s)
    if line_start:
        s = _MD_BLOCK.sub(lambda m: m.group(1) + ("&gt;" if m.group(2) == ">" else m.group(2)[:-1] + "\\" + m.group(2)[-1]),
                          s)
    s = _AUTOLINK_SCHEME.sub(r"\\:", s)
    s = _WWW.sub(r"\1\\.", s)
    return s.replace("@", "@\u2060")


def md_code(text: Any, limit: int | None = MAX_FIELD, *, in_table: bool = False) -> str:
    """A Markdown code span around ``text``, whatever backticks it holds.

    The fence is one backtick longer than the longest run inside, with a space of padding
    (CommonMark strips one on each side). ``in_table``: a ``|`` is escaped, since GitHub splits
    table cells before it reads code spans (elsewhere a backslash would show literally).
    """
    s = plain(text, limit)
    if in_table:
        s = s.replace("|", "\\|")
    runs = [len(r) for r in re.findall(r"`+", s)]
    fence = "`" * (max(runs, default=0) + 1)
    return f"{fence} {s} {fence}"


def slack_text(text: Any, limit: int | None = MAX_FIELD) -> str:
    """Text for Slack mrkdwn (and the message's fallback ``text``): ``& < >`` escaped."""
    return plain(text, limit).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
