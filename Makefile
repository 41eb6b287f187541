# edgeaudit — the two set-up commands (README): `make demo` and `make test`.
# Idempotent: the venv is rebuilt only when pyproject.toml changes; Debian packages are
# installed with apt-get only when missing (needs root; otherwise a clear message).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Debian packages the tests and the demo need (more arrive with later features): the build
# tools, the real protocol peers the end-to-end tests start in network namespaces, and the
# browser (with a CJK font) the web UI's tests drive through Playwright, and tshark/editcap
# (the no-secrets oracle and the pcapng tests).
DEB_PACKAGES := python3-venv python3-dev gcc iproute2 tcpdump curl freeradius freeradius-utils \
  dnsmasq-base udhcpc dovecot-imapd dovecot-pop3d vsftpd nginx nftables iptables iputils-ping clickhouse-server zookeeper \
  chromium fonts-wqy-microhei tshark wireshark-common openssh-server rsyslog postfix swaks php8.2-fpm
DEMO_DIR := demo-out

.PHONY: demo demo-stop test deps deb-deps lint typecheck unit bench clean compiled test-compiled installed fresh-install

deps: deb-deps $(STAMP)

deb-deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections; \
	    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	  else \
	    echo "missing Debian packages:$$missing (run as root, or: sudo apt-get install$$missing)"; exit 1; \
	  fi; \
	fi

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	EDGEAUDIT_PURE=1 $(BIN)/pip install -q -e '.[dev]'
	touch $@

lint: deps
	$(BIN)/ruff check .

typecheck: deps
	$(BIN)/mypy

# pytest exit status 5 means "no tests collected": not a failure of the suite.
unit: deps
	$(BIN)/pytest -n auto; rc=$$?; if [ $$rc -eq 5 ]; then rc=0; fi; exit $$rc

# What `pip install .` gives a gateway or a center, tested as such: on every run a fresh venv
# (build/wheel-venv) builds the wheel from the checkout with pip's default build isolation,
# installs it with the test runners, and the compiled packet path (flow, decoder, capture,
# identity, filter and corpus tests) and the compiled ingest path (wire, validation, packing,
# the SQLite layout) run against that installed wheel (conftest.py, EDGEAUDIT_TREE=installed).
test-compiled: fresh-install
	EDGEAUDIT_TREE=installed $(WHEEL_VENV)/bin/pytest -n auto $(COMPILED_TESTS); \
	  rc=$$?; if [ $$rc -eq 5 ]; then rc=0; fi; exit $$rc

COMPILED_TESTS := tests/agent/flows tests/agent/decode tests/agent/protocols tests/agent/identity \
  tests/agent/filter tests/agent/capture tests/corpus tests/wire tests/collector/test_ingest_decoding.py \
  tests/collector/storage/test_storage_scan.py tests/collector/storage/test_storage_sqlite.py \
  tests/collector/storage/test_storage_sqlite_granules.py \
  tests/deploy/test_packaging.py::test_console_script_starts_and_names_its_build

# The whole suite last, so its closing `N passed` line ends the output.
test: lint typecheck test-compiled unit

# The lab (deploy/lab/lab.py): client, gateway and internet namespaces with real servers, the
# collector on the host and the agent on the gateway; prints the collector URL, an operator login
# and an example traceback, and leaves it all running until `make demo-stop`.
demo: deps installed
	$(WHEEL_VENV)/bin/python deploy/lab/lab.py start --dir $(DEMO_DIR)

demo-stop:
	@$(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON)) deploy/lab/lab.py stop --dir $(DEMO_DIR)

bench: deps compiled
	$(BIN)/python bench/bench_sessions.py --repeat 3
	$(BIN)/python bench/bench_keywords.py
	command -v tcpreplay >/dev/null || apt-get install -y -q tcpreplay
	$(BIN)/python bench/bench_live.py
	$(BIN)/python bench/bench_collector.py --repeat 3

clean:
	rm -rf $(DEMO_DIR) build .pytest_cache .mypy_cache .ruff_cache

# The build a user installs. `pip wheel .` in a venv of its own (build isolation: only what
# pyproject.toml's [build-system] declares), the wheel installed there with the test runners,
# and the same wheel unpacked into build/compiled for the benchmarks (bench/agent_compiled.py,
# bench_collector.py, bench_keywords.py import from it): one wheel, byte for byte, for the
# demo, the benchmarks and the compiled tests. `installed` rebuilds when a source changed;
# `fresh-install` (make test) rebuilds every time.
WHEEL_DIR := build/wheel
WHEEL_VENV := build/wheel-venv
WHEEL_STAMP := $(WHEEL_VENV)/.installed
COMPILED_DIR := build/compiled
TEST_RUNNERS := pytest>=8 pytest-xdist>=3 hypothesis>=6.100
SOURCES := $(shell find agent wire rulesets collector -name '*.py' -o -name '*.html' -o -name '*.js' -o -name '*.css' 2>/dev/null)

installed: $(WHEEL_STAMP)
compiled: $(WHEEL_STAMP)

fresh-install:
	rm -f $(WHEEL_STAMP)
	$(MAKE) --no-print-directory installed

$(WHEEL_STAMP): $(SOURCES) pyproject.toml setup.py README.md
	@# setuptools builds in the checkout's build/: stale copies of removed modules must not ship
	rm -rf $(WHEEL_DIR) $(WHEEL_VENV) $(COMPILED_DIR) build/lib build/lib.* build/bdist.*
	$(PYTHON) -m venv $(WHEEL_VENV)
	$(WHEEL_VENV)/bin/pip install -q --upgrade pip
	$(WHEEL_VENV)/bin/pip wheel -q --no-deps -w $(WHEEL_DIR) .
	$(WHEEL_VENV)/bin/pip install -q $(WHEEL_DIR)/edgeaudit-*.whl '$(word 1,$(TEST_RUNNERS))' \
	  '$(word 2,$(TEST_RUNNERS))' '$(word 3,$(TEST_RUNNERS))'
	$(WHEEL_VENV)/bin/pip install -q --no-deps --target $(COMPILED_DIR) $(WHEEL_DIR)/edgeaudit-*.whl
	@$(WHEEL_VENV)/bin/edgeaudit-agent --version
	touch $(COMPILED_DIR)/.built $@
