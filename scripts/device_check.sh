#!/usr/bin/env bash
# The GPU checks (tests/test_cuda.py, marker `cuda`) on a machine with one CUDA GPU and no internet, where
# torch, transformers, accelerate, peft, pytest, ... are installed but not rationalyst nor pydantic.
#
# Carried beside the working tree (both git-ignored through .git/info/exclude, made on a machine with
# internet):
#   .whl/     wheels of what the tested modules import and the GPU machine lacks (pydantic and its
#             dependencies, for CPython 3.12 manylinux x86_64), installed here with no index
#   .devtok/  the default model's tokenizer files (tokenizer.json, tokenizer_config.json,
#             chat_template.jinja): the tests build a tiny random-weight model around them
#
#   bash scripts/device_check.sh          # from the repository root; the log goes to $OUT/cuda-tests.log
#
# PYTHON (default python3), SITE (default /tmp/site), WHEELS (default .whl) and the tests' own
# RATIONALYST_TEST_DEVICE / RATIONALYST_TEST_TOKENIZER can be overridden from the environment.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
SITE="${SITE:-/tmp/site}"
WHEELS="${WHEELS:-.whl}"
OUT="${OUT:-/tmp/device-check}"
mkdir -p "$OUT"

shopt -s nullglob
wheels=("$WHEELS"/*.whl)
shopt -u nullglob
if ((${#wheels[@]})); then
    $PYTHON -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "${wheels[@]}"
fi
# rationalyst from the source tree (it is not installed there); the carried wheels first.
export PYTHONPATH="$SITE:$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export RATIONALYST_TEST_DEVICE="${RATIONALYST_TEST_DEVICE:-cuda}"
export RATIONALYST_TEST_TOKENIZER="${RATIONALYST_TEST_TOKENIZER:-.devtok}"
# Measurements the tests make (bf16 differences, losses), one JSON object a line.
export RATIONALYST_TEST_REPORT="${RATIONALYST_TEST_REPORT:-$OUT/cuda-measurements.jsonl}"
: > "$RATIONALYST_TEST_REPORT"

{
    nvidia-smi -L || echo "nvidia-smi: not available"
    $PYTHON - <<'EOF'
import sys

import accelerate, peft, pydantic, torch, transformers

import rationalyst

print("python", sys.version.split()[0], sys.executable)
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
print("transformers", transformers.__version__, "accelerate", accelerate.__version__, "peft", peft.__version__,
      "pydantic", pydantic.__version__)
print("tf32 matmul", torch.backends.cuda.matmul.allow_tf32, "cudnn", torch.backends.cudnn.allow_tf32)
print("rationalyst", rationalyst.__version__, "from", rationalyst.__file__)
EOF
} 2>&1 | tee "$OUT/environment.txt"

$PYTHON -m pytest -m cuda tests/test_cuda.py -p no:cacheprovider -q -rs --durations=10 2>&1 | tee "$OUT/cuda-tests.log"
