# edgeaudit — the two set-up commands (README): `make demo` and `make test`.
# Idempotent: the venv is rebuilt only when pyproject.toml changes; Debian packages are
# installed with apt-get only when missing (needs root; otherwise a clear message).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Debian packages the tests and the demo need (more arrive with later features): the build
# tools, the real protocol peers the end-to-end tests start in network namespaces, and the
# browser (with a CJK font) the web UI's tests drive through Playwright.
DEB_PACKAGES := python3-venv python3-dev gcc iproute2 tcpdump curl freeradius freeradius-utils \
  dnsmasq-base udhcpc dovecot-imapd dovecot-pop3d vsftpd nginx nftables iptables iputils-ping clickhouse-server zookeeper \
  chromium fonts-wqy-microhei
DEMO_DIR := demo-out

.PHONY: demo demo-stop test deps deb-deps lint typecheck unit bench clean compiled test-compiled

deps: deb-deps $(STAMP)

deb-deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
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
	$(BIN)/pytest -n auto -q; rc=$$?; if [ $$rc -eq 5 ]; then rc=0; fi; exit $$rc

# The compiled packet path must pass the same flow, decoder, capture and corpus tests, and the
# compiled ingest path (validation, packing) the same wire and SQLite layout tests.
test-compiled: compiled
	EDGEAUDIT_TREE=$(COMPILED_DIR) $(BIN)/pytest -n auto -q tests/agent/flows tests/agent/decode \
	  tests/agent/protocols tests/agent/identity tests/agent/filter \
	  tests/agent/capture tests/corpus tests/wire tests/collector/test_ingest_decoding.py \
	  tests/collector/storage/test_storage_scan.py tests/collector/storage/test_storage_sqlite.py \
	  tests/collector/storage/test_storage_sqlite_granules.py; rc=$$?; if [ $$rc -eq 5 ]; then rc=0; fi; exit $$rc

test: lint typecheck unit test-compiled

# The lab (deploy/lab/lab.py): client, gateway and internet namespaces with real servers, the
# collector on the host and the agent on the gateway; prints the collector URL, an operator login
# and an example traceback, and leaves it all running until `make demo-stop`.
demo: deps
	$(BIN)/python deploy/lab/lab.py start --dir $(DEMO_DIR)

demo-stop:
	@$(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON)) deploy/lab/lab.py stop --dir $(DEMO_DIR)

bench: deps compiled
	$(BIN)/python bench/bench_sessions.py --repeat 3
	$(BIN)/pip install -q 'hyperscan>=0.7' && $(BIN)/python bench/bench_keywords.py
	command -v tcpreplay >/dev/null || apt-get install -y -q tcpreplay
	$(BIN)/python bench/bench_live.py
	$(BIN)/python bench/bench_collector.py --repeat 3

clean:
	rm -rf $(DEMO_DIR) build .pytest_cache .mypy_cache .ruff_cache

# The packet path compiled with mypyc (same source, machine code): a build artifact in
# build/compiled, used by `make bench` and tested by `make test` against the pure-Python tree.
COMPILED_DIR := build/compiled
COMPILED_STAMP := $(COMPILED_DIR)/.built

compiled: $(COMPILED_STAMP)

$(COMPILED_STAMP): $(STAMP) $(shell find agent wire rulesets collector -name '*.py' 2>/dev/null) pyproject.toml setup.py
	rm -rf $(COMPILED_DIR) && mkdir -p $(COMPILED_DIR)
	tar --exclude=__pycache__ -cf - agent wire rulesets collector pyproject.toml setup.py README.md | tar -xf - -C $(COMPILED_DIR)
	cd $(COMPILED_DIR) && $(CURDIR)/$(BIN)/python setup.py build_ext --inplace > mypyc.log 2>&1 \
	  || { tail -30 mypyc.log; exit 1; }
	touch $@
