# `make run` and `make test` do all the set-up on a fresh clone: a .venv with everything installed, once.
# Re-install happens only when requirements.txt or this Makefile change (the stamp file is older).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet
STAMP := $(VENV)/.installed
TEST_TOOLS := pytest ruff playwright scikit-image markdown-it-py
HOST ?= 127.0.0.1
# Browser tests (tests/test_browser.py): Debian's Chromium (Playwright's own browser download does not work
# here) and axe-core from npm, kept inside the venv folder (git-ignored, removed by clean-venv).
CHROMIUM := /usr/bin/chromium
AXE := $(VENV)/node/node_modules/axe-core/axe.min.js
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PORT ?= 7860

# `make space-check`: what a Hugging Face Space has, a venv built from requirements.txt alone (torch first,
# as above), answers a question with the bundled custom model and one from the photo's facts, offline. Rebuilt only when requirements.txt
# or this Makefile change; the first answer also converts the GGUF into the venv's own cache.
SPACE_VENV := .venv-space
SPACE_PY := $(SPACE_VENV)/bin/python
SPACE_STAMP := $(SPACE_VENV)/.installed

.PHONY: run test test-fast lint space-check clean-venv

run: $(STAMP)
	@echo "vqa-chat at http://$(HOST):$(PORT)"
	$(PY) app.py --host $(HOST) --port $(PORT)

test: $(STAMP) $(CHROMIUM) $(AXE)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

# The tests not marked slow (no app, browser, training run or anything over ~5 s): a quick check while working.
test-fast: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check .

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) requirements.txt Makefile
	# torch first: on a CPU-only machine this resolves to the CPU build (a local wheel here).
	$(PY) -c "import torch" 2>/dev/null || $(PIP) torch==2.13.0
	$(PIP) -r requirements.txt
	$(PIP) $(TEST_TOOLS)
	touch $@

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

$(AXE): | $(PY)
	command -v npm >/dev/null || ($(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm)
	npm install --silent --no-audit --no-fund --prefix $(VENV)/node axe-core@4

space-check: $(SPACE_STAMP)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VQA_CHAT_CACHE=$(SPACE_VENV)/cache $(SPACE_PY) -m vqa_chat.cli \
		--backend custom --image assets/examples/blue_triangle.png --question "What shape is this?" \
		| tee $(SPACE_VENV)/answer.txt
	grep -qi triangle $(SPACE_VENV)/answer.txt
	# a question the model never learned: answered from the photo's facts (classifier, OCR, detectors)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VQA_CHAT_CACHE=$(SPACE_VENV)/cache $(SPACE_PY) -m vqa_chat.cli \
		--backend custom --image assets/examples/blue_triangle.png --question "How many people are there?" \
		| tee $(SPACE_VENV)/facts.txt
	grep -q "I don't see anyone" $(SPACE_VENV)/facts.txt

$(SPACE_STAMP): requirements.txt Makefile
	rm -rf $(SPACE_VENV)
	$(PYTHON) -m venv $(SPACE_VENV)
	$(SPACE_PY) -m pip install --quiet torch==2.13.0
	$(SPACE_PY) -m pip install --quiet -r requirements.txt
	touch $@

clean-venv:
	rm -rf $(VENV) $(SPACE_VENV)
