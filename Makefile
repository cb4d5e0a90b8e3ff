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
	prometheus-node-exporter fonts-wqy-microhei iputils-ping systemd strace umockdev \
	pulseaudio pulseaudio-utils
STAMP := $(VENV)/.installed
# grafana-client's urllib3-future would replace urllib3 in .venv: its tests get a venv of their own.
GVENV := .venv-grafana
GSTAMP := $(GVENV)/.installed

.PHONY: demo deb screenshots test test-grafana test-agent-pythons test-ffmpegs fuzz lint typecheck bench deps-run deps-test venv clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

$(GSTAMP): pyproject.toml
	$(PY) -m venv $(GVENV)
	$(GVENV)/bin/pip install -q --upgrade pip
	$(GVENV)/bin/pip install -q -e '.[grafana]' 'pytest>=8' 'pytest-timeout>=2.3' 'hypothesis>=6.100'
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
	$(BIN)/mypy --python-version 3.10 -p agent

test: deps-test venv lint typecheck test-grafana test-agent-pythons test-ffmpegs
	$(BIN)/pytest -q -p no:cacheprovider tests

# The agent runs on the classroom PC's own python3: 3.10 (Ubuntu 22.04), 3.11 (Debian 12),
# 3.12 (Ubuntu 24.04).  Its tests run again under each of these interpreters the machine
# has (the suite itself runs on the venv's), each in a venv under build/.
AGENT_PYTHONS ?= /root/.pyenv/versions/3.10.13/bin/python /root/.pyenv/versions/3.12.1/bin/python
AGENT_TESTS := tests/agent tests/test_contract.py
test-agent-pythons:
	@for py in $(AGENT_PYTHONS); do \
	  if [ ! -x "$$py" ]; then echo "test-agent-pythons: $$py is not on this machine, skipped"; continue; fi; \
	  v=$$("$$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])'); env=build/venv-agent-$$v; \
	  if [ ! -e $$env/.installed ] || [ pyproject.toml -nt $$env/.installed ]; then \
	    "$$py" -m venv $$env && $$env/bin/pip install -q -e '.[agent]' pytest pytest-timeout hypothesis \
	      && touch $$env/.installed || exit 1; fi; \
	  echo "agent tests on Python $$v ($$py)"; \
	  PYTHONPATH=$$PWD $$env/bin/pytest -q -p no:cacheprovider $(AGENT_TESTS) || exit 1; \
	done

# The camera check on other FFmpeg releases than the distribution's (the suite runs it on
# that one): imageio-ffmpeg's wheels carry static builds, 0.5.1 FFmpeg 4.2.2 (the 4.2 of
# Ubuntu 20.04) and 0.6.0 FFmpeg 7.0.2.  Installed under build/, not into the venv.
FFMPEG_WHEELS ?= 0.5.1 0.6.0
FFMPEG_TESTS := tests/agent/test_ffmpeg_compat.py tests/agent/test_hardware_media.py
test-ffmpegs: venv
	@builds=""; for v in $(FFMPEG_WHEELS); do d=build/imageio-ffmpeg-$$v; \
	  [ -d $$d/imageio_ffmpeg ] || $(BIN)/pip install -q --no-deps --target $$d "imageio-ffmpeg==$$v" || exit 1; \
	  b=$$(ls $$PWD/$$d/imageio_ffmpeg/binaries/ffmpeg-* | head -1); chmod +x "$$b"; builds="$$builds:$$b"; done; \
	SYNCCLASS_TEST_FFMPEG="$${builds#:}" $(BIN)/pytest -q -p no:cacheprovider $(FFMPEG_TESTS) -k 'ffmpeg-'

# `grafana push` against a stand-in Grafana, in the venv that has grafana-client.
test-grafana: $(GSTAMP)
	$(GVENV)/bin/pytest -q -p no:cacheprovider tests/grafana

# A larger budget for the fuzz tests than the suite gives them (FUZZ_EXAMPLES per test).
FUZZ_EXAMPLES ?= 2000
fuzz: deps-test venv
	SYNCCLASS_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest -q -p no:cacheprovider -m fuzz tests

# The agent's Debian package, build/syncclass-agent_VERSION_ARCH.deb (Debian 12, Ubuntu
# 22.04 and 24.04): the project and dependency wheels inside, its venv made on install.
# Built with a bare venv (pip only), not the dev one: packaging needs none of its tools.
DEB_VENV := build/venv-deb
$(DEB_VENV)/bin/python:
	$(PY) -m venv $(DEB_VENV)
deb: $(DEB_VENV)/bin/python
	PYTHON=$(DEB_VENV)/bin/python packaging/deb/build-agent.sh build

bench: deps-test venv
	$(BIN)/python -m bench

# The page at 390x844 (touch) and 1366x768, written to tests/screenshots/ by its tests
# (today's overview, the classroom, device, operations and reports pages, the alerts, and
# the wall screen also at 1920x1080).
screenshots: deps-test venv
	SYNCCLASS_SCREENSHOTS=$(CURDIR)/tests/screenshots $(BIN)/pytest -q -p no:cacheprovider tests/fleet/test_web_phone.py tests/fleet/test_web_pages.py tests/fleet/test_web_live.py

clean:
	rm -rf $(VENV) $(GVENV) .mypy_cache .ruff_cache
