# Two commands on a fresh machine: `make serve` and `make test` (both install what they need).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of torch from the machine's local wheel; installed first so that no
# dependency ever pulls a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
CONFIG ?=

.PHONY: install serve test lint bench clean browser

$(STAMP): pyproject.toml Makefile scripts/install-vllm.sh
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet '$(TORCH_SPEC)'
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	bash scripts/install-vllm.sh $(BIN)/python
	@touch $@

# Debian's Chromium and its driver for the browser test (no browser download works here).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } || \
	  echo "could not install chromium (not root?): the browser test will be skipped"

install: $(STAMP)

serve: $(STAMP)
	$(BIN)/rag-appliance serve --host $(HOST) --port $(PORT) $(if $(CONFIG),--config $(CONFIG))

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/hadolint Dockerfile

test: lint browser
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/pytest -q -rs

bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python bench/embeddings.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache test-output
