#!/usr/bin/env bash
# Issue 11 (QLoRA) on the device, one call: build; every CUDA test (the dequantize4 kernel, CUDA
# QLoRA against CPU QLoRA, the rest); the dequantize4 bandwidth next to a device copy; then
# Llama-3.1-8B shapes, LoRA r16 on all seven projections, seq 2048, micro-batch 1, full
# recompute: 16-bit LoRA and NF4 QLoRA in the same run (and QLoRA profiled), and
# Llama-3.1-70B NF4 QLoRA.
#   run: carry [".debs"], command: bash scripts/device/qlora-bench.sh
# QLORA_SKIP_TESTS=1 skips the unit tests. Results on stdout; JSON and logs under
# /tmp/fitlm-qlora-out on the device (a device call returns only a few files).
set -uo pipefail
OUT=/tmp/fitlm-qlora-out
mkdir -p "$OUT"
bash scripts/device/build.sh build-device >"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
B=$PWD/build-device
export LD_LIBRARY_PATH=/opt/fitlm-deps/usr/lib/x86_64-linux-gnu:/opt/fitlm-deps/usr/lib/x86_64-linux-gnu/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
if [ -z "${QLORA_SKIP_TESTS:-}" ]; then
  "$B/tests/fitlm_cuda_tests" --gtest_brief=1 >"$OUT/cuda_tests.log" 2>&1
  echo "fitlm_cuda_tests rc $?"
  grep -E '^\[  PASSED  \]|^\[  FAILED  \]|^qlora .*(bf16|f16) recompute=1' "$OUT/cuda_tests.log" | tail -20
fi
"$B/tests/cuda_ops_bench" --quick >"$OUT/ops_bench.txt" 2>&1
grep -i -A1 "dequantize4" "$OUT/ops_bench.txt"
bench() {  # name, args...
  local name=$1; shift
  "$B/fitlm" bench --arch "$@" --recompute full --seq 2048 --micro-batch 1 --json \
    >"$OUT/bench-$name.json" 2>"$OUT/bench-$name.log"
  echo "$name rc $?: $(cat "$OUT/bench-$name.json")"
}
bench 8b-lora16 llama-3.1-8b
bench 8b-qlora llama-3.1-8b --quantize nf4
bench 8b-qlora-fp4 llama-3.1-8b --quantize fp4 --no-double-quant
"$B/fitlm" bench --arch llama-3.1-8b --quantize nf4 --recompute full --profile \
  >"$OUT/bench-8b-qlora-profile.txt" 2>&1
grep -iE "tokens/s|dequantize4|gemm projections|embedding|total" "$OUT/bench-8b-qlora-profile.txt" | head -8
bench 70b-qlora llama-3.1-70b --quantize nf4 --steps 2 --warmup 1
grep -E "arena|weights|dequant" "$OUT/bench-70b-qlora.log" | head -8
