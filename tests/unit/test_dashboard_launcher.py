"""``python -m dashboard`` imports what the pages import, and warms the first script run's one-time
costs, before Streamlit opens its port.

(That it then serves the app is what every browser test relies on: tests/browser/conftest.py
starts the dashboard with this launcher.)
"""

from __future__ import annotations

import ast
import gc
import json
import logging
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "dashboard"


def _imported_modules() -> set[str]:
    """Every absolute module the dashboard's files import, at the top or inside a function."""
    names: set[str] = set()
    for path in DASHBOARD.rglob("*.py"):
        if path.name in ("__main__.py", "warmup.py"):  # the launcher's own (warmup imports AppTest)
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
    # and the warm-up after it, as the launcher runs them (one process for both: preloading is slow)
    code = ("import gc, json, sys\nfrom dashboard.__main__ import preload\npreload()\n"
            "loaded = sorted(sys.modules)\n"
            "from dashboard import warmup\nfrom streamlit.runtime.caching import cache_data_api\n"
            "took = warmup.warm_up()\n"
            "print(json.dumps({'loaded': loaded, 'took': took, 'frozen': gc.get_freeze_count(),\n"
            "                  'caches': len(cache_data_api._data_caches._function_caches)}))")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.splitlines()[-1])
    missing = sorted(wanted - set(out["loaded"]))
    assert not missing, (f"add to dashboard/__main__.py PRELOAD_LIST (a first visitor would wait for them): "
                         f"{missing}")
    # the warm-up ran the page (no step failed), froze the heap the imports left, and kept no cache
    # entry of its own configuration
    assert out["took"] is not None, res.stderr
    assert out["frozen"] > 50_000
    assert out["caches"] == 0
    # the decorators' "No runtime found" warnings and the warm-up's expected ones are filtered,
    # nothing else is hidden
    assert "No runtime found" not in res.stderr
    assert "missing ScriptRunContext" not in res.stderr
    assert "warm-up step" not in res.stderr


def test_own_modules_are_found_without_a_list() -> None:
    from dashboard.__main__ import own_modules

    found = set(own_modules())
    on_disk = {"dashboard." + p.relative_to(DASHBOARD).with_suffix("").as_posix().replace("/", ".")
               for p in DASHBOARD.rglob("*.py") if p.parent.name != "views" and p.name != "__init__.py"}
    assert on_disk - found == {"dashboard.__main__", "dashboard.warmup", "dashboard.app"}
    assert not any(name.startswith("dashboard.views") for name in found)  # page scripts run, never imported


def test_a_failing_warm_up_step_is_logged_and_the_rest_still_runs(monkeypatch: pytest.MonkeyPatch,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    import streamlit as st

    from dashboard import warmup

    def broken(timeout_s: float = 0) -> None:
        raise OSError("disk full")

    @st.cache_data
    def cached(x: int) -> int:
        return x

    cached(1)  # an entry the warm-up's last step must drop even though the page run failed
    monkeypatch.setattr(warmup, "run_page", broken)
    try:
        with caplog.at_level(logging.WARNING, logger="dashboard.warmup"):
            assert warmup.warm_up() is None
    finally:
        gc.unfreeze()
    assert "page run failed (the dashboard starts anyway): OSError: disk full" in caplog.text
    from streamlit.runtime.caching import cache_data_api

    assert not cache_data_api._data_caches._function_caches


def test_the_page_run_is_bounded() -> None:
    from dashboard import warmup

    with pytest.raises(RuntimeError, match="timed out"):
        warmup.run_page(timeout_s=0.0)


def test_the_launcher_starts_streamlit_when_the_warm_up_raises(monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    from streamlit.web import cli

    import dashboard.__main__ as launcher
    from dashboard import warmup

    started: list[Any] = []

    def boom() -> float:
        raise MemoryError("no room to warm")

    walks: list[int] = []
    walk = launcher.own_modules
    imported: list[tuple[str, ...] | None] = []
    monkeypatch.setattr(launcher, "own_modules", lambda: walks.append(1) or walk())
    monkeypatch.setattr(launcher, "preload", lambda modules=None: imported.append(modules) or 0.0)
    monkeypatch.setattr(warmup, "warm_up", boom)
    monkeypatch.setattr(cli, "main", lambda args, prog_name: started.append(args))
    launcher.main(["--server.port", "1"])
    assert started == [["run", str(launcher.APP), "--server.port", "1"]]
    out = capsys.readouterr().out
    assert "warm-up failed (MemoryError: no room to warm); starting Streamlit anyway" in out
    # the package is walked once per start: the modules imported are the ones the log line counts
    assert walks == [1] and imported == [(*launcher.PRELOAD_LIST, *walk())]
    assert f"dashboard: imported {len(imported[0] or ())} modules in 0.00 s" in out


def test_no_page_needs_streamlit_magic() -> None:
    """Magic is off (.streamlit/config.toml): it rewrites every page script's AST when Streamlit
    compiles it (0.2 s for the Latency page). So no page may rely on it: no bare expression other
    than a call or a docstring, which magic would have written to the page."""
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["runner"]["magicEnabled"] is False
    for path in [DASHBOARD / "app.py", *sorted((DASHBOARD / "views").glob("*.py"))]:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if not isinstance(body, list):
                continue
            for i, stmt in enumerate(body):
                if not isinstance(stmt, ast.Expr) or isinstance(stmt.value, ast.Call | ast.Await | ast.Yield):
                    continue
                docstring = (i == 0 and isinstance(node, ast.Module | ast.FunctionDef | ast.ClassDef)
                             and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str))
                assert docstring, f"{path.name}:{stmt.lineno}: a bare expression magic would have shown"
