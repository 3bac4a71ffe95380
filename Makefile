# Multi-cloud runbooks on Apache Airflow. `make demo` and `make test` do all set-up on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PYTHONPATH := $(CURDIR)

.PHONY: help install venv node test demo up down bench lint lock clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

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

test: install ## run the whole test suite against fresh emulators
	$(BIN)/python -m pytest

demo: install ## seed the local three-cloud estate and run the inventory runbook through Airflow
	$(BIN)/python -m localdev demo

up: install ## like demo, then keep Airflow (http://localhost:8080) and the emulators serving until Ctrl-C
	$(BIN)/python -m localdev up

down: ## stop what `make up` started
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m localdev down; fi

bench: install ## benchmarks under bench/ (figures printed and written to bench/results/)
	$(BIN)/python -m bench

lint: venv ## ruff
	$(BIN)/ruff check dags include plugins tests bench

lock: ## re-resolve requirements.txt into requirements.lock
	$(BIN)/uv pip compile -q requirements.txt --python-version 3.11 -o requirements.lock

clean: down ## remove local state (venv, node_modules, data, Airflow home)
	rm -rf $(VENV) node_modules .local data
