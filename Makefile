# Everything a fresh machine needs: system libraries (apt), then a project .venv (pip).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := libb64-0d
PYTEST_ARGS ?=
# pytest-xdist workers for make test, each test file on one worker (its module fixtures start once), in collection
# order (slow files first: tests/conftest.py). Much of a test's time is a server loading or a child process starting:
# on 2 cores, 3 workers keep both busy (94 % measured; 7:40 against ~8:40 with 2). 0 runs in one process.
TEST_WORKERS ?= 3

.PHONY: setup test test-fast lint docs demo analyze aiperf gpu-check clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "apt: installing $$missing"; \
	  $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[all,test,docs]'
	$(BIN)/pip check
	touch $(STAMP)

test: setup lint docs
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

# No server and no child process of ours, nothing slow (no ONNX export, no real shapes): in-process tests, tokenizer
# parity, the gateway through ASGI. Its budget is 60 s; it prints its own time and says when it went over.
FAST_BUDGET_S = 60
test-fast: setup lint
	@start=$$(date +%s); $(BIN)/python -m pytest -m "not triton and not slow and not process" $(PYTEST_ARGS) || exit $$?; \
	took=$$(( $$(date +%s) - start )); \
	if [ $$took -le $(FAST_BUDGET_S) ]; then echo "fast lane: $$took s (budget $(FAST_BUDGET_S) s)"; \
	else echo "fast lane: $$took s, over its budget of $(FAST_BUDGET_S) s: mark what made it slow (slow, process)"; fi

lint: setup
	$(BIN)/ruff check .

# The documentation site, reference pages generated from the code; broken links and anchors fail the build.
# (Material 9.7+ prints banners about MkDocs 2 and its own end of life in May 2027; the pins keep MkDocs 1.6.)
docs: setup
	DISABLE_MKDOCS_2_WARNING=true NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict  # not --quiet: it hides the warnings --strict fails on

# MODEL=mixedbread-ai/mxbai-rerank-base-v2 uses the real model (needs the Hugging Face hub).
MODEL ?=
demo: setup
	$(BIN)/mxbai-triton demo $(if $(MODEL),--model $(MODEL))

# Model Analyzer on the demo's repository (or REPO=...), local launch of the bundled tritonserver.
# It needs numpy 2 and a newer tritonclient than ours: its own venv, our perf_analyzer.
REPO ?= artifacts/demo/repository
# A small search that finishes in minutes on 2 CPU cores; widen it on a GPU server.
MA_ARGS ?= --seq 64 --batch-sizes 8 --concurrency 1,2 --queue-delays-us 0,2000 --instance-counts 1
analyze: setup
	[ -d $(REPO) ] || $(MAKE) demo
	[ -x .venv-ma/bin/model-analyzer ] || ($(PYTHON) -m venv .venv-ma && .venv-ma/bin/pip install -q triton-model-analyzer==1.58.0)
	$(BIN)/mxbai-triton perf analyze --repository $(REPO) --out artifacts/model-analyzer $(MA_ARGS)
	cd artifacts/model-analyzer && ../../.venv-ma/bin/model-analyzer profile -f config.yaml

# NVIDIA AIPerf on the gateway's cohere-rankings, hf-tei-rankings and nim-rankings endpoints beside the gRPC
# client (the small stand-in, served here). AIPerf needs numpy 2 and transformers 5: `perf aiperf` installs it
# into its own .venv-aiperf on first use.
AIPERF_ARGS ?=
aiperf: setup
	$(BIN)/mxbai-triton perf aiperf $(AIPERF_ARGS)

# GPU check kit: on a machine with only torch (no install, no internet), one call of a few minutes.
# The package is put on the path through a symlinked tree instead of pip. GPU_CHECK_ARGS=--dry-run on CPU.
GPU_PYTHON ?= python3
GPU_CHECK_ARGS ?=
gpu-check:
	mkdir -p build/gpu-kit/mxbai_triton
	cp mxbai_triton/__init__.py mxbai_triton/console.py mxbai_triton/noise.py build/gpu-kit/mxbai_triton/
	ln -sfn $(CURDIR)/core build/gpu-kit/mxbai_triton/core
	ln -sfn $(CURDIR)/export build/gpu-kit/mxbai_triton/export
	ln -sfn $(CURDIR)/perf build/gpu-kit/mxbai_triton/perf
	PYTHONPATH=build/gpu-kit $(GPU_PYTHON) -m mxbai_triton.perf.gpu_check $(GPU_CHECK_ARGS)

clean:
	rm -rf $(VENV) .venv-ma .venv-aiperf artifacts build .pytest_cache
