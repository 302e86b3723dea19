# make run    install what is missing, start MariaDB + Kamailio with the kemi routing (Ctrl-C stops)
# make test   every test: unit (fake KSR) and end-to-end (real Kamailio, MariaDB, SIPp)
# make unit   unit tests only (no root, no daemons)
# make check  validate settings.toml and `kamailio -c` the rendered config
# make bench  Python routing vs bench/native.cfg under SIPp load: table, JSON, PNG in bench/results/
PY      := /usr/bin/python3
VENV_PY := .venv/bin/python
PYTEST  := $(VENV_PY) -m pytest
SETTINGS ?=

.PHONY: run install test unit e2e check install-test install-bench bench

run: install
	$(PY) -m kemi.stack $(SETTINGS)

install:
	scripts/install.sh

install-test:
	scripts/install.sh --test

install-bench:
	scripts/install.sh --bench

bench: install-bench
	$(PY) -m bench $(BENCH_ARGS)

test: install-test
	$(PYTEST) -q tests

unit: install-test
	$(PYTEST) -q tests/unit

e2e: install-test
	$(PYTEST) -q tests/e2e

check: install
	$(PY) -m kemi.settings check $(SETTINGS)
	mkdir -p run
	$(PY) -m kemi.settings render $(or $(SETTINGS),settings.toml) run/
	cp kamailio.cfg kamailio-common.cfg run/ && kamailio -c -f run/kamailio.cfg
