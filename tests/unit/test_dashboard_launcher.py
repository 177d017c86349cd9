"""``python -m dashboard`` imports what the pages import before Streamlit opens its port.

(That it then serves the app is what every browser test relies on: tests/browser/conftest.py
starts the dashboard with this launcher.)
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "dashboard"


def _imported_modules() -> set[str]:
    """Every absolute module the dashboard's files import, at the top or inside a function."""
    names: set[str] = set()
    for path in DASHBOARD.rglob("*.py"):
        if path.name == "__main__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module != "__future__":
                assert node.module is not None
                names.add(node.module)
                # `from dashboard.components import charts`: a submodule of ours, imported too
                for alias in node.names:
                    sub = ROOT.joinpath(*node.module.split("."), alias.name)
                    if sub.with_suffix(".py").exists() or (sub / "__init__.py").exists():
                        names.add(f"{node.module}.{alias.name}")
    return names


def test_preload_imports_every_module_a_page_imports() -> None:
    wanted = _imported_modules()
    assert {"pandas", "plotly.graph_objects", "dashboard.components.percentile_chart"} <= wanted
    # a fresh interpreter: this test process has imported half of them already
    code = ("import json, sys\nfrom dashboard.__main__ import preload\npreload()\n"
            "print(json.dumps(sorted(sys.modules)))")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr
    loaded = set(json.loads(res.stdout.splitlines()[-1]))
    missing = sorted(wanted - loaded)
    assert not missing, f"add to dashboard/__main__.py PRELOAD (a first visitor would wait for them): {missing}"
    # the decorators' "No runtime found" warnings are filtered, nothing else is hidden
    assert "No runtime found" not in res.stderr
