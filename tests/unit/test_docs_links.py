"""The repository stands alone: every relative link and #anchor in README.md and docs/*.md resolves
inside it, and nothing points outside via ../ (a reader of a clone has nothing else)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
_CODE = re.compile(r"`[^`\n]*`")
_INLINE = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFDEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$", re.M)
_HTML_ID = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, markup dropped, punctuation except - and _
    removed, spaces to hyphens (duplicates get -1, -2, ... in :func:`anchors`)."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links keep their text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").lower().strip()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _prose(text: str) -> str:
    """The page without fenced code blocks and inline code (links there are not links)."""
    return _CODE.sub("", _FENCE.sub("", text))


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set(_HTML_ID.findall(path.read_text()))
    for _, title in _HEADING.findall(_FENCE.sub("", path.read_text())):
        slug = github_slug(title)
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def links(path: Path) -> list[str]:
    text = _prose(path.read_text())
    return _INLINE.findall(text) + _REFDEF.findall(text)


def test_slugs_follow_github() -> None:
    assert github_slug("Gate a canary (Argo Rollouts, Flagger)") == "gate-a-canary-argo-rollouts-flagger"
    assert github_slug("Generic (any pipeline): `POST /webhooks/deploys`, Standard Webhooks signature") == \
        "generic-any-pipeline-post-webhooksdeploys-standard-webhooks-signature"
    assert github_slug("Re-packaging (issue 14)") == "re-packaging-issue-14"
    assert github_slug("verify_series & friends") == "verify_series--friends"


def test_link_finder_sees_links_but_not_code() -> None:
    page = ROOT / "README.md"
    assert links(page), "README has links: the finder must see them"
    assert _INLINE.findall("[a](b.md#c) and [x [y]](z.md)") == ["b.md#c", "z.md"]
    assert not _INLINE.findall(_prose("`[a](nowhere.md)`\n```\n[b](nowhere.md)\n```\n"))


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    broken = []
    for target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto:, ...
            continue
        file_part, _, anchor = target.partition("#")
        dest = (page.parent / unquote(file_part)).resolve() if file_part else page
        if not dest.is_relative_to(root):
            broken.append(f"{target}: points outside the repository")
        elif not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and unquote(anchor).lower() not in anchors(dest):
            broken.append(f"{target}: no heading with that anchor in {dest.relative_to(root)}")
    return broken


def test_checker_reports_each_kind_of_broken_link(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "b.md").write_text("# Gate endpoints\n\n## Gate endpoints\n")
    page = tmp_path / "docs" / "a.md"
    page.write_text("# Top\n[ok](b.md#gate-endpoints-1) [ok](#top) [x](b.md#nope) [y](c.md) [z](../../out.md)\n"
                    "[web](https://example.com/x.md)\n")
    assert broken_links(page, tmp_path) == [
        "b.md#nope: no heading with that anchor in docs/b.md",
        "c.md: no such file",
        "../../out.md: points outside the repository",
    ]


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    broken = broken_links(page)
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_nothing_points_outside_the_repository(page: Path) -> None:
    """Also in code spans and plain text: `../shared/...` is a dead end in a clone."""
    text = page.read_text()
    outside = sorted(set(re.findall(r"(?:\.\./)+[\w./-]+", text)))
    escaping = [o for o in outside if not (page.parent / o).resolve().is_relative_to(ROOT)]
    assert not escaping, f"{page.relative_to(ROOT)} refers outside the repository: {escaping}"
    assert "shared/docs" not in text, "the team's briefs are not part of the repository"
