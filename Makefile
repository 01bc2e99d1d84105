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

# Benchmarks (benchmarks/): matplotlib for the plots, then the replay benchmark.
.PHONY: bench
bench: venv
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python benchmarks/replay.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache .hypothesis
