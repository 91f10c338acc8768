#!/usr/bin/env bash
# The built-in demo. Until `fitlm train` lands (issue "training end to end"), the demo runs the
# PyTorch parity check: random-weight Llama/Mistral/Qwen2/Qwen3 models in real HF layouts, scored
# and differentiated by fitlm on the CPU and by a float64 PyTorch reference.
set -euo pipefail
FITLM_BIN=${1:-build/fitlm}
echo "fitlm demo: the training demo is not built yet; running the PyTorch parity check instead."
FITLM_BIN=$FITLM_BIN /usr/bin/python3 "$(dirname "$0")/../tests/model/hf_parity_test.py"
