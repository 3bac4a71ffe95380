# Multi-cloud runbooks on Apache Airflow. `make demo` and `make test` do all set-up on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PYTHONPATH := $(CURDIR)

.PHONY: help install venv node browser test test-fast test-distributed demo up down bench lint lock clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(BIN)/.installed: requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check uv==0.13.8
	$(BIN)/uv pip sync -q --compile-bytecode --python $(BIN)/python requirements.lock
	touch $@

node_modules/.installed: package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

venv: $(BIN)/.installed ## Python virtualenv from requirements.lock
node: node_modules/.installed ## Azurite (exact version from package-lock.json)
install: venv node ## everything the project needs

# The browser tests drive Debian's chromium through Playwright's Python package (no browser download).
browser: ## Debian's chromium for the browser tests (installed with apt when missing)
	@command -v chromium >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
		else sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null; fi; }

# -n auto: one worker per core plus one (tests/conftest.py: the suite waits a third of its time); --dist loadfile
# keeps a file's tests (and its module fixtures, such as the one airflow standalone of tests/test_local_stack.py)
# on one worker; --no-loadscope-reorder keeps the order tests/conftest.py gives (that long module first).
PYTEST_PARALLEL := -n auto --dist loadfile --no-loadscope-reorder

test: install browser ## run the whole test suite against fresh emulators (the browser tests included)
	$(BIN)/python -m pytest $(PYTEST_PARALLEL) -m "not distributed"

# PostgreSQL and Redis: the local servers when they answer, else private ones from Debian's packages.
test-distributed: install ## the CeleryExecutor topology (api-server, scheduler, dag-processor, triggerer, 2 workers) with faults
	@command -v redis-server >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; }
	@command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
		{ apt-get update -qq && apt-get install -y -qq postgresql >/dev/null; }
	$(BIN)/python -m pytest -m distributed tests/test_distributed.py

test-fast: install ## the inner loop: every test but the slow ones (no DAG runs, no airflow standalone)
	$(BIN)/python -m pytest $(PYTEST_PARALLEL) -m "not slow and not distributed"

demo: install ## seed the local three-cloud estate and run the demo runbooks through Airflow (SERVE=1: keep serving)
	$(BIN)/python -m localdev demo $(if $(SERVE),--serve)

up: install ## the local stack without the demo: Airflow (http://localhost:8080) and the emulators serve until Ctrl-C
	$(BIN)/python -m localdev up

down: ## stop what `make up` started
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m localdev down; fi

bench: install ## benchmarks vs their peers, one table in bench/results/summary.md (QUICK=1: smaller sizes)
	$(if $(filter-out 0,$(QUICK)),BENCH_QUICK=1 )$(BIN)/python -m bench

lint: venv ## ruff (ruff.toml) and mypy (mypy.ini: strict on include/ and localdev/)
	$(BIN)/ruff check dags include plugins tests bench localdev
	$(BIN)/mypy

lock: ## re-resolve requirements.txt into requirements.lock
	$(BIN)/uv pip compile -q requirements.txt --python-version 3.11 -o requirements.lock

clean: down ## remove local state (venv, node_modules, data, Airflow home)
	rm -rf $(VENV) node_modules .local data
