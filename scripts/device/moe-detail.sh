#!/usr/bin/env bash
# Issue 14 follow-up on one GPU, one call: build; the MoE CUDA-vs-CPU tests with their failure
# details and per-run cosines; Qwen3-30B-A3B shapes at micro-batch 1 and 4 (MOE_PROFILE=1: with
# the per-op profile) and QLoRA at micro-batch 1 (planned vs measured, goal ≤ 20 GiB).
#   run: carry [".debs"], command: bash scripts/device/moe-detail.sh
set -uo pipefail
start=$(date +%s)
FITLM_DEVICE_TARGETS="fitlm fitlm_cuda_tests" bash scripts/device/build.sh build-device \
  >/tmp/moe-build.log 2>&1 || { tail -40 /tmp/moe-build.log; exit 1; }
echo "build: $(($(date +%s) - start)) s"
B=$PWD/build-device
export LD_LIBRARY_PATH=/opt/fitlm-deps/usr/lib/x86_64-linux-gnu:/opt/fitlm-deps/usr/lib/x86_64-linux-gnu/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
"$B/tests/fitlm_cuda_tests" \
  --gtest_filter='Archs/ModelVsCpu.*Mixtral*:Archs/ModelVsCpu.*Qwen3Moe*:ModelVsCpuQLoRA.*:Storage/CudaMoeOps.*' \
  >/tmp/moe-tests.log 2>&1
echo "cuda tests rc $?"
grep -E -A4 "Failure" /tmp/moe-tests.log | grep -vE "^--$" | head -40
grep -E "worst grad cosine|^\[  PASSED|^\[  FAILED" /tmp/moe-tests.log | head -40
bench() {  # name, args...
  local name=$1; shift
  timeout 200 "$B/fitlm" bench --arch "$@" --recompute full --seq 2048 --json \
    >/tmp/bench-$name.json 2>/tmp/bench-$name.log
  echo "$name rc $?: $(cat /tmp/bench-$name.json)"
  case "$*" in *--profile*) grep -E "^  (op|gemm|gather|moe|attention|rmsnorm|total)" /tmp/bench-$name.log ;; esac
}
bench q30b-mb1 qwen3-30b-a3b --micro-batch 1 --steps 3 --warmup 1
bench q30b-mb4 qwen3-30b-a3b --micro-batch 4 --steps 2 --warmup 1 ${MOE_PROFILE:+--profile}
bench q30b-nf4-mb1 qwen3-30b-a3b --quantize nf4 --micro-batch 1 --steps 3 --warmup 1
echo "total: $(($(date +%s) - start)) s"
