"""Every TOML example in README.md and docs/ is a config a user can paste: it loads as it stands
(environment variables it names set), and an SQLite store it names does not depend on the working
directory (``sqlite:////abs`` rather than ``sqlite:///var/...``, which is ``./var/...``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from analyzers.config import load_config
from analyzers.events.store import sqlite_path

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCKS = [(doc, i, m.group(1)) for doc in DOCS
          for i, m in enumerate(re.finditer(r"```toml\n(.*?)```", doc.read_text(), re.S))]


def test_the_docs_have_toml_examples() -> None:
    assert len(BLOCKS) >= 5  # README's config, notify and dashboard blocks, at least


@pytest.mark.parametrize(("doc", "i", "text"), BLOCKS, ids=[f"{d.name}#{i}" for d, i, _ in BLOCKS])
def test_toml_example_loads_as_a_config(doc: Path, i: int, text: str, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in re.findall(r'\w+_env\s*=\s*"(\w+)"', text):
        monkeypatch.setenv(name, "https://hooks.example.invalid/x" if "WEBHOOK" in name or "URL" in name else "x")
    path = tmp_path / "example.toml"
    path.write_text(text)
    cfg = load_config(str(path))
    if "[store]" in text and cfg.store_url.startswith("sqlite:"):
        file = sqlite_path(cfg.store_url)
        assert file is not None and file.startswith("/"), f"{doc.name} block {i}: {cfg.store_url} is relative"
