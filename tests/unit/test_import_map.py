"""The import map (scripts/import_map.py): no cycle, no upward arrow, the dashboard on public
modules only, and docs/internals.md's generated section current."""

from __future__ import annotations

from pathlib import Path

from scripts.import_map import (
    Module,
    current_section,
    cycles,
    dashboard_private,
    layer_of,
    oversized,
    render,
    scan,
    upward,
)

MODULES = scan()


def _graph(edges: dict[str, dict[str, set[str]]]) -> dict[str, Module]:
    names = set(edges) | {t for e in edges.values() for t in e}
    return {n: Module(n, Path(n), 1, dict(edges.get(n, {}))) for n in names}


def test_scan_counts_lazy_and_type_checking_imports() -> None:
    # analyzers/__init__ imports everything lazily (importlib) and names it under TYPE_CHECKING only
    assert {"analyzers.stats", "analyzers.verify.deploy", "analyzers.delivery.reports"} <= set(MODULES["analyzers"].imports)
    # cli imports the demo runner inside a function
    assert "analyzers.demo.run" in MODULES["analyzers.cli"].imports


def test_no_cycle_between_modules() -> None:
    assert cycles(MODULES) == []


def test_cycle_finder_finds_cycles() -> None:
    g = _graph({"a": {"b": set()}, "b": {"c": set()}, "c": {"a": set()}, "d": {"a": set()}})
    assert cycles(g) == [["a", "b", "c"]]


def test_no_import_from_a_lower_layer_to_a_higher_one() -> None:
    assert upward(MODULES) == []


def test_upward_finder_finds_upward_arrows() -> None:
    g = _graph({"analyzers.stats.x": {"analyzers.demo.run": set()}, "analyzers.cli": {"analyzers.stats.x": set()}})
    assert upward(g) == ["analyzers.stats.x (layer 2) -> analyzers.demo.run (layer 7)"]
    assert layer_of("analyzers.demo.run") == 7 and layer_of("dashboard.views.latency") == 10


def test_dashboard_imports_only_public_analyzers_modules() -> None:
    assert dashboard_private(MODULES) == []
    g = _graph({"dashboard.views.x": {"analyzers.server.receiver": set(), "analyzers.stats._grid": set(),
                                      "analyzers.text": {"_fmt", "format_p"}}})
    assert dashboard_private(g) == [
        "dashboard.views.x -> analyzers.server.receiver (layer 6: server)",
        "dashboard.views.x -> analyzers.stats._grid (private module)",
        "dashboard.views.x -> analyzers.text._fmt (private name)",
    ]


def test_internals_import_map_is_current() -> None:
    assert current_section() == render(MODULES), "docs/internals.md import map is stale: run make import-map"


def test_runtime_modules_stay_under_500_lines() -> None:
    """Modules that fit in a head: analyzers/ (the demo tooling aside) and dashboard/."""
    assert oversized(MODULES) == [], "split by responsibility: " + ", ".join(f"{m} ({n} lines)" for m, n in oversized(MODULES))


def test_size_rule_sees_big_modules() -> None:
    g = {"analyzers.stats.big": Module("analyzers.stats.big", Path("x"), 500),
         "analyzers.demo.big": Module("analyzers.demo.big", Path("y"), 900),
         "dashboard.views.ok": Module("dashboard.views.ok", Path("z"), 499)}
    assert oversized(g) == [("analyzers.stats.big", 500)]
