# Two commands: `make demo` (browse real verdicts on demo data) and `make test` (the whole suite).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROMETHEUS_PORT ?= 9090
RECEIVER_PORT ?= 8000
DASHBOARD_PORT ?= 8501
PYTEST_ARGS ?=

.PHONY: demo test install sysdeps lint bench clean

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt
	touch $@

install: $(VENV)/.installed

sysdeps:
	scripts/install-sysdeps.sh prometheus chromium postgresql victoria-metrics

demo: install
	scripts/install-sysdeps.sh prometheus
	$(PY) -m analyzers demo --prometheus-port $(PROMETHEUS_PORT) --receiver-port $(RECEIVER_PORT) --dashboard-port $(DASHBOARD_PORT)

test: install sysdeps
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check analyzers dashboard tests benchmarks
	$(VENV)/bin/hadolint Dockerfile

bench: install sysdeps
	$(PY) benchmarks/run_all.py

clean:
	rm -rf .demo .pytest_cache
