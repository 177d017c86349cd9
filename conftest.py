"""Root conftest: shared fixtures live in tests/fixtures/ (one module per service)."""

import os

pytest_plugins = [
    name
    for name, path in (
        ("tests.fixtures.prom", "tests/fixtures/prom.py"),
        ("tests.fixtures.receiver", "tests/fixtures/receiver.py"),
        ("tests.fixtures.postgres", "tests/fixtures/postgres.py"),
        ("tests.fixtures.sink", "tests/fixtures/sink.py"),
        ("tests.fixtures.victoria", "tests/fixtures/victoria.py"),
    )
    if os.path.exists(os.path.join(os.path.dirname(__file__), path))
]
