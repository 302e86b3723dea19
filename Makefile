# make run    install what is missing, start MariaDB, rtpengine and Kamailio with the kemi routing (Ctrl-C stops)
# make test   every test: unit (fake KSR) and end-to-end (real Kamailio, MariaDB, rtpengine, SIPp)
# make unit   unit tests only (no root, no daemons)
# make check  validate settings.toml and `kamailio -c` the rendered config
# make fuzz   the full malformed-input run: RFC 4475 torture + FUZZ_COUNT mutated messages
# make bench  Python routing vs bench/native.cfg under SIPp load: table, JSON, PNG in bench/results/
# make reload check the edited Python, then the running Kamailio loads it (no restart, calls kept)
PY      := /usr/bin/python3
VENV_PY := .venv/bin/python
PYTEST  := $(VENV_PY) -m pytest
SETTINGS ?=
FUZZ_COUNT ?= 10000

.PHONY: run install test unit e2e check install-test install-bench fuzz bench reload

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

fuzz: install-test
	KEMI_FUZZ_COUNT=$(FUZZ_COUNT) $(PYTEST) -q -s tests/e2e/test_security_malformed.py

# the settings file make check renders: SETTINGS, else $$KEMI_SETTINGS, else settings.toml
CHECK_SETTINGS = $(or $(SETTINGS),$(KEMI_SETTINGS),settings.toml)

check: install
	$(PY) -m kemi.settings check $(CHECK_SETTINGS)
	mkdir -p run && $(PY) -m kemi.settings render $(CHECK_SETTINGS) run/
	cp kamailio.cfg kamailio-common.cfg run/ && cd run && kamailio -c -f kamailio.cfg

# make reload  check the edited Python code, then have the running Kamailio load it
# (kamcmd app_python.reload on the control socket of SETTINGS; see docs/reload.md)
reload:
	$(PY) -m kemi.reload $(CHECK_SETTINGS)
