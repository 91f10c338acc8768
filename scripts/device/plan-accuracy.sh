#!/usr/bin/env bash
# Issue 15 on one GPU: the CUDA build, the planner's reserve test, then `fitlm plan --gpus`'s
# predicted device bytes and tok/s against `fitlm bench` for ~20 configurations
# (scripts/device/plan_accuracy.py). FITLM_REUSE_BUILD=1 keeps this session's earlier build.
#   run: carry [".debs"], command: bash scripts/device/plan-accuracy.sh [GPU] [--from I] [--only N]
set -uo pipefail
GPU=${1:-H200}
shift || true
OUT=${OUT:-/tmp}/plan-accuracy
mkdir -p "$OUT"
start=$(date +%s)
FITLM_DEVICE_TARGETS="fitlm fitlm_cuda_tests" bash scripts/device/build.sh build-device \
  >"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
echo "build: $(($(date +%s) - start)) s"
export LD_LIBRARY_PATH=/opt/fitlm-deps/usr/lib/x86_64-linux-gnu:/opt/fitlm-deps/usr/lib/x86_64-linux-gnu/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1
./build-device/tests/fitlm_cuda_tests --gtest_filter='PlanReserve*:*NeverOom*' 2>&1 | tail -15
# Never OOM (skipped with SQUEEZE=0): each run leaves only its plan's bytes + 1% free on the GPU (bench --squeeze).
[ "${SQUEEZE:-1}" = 0 ] || for cfg in "llama-3.1-8b --micro-batch 4 --recompute full" \
  "llama-3.1-8b --quantize nf4 --offload-weights --recompute full" \
  "llama-3.2-1b --mode full --micro-batch 4" \
  "qwen3-30b-a3b --recompute full"; do
  # shellcheck disable=SC2086
  ./build-device/fitlm bench --arch $cfg --seq 2048 --warmup 1 --steps 2 --squeeze 1 --json \
    >"$OUT/squeeze.json" 2>"$OUT/squeeze.log"
  echo "squeeze 1% [$cfg]: rc $? $(tail -1 "$OUT/squeeze.json") $(grep -m1 -o 'bench --squeeze.*' "$OUT/squeeze.log")"
done
python3 scripts/device/plan_accuracy.py "$PWD/build-device/fitlm" "$GPU" "$OUT/rows.jsonl" "$@"
