# make run    install what is missing, start MariaDB, rtpengine and Kamailio with the kemi routing (Ctrl-C stops)
# make deps   install the Debian packages kemi runs on (scripts/install.sh), only what is missing
# make install    kemi into an existing Kamailio (docs/install.md): KAMAILIO_DIR (default
#                 $(PREFIX)/etc/kamailio), PREFIX, SETTINGS, DB_URL, DB_RO_URL, KAMAILIO, KAMAILIO_MODULES
# make uninstall  puts back what make install replaced, removes the rest (KAMAILIO_DIR, PREFIX)
# make test   every test: unit (fake KSR) and end-to-end (real Kamailio, MariaDB, rtpengine, SIPp)
# make test-debian13  make test of this checkout on a fresh Debian 13 root (Kamailio 6.0): a
#             debootstrap root from this machine's apt mirror, cached in /var/cache/kemi (scripts/debroot.py)
# make deb    the Debian package dist/kemi_<version>_all.deb (debhelper, dh-python; lintian-checked): docs/install.md
# make image  DEBIAN=12|13: the kemi image with podman, base image from a debootstrap root (scripts/image.py)
# make unit   unit tests only (no root, no daemons)
# make lint   ruff and mypy (configured in pyproject.toml) over kemi/, kemi_tools/, bench/, scripts/; make test runs it first
# make check  validate settings.toml and `kamailio -c` the rendered config
# make fuzz   the full malformed-input run: RFC 4475 torture + FUZZ_COUNT mutated messages
# make bench  Python routing vs bench/native.cfg under SIPp load: table, JSON, PNG in bench/results/
# make bench-debian13  the same on the Debian 13 root (Kamailio 6.0): bench/results-trixie/
# make bench-instructions  instructions per SIP message, native vs Python, counted by valgrind
#             (noise-free; ~30 min): bench/results/instructions.{json,md}; BENCH_ARGS=--scenarios call
# make bench-instructions-debian13  the same on the Debian 13 root: bench/results-trixie/
# make bench-records  what call records and HEP capture cost: Kamailio CPU per call, A/B
#             (BENCH_ARGS=--media: calls anchored by rtpengine), bench/results/records-cost*.json
# make bench-topology  topology hiding's cost per call, hiding off vs on (bench/topology.py)
# make bench-overload  1.5x and 3x make bench's clean rate, Python and native, refusal on and off
#             (bench/overload.py, ~20 min): bench/results/overload.{json,md}, docs/reliability.md
# make sipp   SCENARIO=register|call|options TARGET=HOST:PORT USERS=u:pw,u:pw [RATE COUNT DOMAIN KIT_ARGS]:
#             the SIPp kit against any proxy (docs/sipp-kit.md); non-zero exit on any failed call
# make reload check the edited Python, then the running Kamailio loads it (no restart, calls kept)
# make compile  the routing's hot path compiled with mypyc into build/compiled/ (settings
#             python.compiled = true runs it; kemi/compiled.py, docs/benchmark.md "Compiled routing")
# make cluster  a demo cluster in network namespaces: 3 Kamailio nodes (DMQ), Galera, keepalived,
#               2 rtpengines (docs/cluster.md); Ctrl-C stops it
PY      := /usr/bin/python3
VENV_PY := .venv/bin/python
PYTEST  := $(VENV_PY) -m pytest
SETTINGS ?=
FUZZ_COUNT ?= 10000
# make install / uninstall (docs/install.md)
PREFIX ?=
KAMAILIO_DIR ?= $(PREFIX)/etc/kamailio
DB_URL ?=
DB_RO_URL ?=
KAMAILIO ?= kamailio
KAMAILIO_MODULES ?=

.PHONY: compile run deps install uninstall lint deb test test-debian13 bench-debian13 bench-instructions bench-instructions-debian13 image unit e2e check install-test install-bench fuzz bench sipp reload cluster bench-records bench-topology soak bench-overload

run: deps
	$(PY) -m kemi_tools.stack $(SETTINGS)

deps:
	scripts/install.sh

install:
	$(PY) -m kemi_tools.stack.install install --dir "$(KAMAILIO_DIR)" --settings "$(SETTINGS)" \
		--db-url "$(DB_URL)" --db-ro-url "$(DB_RO_URL)" --kamailio "$(KAMAILIO)" --modules "$(KAMAILIO_MODULES)"

