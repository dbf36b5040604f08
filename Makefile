# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.maxsim-installed
# Where torch comes from; e.g. TORCH_INDEX=https://download.pytorch.org/whl/cpu for the CPU build on Linux.
TORCH_INDEX ?=

.PHONY: setup demo test lint bench benchenv-colbert benchenv-fastplaid clean

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

# Benchmark-only virtualenvs of the peers bench/index.py and bench/index_quality.py compare with;
# never dependencies of the package. colbert-ai gets this project's CPU torch first, pinned, so it
# cannot pull a CUDA build; fast-plaid's wheels pin their own torch (2.11).
benchenv-colbert:
	test -x .benchenv-colbert/bin/python || $(PYTHON) -m venv .benchenv-colbert
	.benchenv-colbert/bin/pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	.benchenv-colbert/bin/pip install -q colbert-ai==0.2.22 faiss-cpu torch==2.13.0

benchenv-fastplaid:
	test -x .benchenv-fastplaid/bin/python || $(PYTHON) -m venv .benchenv-fastplaid
	.benchenv-fastplaid/bin/pip install -q fast-plaid

clean:
	rm -rf $(VENV) build *.egg-info
