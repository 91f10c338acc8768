#!/usr/bin/env bash
# Issue 14 (mixture of experts) on one GPU, one call: build; the CUDA MoE ops against the CPU's
# and the whole MoE models (Mixtral, Qwen3-MoE with a dense layer) against the CPU
# (ModelVsCpu); then `fitlm bench` of Qwen3-30B-A3B shapes, LoRA r16 on q/k/v/o, seq 2048, full
# recompute, micro-batch 1 and 4 (planned vs measured memory in the log), and Mixtral-8x7B.
#   run: carry [".debs"], command: bash scripts/device/moe-check.sh
# MOE_HF=1 runs the HF transformers + PEFT baseline (bench/hf_moe_lora.py) and the PEFT
# adapter-name check (peft_moe_names.py) instead of the rest, so that they get a call of their own.
set -uo pipefail
OUT=/tmp/fitlm-moe
mkdir -p "$OUT"
start=$(date +%s)
if [ -n "${MOE_HF:-}" ]; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1
  /opt/torch/.venv/bin/python3 -c "import transformers, peft, torch; print('transformers', transformers.__version__, 'peft', peft.__version__, 'torch', torch.__version__)"
  /opt/torch/.venv/bin/python3 bench/hf_moe_lora.py 2>&1 | grep -v Warning | tail -8
  /opt/torch/.venv/bin/python3 scripts/device/peft_moe_names.py 2>&1 | grep -v Warning | head -150
  echo "total: $(($(date +%s) - start)) s"
  exit 0
fi
FITLM_DEVICE_TARGETS="fitlm fitlm_cuda_tests" bash scripts/device/build.sh build-device \
  >"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
echo "build: $(($(date +%s) - start)) s"
B=$PWD/build-device
export LD_LIBRARY_PATH=/opt/fitlm-deps/usr/lib/x86_64-linux-gnu:/opt/fitlm-deps/usr/lib/x86_64-linux-gnu/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1
"$B/tests/fitlm_cuda_tests" --gtest_brief=1 \
  --gtest_filter='Archs/ModelVsCpu.*:Storage/CudaMoeOps.*' \
  >"$OUT/cuda_tests.log" 2>&1
echo "cuda tests rc $?"
grep -E '^\[  PASSED  \]|^\[  FAILED  \]|Failure|(Mixtral|Qwen3Moe).*recompute' "$OUT/cuda_tests.log" | head -40
bench() {  # name, args...
  local name=$1; shift
  timeout 150 "$B/fitlm" bench --arch "$@" --recompute full --seq 2048 --json \
    >"$OUT/bench-$name.json" 2>"$OUT/bench-$name.log"
  echo "$name rc $?: $(cat "$OUT/bench-$name.json")"
  grep -E "arena|measured|planned" "$OUT/bench-$name.log" | head -4
  case "$*" in *--profile*) tail -n 25 "$OUT/bench-$name.log" ;; esac
}
bench q30b-mb1 qwen3-30b-a3b --micro-batch 1 --steps 3 --warmup 1 --profile
bench q30b-mb4 qwen3-30b-a3b --micro-batch 4 --steps 2 --warmup 1
bench mixtral-mb1 mixtral-8x7b --micro-batch 1 --steps 3 --warmup 1
echo "total: $(($(date +%s) - start)) s"
