# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.maxsim-installed
# Where torch comes from; e.g. TORCH_INDEX=https://download.pytorch.org/whl/cpu for the CPU build on Linux.
TORCH_INDEX ?=

.PHONY: setup demo test bench clean

# torch goes in first, pinned, so that nothing later can pull a CUDA build of it.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/maxsim demo

# The browser test needs Debian's chromium; without it that one test skips and says why.
test: setup
	sh scripts/ensure-chromium.sh || echo "chromium could not be installed: the browser test will be skipped"
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python bench/encode.py

clean:
	rm -rf $(VENV) build *.egg-info
