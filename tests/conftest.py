"""Suite-wide hooks (fixtures live in tests/fixtures/, loaded by the root conftest).

``make test`` runs pytest-xdist workers with ``--dist loadfile`` (each file whole on one worker,
so module fixtures start once) and ``--no-loadscope-reorder`` (files are handed out in collection
order; xdist would otherwise hand out the files with the most tests first and a one-test file
last). The files listed in :data:`FIRST` mostly wait on real time (the live demo's canary
steps): they are collected first so that a worker starts them right away while the other workers
run the rest, instead of them being the tail of the run. Serial runs only see the order change.
"""

from __future__ import annotations

import pytest

#: files that spend most of their time waiting (wall time far above CPU time), longest first
FIRST = ("tests/integration/test_demo.py",)


def _rank(item: pytest.Item) -> int:
    path = item.nodeid.split("::", 1)[0]
    return FIRST.index(path) if path in FIRST else len(FIRST)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_rank)  # stable: the rest keep their order
