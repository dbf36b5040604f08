# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.maxsim-installed
# Where torch comes from; e.g. TORCH_INDEX=https://download.pytorch.org/whl/cpu for the CPU build on Linux.
TORCH_INDEX ?=

.PHONY: setup demo test lint bench clean

# torch goes in first, pinned, so that nothing later can pull a CUDA build of it.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/maxsim demo

# ruff (lint + format), mypy over the package; `make test` runs them before the tests.
lint: setup
	$(BIN)/ruff check maxsim tests bench scripts
	$(BIN)/ruff format --check maxsim tests bench scripts
	$(BIN)/mypy

# The browser test needs Debian's chromium; without it that one test skips and says why.
# The tests include the package's doctests, the real Jina client libraries and a Schemathesis run.
test: setup lint
	sh scripts/ensure-chromium.sh || echo "chromium could not be installed: the browser test will be skipped"
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python bench/encode.py

clean:
	rm -rf $(VENV) build *.egg-info
