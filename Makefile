# The product's interface: `make run` and `make test` on a fresh machine (see README).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test unit e2e chaos soak bench broker erp stop worker setup jars browser promtool clean lint schemas

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

# Prometheus' promtool for the metrics lint test (Debian package; the test skips with the reason if absent).
promtool:
	-bash deploy/install-promtool.sh

# docs/schemas/<topic>.json from the pydantic models (a unit test fails when they are stale).
schemas: setup
	$(PY) -m app.cli schemas

run: setup jars
	$(PY) -m app.cli run

# The whole suite: unit, property, end-to-end on a real broker, and the short chaos runs (the long
# chaos run is `make chaos`, the sustained-load run `make soak`).
test: setup jars browser promtool
	$(PY) -m pytest -q tests/unit tests/property tests/e2e tests/chaos -m "not chaos_long and not chaos_soak"

unit: setup
	$(PY) -m pytest -q tests/unit tests/property

e2e: setup jars browser promtool
	$(PY) -m pytest -q tests/e2e

chaos: setup jars
	$(PY) -m pytest -q tests/chaos -m "not chaos_soak"
	$(PY) -m tests.chaos.report 10

# Sustained load (SOAK_RATE records/s for SOAK_DURATION s, default 400 and 60), both workers restarted
# half-way, then the time until the outputs equal the oracle (pass: SOAK_CONVERGE_WITHIN, default 60 s).
# Workers run with static group membership (SOAK_STATIC_MEMBERSHIP=0: without).
# Progress lines are printed live (-s); figures in .run/chaos/results/soak-*.json.
soak: setup jars
	$(PY) -m pytest -q -s tests/chaos/test_chaos.py -m chaos_soak

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
