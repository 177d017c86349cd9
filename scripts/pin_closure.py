"""Write the exact pins of requirements.txt / requirements-test.txt from the installed venv.

    .venv/bin/python scripts/pin_closure.py            # print both files' pins
    .venv/bin/python scripts/pin_closure.py --write    # rewrite requirements.txt and requirements-test.txt

The roots are the distributions named in pyproject.toml: ``[project] dependencies`` for the
runtime file, ``[project.optional-dependencies] test`` for the test file. Each root is followed
through its installed metadata (``Requires-Dist``, with the extras asked for and the markers of
this platform) and every distribution reached is pinned at its installed version. The test file
starts with ``-r requirements.txt`` and lists only what the runtime closure lacks, so the Docker
image (runtime file only) never gets a test tool.
"""

from __future__ import annotations

import argparse
import re
import tomllib
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
RUNTIME_HEAD = """\
# Runtime pins: what analyzers/ and dashboard/ import, and everything those packages need.
# The Docker image installs only this file. Test tools: requirements-test.txt; bounds: pyproject.toml.
# Generated from the venv by scripts/pin_closure.py --write (docs/packaging.md).
"""
TEST_HEAD = """\
# Test and lint tools (what tests/ imports or runs), pinned; the runtime pins come first.
# Generated from the venv by scripts/pin_closure.py --write (docs/packaging.md).
-r requirements.txt
"""


def _key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(roots: list[Requirement]) -> dict[str, str]:
    """Installed name -> version for every distribution ``roots`` need on this platform."""
    found: dict[str, tuple[str, str, set[str]]] = {}
    todo = [(r.name, set(r.extras)) for r in roots if r.marker is None or r.marker.evaluate()]
    while todo:
        name, extras = todo.pop()
        try:
            dist = distribution(name)
        except PackageNotFoundError as exc:
            raise SystemExit(f"{name} is not installed in this venv: install it, then run this again") from exc
        key = _key(dist.metadata["Name"])
        if key in found and extras <= found[key][2]:
            continue
        extras = extras | (found[key][2] if key in found else set())
        found[key] = (dist.metadata["Name"], dist.version, extras)
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None:
                wanted = True
            elif "extra" in str(req.marker):
                wanted = any(req.marker.evaluate({"extra": e}) for e in extras)
            else:
                wanted = req.marker.evaluate({"extra": ""})
            if wanted:
                todo.append((req.name, set(req.extras)))
    return {name: version for name, version, _ in found.values()}


def pins() -> tuple[list[str], list[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = closure([Requirement(r) for r in project["dependencies"]])
    test = closure([Requirement(r) for r in project["optional-dependencies"]["test"]])
    have = {_key(n) for n in runtime}
    runtime_lines = sorted((f"{n}=={v}" for n, v in runtime.items()), key=str.lower)
    test_lines = sorted((f"{n}=={v}" for n, v in test.items() if _key(n) not in have), key=str.lower)
    return runtime_lines, test_lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="rewrite the two requirements files")
    a = ap.parse_args()
    runtime, test = pins()
    if a.write:
        (ROOT / "requirements.txt").write_text(RUNTIME_HEAD + "\n".join(runtime) + "\n")
        (ROOT / "requirements-test.txt").write_text(TEST_HEAD + "\n".join(test) + "\n")
    else:
        print("# requirements.txt\n" + "\n".join(runtime) + "\n\n# requirements-test.txt\n" + "\n".join(test))


if __name__ == "__main__":
    main()
