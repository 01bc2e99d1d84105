# lmdp: everything installs itself. `make demo` and `make test` work on a fresh Debian
# machine as root: a .venv from pyproject.toml, and the Debian packages of the real peers
# (DHCP clients, arping, tcpdump, perfdhcp) when they are missing.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Debian packages of the real peers, and the commands that show they are installed.
DEBS   := iproute2 isc-dhcp-client dhcpcd-base udhcpc arping tcpdump kea-admin ndisc6
CMDS   := ip dhclient dhcpcd udhcpc arping tcpdump perfdhcp ndisc6
PYTEST_ARGS ?=

.PHONY: all setup debs venv demo test unit integration lint format clean

all: test

setup: debs venv

# Install the peers only when one is missing, so repeated runs cost nothing.
debs:
	@missing=""; for c in $(CMDS); do command -v $$c >/dev/null 2>&1 || \
	  [ -x /usr/sbin/$$c ] || [ -x /sbin/$$c ] || missing="$$missing $$c"; done; \
	if ! $(PYTHON) -c 'import ensurepip, venv' >/dev/null 2>&1; then missing="$$missing python3-venv"; fi; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages (missing:$$missing)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    $(DEBS) python3-venv >/dev/null; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { apt-get update -qq && apt-get install -y -qq python3 python3-venv; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $@

demo: setup
	$(BIN)/lmdp lab demo

test: setup
	$(BIN)/ruff check .
	$(BIN)/pytest -q $(PYTEST_ARGS)

unit: venv
	$(BIN)/pytest -q tests/unit tests/fuzz $(PYTEST_ARGS)

integration: setup
	$(BIN)/pytest -q tests/integration $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Benchmarks (benchmarks/; not in CI; root, for the namespaces): matplotlib for the plots,
# the Debian packages they drive when one is missing (Kea for the comparison, tcpreplay,
# iperf3), then every benchmark present, in turn, each under the lock that keeps benchmarks
# on a shared machine from measuring each other (the scripts do not take it themselves), and
# last benchmarks/results/README.md from all the results. BENCH_ONLY="kea idle" runs some.
BENCH_DEBS := kea-dhcp4-server kea-dhcp6-server kea-admin tcpreplay iperf3
BENCH_CMDS := kea-dhcp4 kea-dhcp6 perfdhcp tcpreplay iperf3 flock
BENCHMARKS := replay kea arp_flood latency idle scale ports_memory
BENCH_ONLY ?= $(BENCHMARKS)
BENCH_LOCK ?= /tmp/lmdp-bench.lock

.PHONY: bench bench-debs
bench: setup bench-debs
	$(BIN)/pip install -q -e '.[bench]'
	@failed=""; for b in $(BENCH_ONLY); do \
	  [ -f benchmarks/$$b.py ] || continue; \
	  echo "== benchmarks/$$b.py (waiting for $(BENCH_LOCK))"; \
	  flock $(BENCH_LOCK) $(BIN)/python benchmarks/$$b.py || failed="$$failed $$b"; \
	done; \
	$(BIN)/python benchmarks/report.py; \
	if [ -n "$$failed" ]; then echo "benchmarks failed:$$failed"; exit 1; fi

# Kea's packages start their daemons where a service manager runs: stop those we installed.
bench-debs:
	@missing=""; for c in $(BENCH_CMDS); do command -v $$c >/dev/null 2>&1 || \
	  [ -x /usr/sbin/$$c ] || [ -x /sbin/$$c ] || missing="$$missing $$c"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages (missing:$$missing)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    $(BENCH_DEBS) util-linux >/dev/null; \
	  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then \
	    systemctl disable --now kea-dhcp4-server kea-dhcp6-server kea-ctrl-agent \
	      >/dev/null 2>&1 || true; \
	  fi; \
	fi

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache .hypothesis
