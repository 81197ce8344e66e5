# make run   -> venv + dependencies, then the assistant on the default model
# make test  -> venv + dependencies, then the whole test suite
# Each target does its own set-up, so both work on a fresh clone.

PYTHON ?= python3
VENV ?= .venv
# The torch build to install before the rest; override e.g. TORCH_SPEC=torch for your platform's default.
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export ANONYMIZED_TELEMETRY ?= False

.PHONY: run test bench lint clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q -e ".[dev]"
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/assistant $(ARGS)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(PIP) install -q -e ".[dev,bench]"
	$(PY) bench/train_throughput.py
	$(PY) bench/generate.py

lint: $(STAMP)
	$(VENV)/bin/ruff check assistant trainer sandbox index feedback common bench tests

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
