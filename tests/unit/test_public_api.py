"""analyzers' curated public API (docs/api.md): every name imports, is the object its module
defines, and `import analyzers` stays cheap."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import analyzers

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", sorted(analyzers._EXPORTS))
def test_each_public_name_imports(name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from analyzers import {name}", namespace)
    assert namespace[name] is getattr(importlib.import_module(analyzers._EXPORTS[name]), name)
    assert name in analyzers.__all__ and name in dir(analyzers)


def test_all_lists_exactly_the_exports() -> None:
    assert sorted(analyzers.__all__) == sorted([*analyzers._EXPORTS, "__version__"])


def test_unknown_name_says_so() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        analyzers.nope  # noqa: B018


def test_import_is_cheap() -> None:
    code = "import sys, analyzers; print(sorted(m for m in ('numpy', 'pandas', 'scipy', 'requests') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_documented_in_docs_api() -> None:
    text = (ROOT / "docs" / "api.md").read_text()
    missing = [n for n in analyzers.__all__ if f"`{n}" not in text]
    assert not missing, f"docs/api.md does not describe {missing}"


def test_errors_share_one_base() -> None:
    errors = [getattr(analyzers, n) for n in analyzers.__all__ if n.endswith(("Error", "Unreachable", "Unavailable", "Data"))]
    assert len(errors) == 10 and all(issubclass(e, analyzers.AnalyzerError) for e in errors)
