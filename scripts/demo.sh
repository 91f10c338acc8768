#!/usr/bin/env bash
# The built-in demo (README's first command): no downloads. Builds a tiny Llama model and a
# byte-level tokenizer, pretrains it briefly, LoRA fine-tunes it on a new instruction and
# prints exact-match accuracy before and after, then a few generations.
#   scripts/demo.sh [path/to/fitlm] [extra `fitlm demo` options, e.g. --backend cuda]
set -euo pipefail
FITLM_BIN=${1:-build/fitlm}
shift || true
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}  # OpenMP already parallelises; nested BLAS threads thrash
exec "$FITLM_BIN" demo "$@"
