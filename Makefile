# Two commands for a newcomer on a fresh Debian/Ubuntu machine (root or sudo):
#   make demo   the fleet, a private Mosquitto and simulated classrooms on embedded defaults
#   make test   lint, type check and the whole test suite against real servers
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEBS_RUN := mosquitto mosquitto-clients openssl
DEBS_TEST := $(DEBS_RUN) ffmpeg alsa-utils postgresql chromium victoria-metrics influxdb \
	prometheus-node-exporter fonts-wqy-microhei iputils-ping systemd
STAMP := $(VENV)/.installed
# grafana-client's urllib3-future would replace urllib3 in .venv: its tests get a venv of their own.
GVENV := .venv-grafana
GSTAMP := $(GVENV)/.installed

.PHONY: demo test test-grafana fuzz lint typecheck bench deps-run deps-test venv clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

$(GSTAMP): pyproject.toml
	$(PY) -m venv $(GVENV)
	$(GVENV)/bin/pip install -q --upgrade pip
	$(GVENV)/bin/pip install -q -e '.[grafana]' 'pytest>=8' 'pytest-timeout>=2.3'
	touch $(GSTAMP)

deps-run:
	@missing=""; for p in $(DEBS_RUN); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; fi

deps-test:
	@missing=""; for p in $(DEBS_TEST); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; fi

demo: deps-run venv
	$(BIN)/syncclass-fleet demo

lint: venv
	$(BIN)/ruff check agent fleet tests bench

typecheck: venv
	$(BIN)/mypy

test: deps-test venv lint typecheck test-grafana
	$(BIN)/pytest -q -p no:cacheprovider tests

# `grafana push` against a stand-in Grafana, in the venv that has grafana-client.
test-grafana: $(GSTAMP)
	$(GVENV)/bin/pytest -q -p no:cacheprovider tests/grafana

# A larger budget for the fuzz tests than the suite gives them (FUZZ_EXAMPLES per test).
FUZZ_EXAMPLES ?= 2000
fuzz: deps-test venv
	SYNCCLASS_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest -q -p no:cacheprovider -m fuzz tests

bench: deps-test venv
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(GVENV) .mypy_cache .ruff_cache