uninstall:
	$(PY) -m kemi_tools.stack.install uninstall --dir "$(KAMAILIO_DIR)"

deb:
	scripts/install.sh --deb
	$(PY) scripts/deb.py build

install-test:
	scripts/install.sh --test

install-bench:
	scripts/install.sh --bench

# gcc and python3-dev from Debian, mypyc (ships with mypy) in .venv, built for Debian's python3
compile:
	scripts/install.sh --compile
	$(VENV_PY) -m kemi_tools.compile

cluster:
	scripts/install.sh --cluster
	$(PY) -m kemi_tools.cluster $(CLUSTER_ARGS)

bench: install-bench
	$(PY) -m bench $(BENCH_ARGS)

test: install-test lint
	$(PYTEST) -q --durations=25 tests

# the paths and rules are in pyproject.toml ([tool.ruff], [tool.mypy]); both run, either failing fails it
lint: install-test
	$(VENV_PY) -m ruff check; ruff=$$?; $(VENV_PY) -m mypy && exit $$ruff

bench-topology: install-bench
	$(PY) -m bench.topology $(BENCH_ARGS)

test-debian13:
	$(PY) scripts/debroot.py test trixie

bench-debian13:
	KEMI_BENCH_ARGS="$(BENCH_ARGS)" $(PY) scripts/debroot.py bench trixie

# BENCH_ARGS="--configs native,python,python-compiled": the compiled copy is built first
bench-instructions: install-bench
	$(if $(findstring python-compiled,$(BENCH_ARGS)),$(MAKE) compile)
	$(PY) -m bench.instructions $(BENCH_ARGS)

bench-instructions-debian13:
	KEMI_BENCH_ARGS="$(BENCH_ARGS)" KEMI_BENCH_TARGET=bench-instructions $(PY) scripts/debroot.py bench trixie

# issue 21: a long run (about a million requests, registrar then SBC) with memory watched, not
# part of make test (tests/e2e/test_soak.py runs a short one); docs/reliability.md
soak: install-bench
	$(PY) -m bench.soak $(SOAK_ARGS)

# issue 21: 1.5x and 3x make bench's clean rate for 60 s, registrations and calls, Python and
# native.cfg, the early refusal on and off (~20 min; test_overload_live.py runs a short one)
bench-overload: install-bench
	$(PY) -m bench.overload $(BENCH_ARGS)

bench-records: install-bench
	$(PY) -m bench.records_cost $(BENCH_ARGS)

DEBIAN ?= 12
image:
	scripts/install.sh --image
	$(PY) scripts/image.py build $(DEBIAN)

unit: install-test
	$(PYTEST) -q tests/unit

e2e: install-test
	$(PYTEST) -q tests/e2e

fuzz: install-test
	KEMI_FUZZ_COUNT=$(FUZZ_COUNT) $(PYTEST) -q -s tests/e2e/test_security_malformed.py

# the settings file make check renders: SETTINGS, else $$KEMI_SETTINGS, else settings.toml
CHECK_SETTINGS = $(or $(SETTINGS),$(KEMI_SETTINGS),settings.toml)

check: deps
	$(PY) -m kemi check $(CHECK_SETTINGS)
	$(PY) -m kemi.settings check $(CHECK_SETTINGS)
	mkdir -p run && $(PY) -m kemi.settings render $(CHECK_SETTINGS) run/
	cp kamailio.cfg kamailio-common.cfg run/ && cd run && kamailio -c -f kamailio.cfg

# the SIPp kit (python3 -m kemi_tools.kit): one scenario against TARGET, a short result, exit 1 on failure
SCENARIO ?= options
TARGET ?= 127.0.0.1:5060
RATE ?= 5
COUNT ?=
USERS ?=
DOMAIN ?=
KIT_ARGS ?=

sipp:
	$(PY) -m kemi_tools.kit $(SCENARIO) --target $(TARGET) --rate $(RATE) $(if $(COUNT),--count $(COUNT)) \
		$(if $(USERS),--users $(USERS)) $(if $(DOMAIN),--domain $(DOMAIN)) $(KIT_ARGS)

# make reload  check the edited Python code, then have the running Kamailio load it
# (kamcmd app_python.reload on the control socket of SETTINGS; see docs/reload.md)
reload:
	$(PY) -m kemi.reload $(CHECK_SETTINGS)
