# Two commands: `make demo` (browse real verdicts on demo data) and `make test` (the whole suite).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROMETHEUS_PORT ?= 9090
RECEIVER_PORT ?= 8000
DASHBOARD_PORT ?= 8501
PYTEST_ARGS ?=
# pytest-xdist processes for `make test` (each test file runs whole on one of them, so module fixtures
# start once); PYTEST_WORKERS=0 runs the suite serially in one process.
PYTEST_WORKERS ?= 2

.PHONY: demo test install install-bench sysdeps lint bench import-map pins clean

# Runtime and test pins, then this checkout as an editable package (the `deploy-verify` command,
# `import analyzers` from any directory). --no-deps: the pins above are the whole environment.
$(VENV)/.installed: requirements.txt requirements-test.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt -r requirements-test.txt
	$(VENV)/bin/pip install --quiet --no-deps -e .
	touch $@

install: $(VENV)/.installed

$(VENV)/.installed-bench: $(VENV)/.installed requirements-bench.txt
	$(VENV)/bin/pip install --quiet -r requirements-bench.txt
	touch $@

install-bench: $(VENV)/.installed-bench

sysdeps:
	scripts/install-sysdeps.sh prometheus chromium postgresql victoria-metrics

demo: install
	scripts/install-sysdeps.sh prometheus
	$(VENV)/bin/deploy-verify demo --prometheus-port $(PROMETHEUS_PORT) --receiver-port $(RECEIVER_PORT) --dashboard-port $(DASHBOARD_PORT)

test: install sysdeps
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check analyzers dashboard tests benchmarks scripts conftest.py
	$(PY) -m mypy analyzers dashboard
	$(VENV)/bin/hadolint Dockerfile

bench: install-bench sysdeps
	$(PY) -m benchmarks.run_all

# Regenerate the import map section of docs/internals.md (tests/unit/test_import_map.py checks it).
import-map: install
	$(PY) scripts/import_map.py --write

# Re-pin requirements.txt and requirements-test.txt from the venv after changing pyproject.toml.
pins: install
	$(PY) scripts/pin_closure.py --write

clean:
	rm -rf .demo .pytest_cache
