# The product's interface: `make run` and `make test` on a fresh machine (see README).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test unit e2e chaos bench broker erp stop worker setup jars browser clean lint

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,erp]'
	@touch $(STAMP)

setup: $(STAMP)

jars: setup
	$(PY) -m app.broker jars

# Headless Chromium for the dashboard test (Debian package; the test skips with the reason if absent).
browser:
	-bash deploy/install-chromium.sh

run: setup jars
	$(PY) -m app.cli run

# The whole suite: unit, property, end-to-end on a real broker, and the short chaos runs (the long
# chaos run is `make chaos`).
test: setup jars browser
	$(PY) -m pytest -q tests/unit tests/property tests/e2e tests/chaos -m "not chaos_long"

unit: setup
	$(PY) -m pytest -q tests/unit tests/property

e2e: setup jars browser
	$(PY) -m pytest -q tests/e2e

chaos: setup jars
	$(PY) -m pytest -q tests/chaos
	$(PY) -m tests.chaos.report 10

bench: setup jars
	$(PY) -m bench.run

broker: setup jars
	$(PY) -m app.broker start

# The local Tryton ERP in the background (SPEC §9); prints its URL (ERP_URL) and database.
erp: setup
	$(PY) -m app.erp start

stop:
	-$(PY) -m app.broker stop
	-$(PY) -m app.erp stop

worker: setup
	$(PY) -m app.cli worker

lint: setup
	$(VENV)/bin/lint-imports

clean:
	rm -rf .run
