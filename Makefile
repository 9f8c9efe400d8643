# The bundle's single entry point. `make demo` and `make test` build the environment themselves.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV_VERSION := 0.13.9
REQ_HASH := $(shell sha256sum requirements.txt | cut -c1-16)
STAMP := $(VENV)/.installed-$(REQ_HASH)
export PYTHONPATH := $(CURDIR)/plugins:$(CURDIR)/include
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help venv browser test test-quick test-integration test-e2e lint demo up down bench bench-parse bench-failover bench-detection bench-backup bench-backup-celery clean

help:
	@echo "make demo   - start the sandbox, run the DR story through the REST API, print a summary, stop"
	@echo "make test   - lint + every test tier (quick, integration, e2e)"
	@echo "make up / make down - keep the sandbox and the Airflow UI running / stop it"
	@echo "make test-quick | test-integration | test-e2e | lint | bench (bench-parse, bench-failover, bench-detection, bench-backup, bench-backup-celery)"

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(VENV)/bin/uv pip sync --python $(PY) requirements.txt
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

venv: $(STAMP)

# Debian's chromium for the browser test (tests/e2e/test_status_board.py, Playwright drives it; never
# `playwright install`). Installed once, non-interactively; as root, or through sudo otherwise.
CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
$(CHROMIUM):
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver

browser: $(CHROMIUM)

# Modules run side by side, each whole on one worker (its sandbox with it), longest first
# (tests/conftest.py). The suite is CPU-bound on 2 cores; TEST_WORKERS=3 ran it in 34.7 min but some e2e
# waits timed out under that load (issue 18 open), so CI runs one worker until the CPU cost falls. The budget is 30 minutes on a clean clone;
# the run ends with the 25 slowest tests and the time against the budget (README, Tests).
TEST_WORKERS ?= 1
PARALLEL := -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=25

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test-quick: venv
	$(VENV)/bin/pytest -q -m "not integration and not e2e"

test-integration: venv
	$(VENV)/bin/pytest -q -m integration $(PARALLEL)

test-e2e: venv browser
	$(VENV)/bin/pytest -q -m e2e $(PARALLEL)

# Lint, then all three tiers in one pytest run (one summary line for CI).
test: venv browser
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/pytest -q $(PARALLEL)

demo: venv
	$(PY) -m dr_sandbox demo

up: venv
	$(PY) -m dr_sandbox up

down:
	@if test -x $(PY); then $(PY) -m dr_sandbox down; else echo "nothing to stop"; fi

bench: bench-parse bench-failover bench-detection bench-backup bench-backup-celery

bench-parse: venv
	@$(PY) bench/parse.py

bench-failover: venv
	@$(PY) bench/failover.py --runs 3

bench-detection: venv
	@$(PY) bench/detection.py

bench-backup: venv
	@$(PY) bench/backup.py

clean: down
	rm -rf .sandbox

bench-backup-celery: venv
	@$(PY) bench/backup_celery.py
