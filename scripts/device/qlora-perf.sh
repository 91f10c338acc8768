#!/usr/bin/env bash
# Quick QLoRA throughput check on the device: the dequantize4 tests and bandwidth
# (cuda_ops_bench), then Llama-3.1-8B 16-bit LoRA and NF4 QLoRA (full recompute, seq 2048,
# micro-batch 1) in one call, twice each in alternation, and the QLoRA step profiled. Output on
# stdout only.
#   run: carry [".debs"], command: bash scripts/device/qlora-perf.sh
set -uo pipefail
bash scripts/device/build.sh build-device >/tmp/qp-build.log 2>&1 || { tail -40 /tmp/qp-build.log; exit 1; }
B=$PWD/build-device
export LD_LIBRARY_PATH=/opt/fitlm-deps/usr/lib/x86_64-linux-gnu:/opt/fitlm-deps/usr/lib/x86_64-linux-gnu/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
"$B/tests/fitlm_cuda_tests" --gtest_filter='CudaDequant4*:ModelVsCpuQLoRA*' --gtest_brief=1 2>&1 |
  grep -E '^\[  PASSED  \]|^\[  FAILED  \]|Failure' | head -10
"$B/tests/cuda_ops_bench" --quick 2>&1 | grep -iE "dequantize4"
for i in 1 2; do
  for q in "" "--quantize nf4"; do
    "$B/fitlm" bench --arch llama-3.1-8b --recompute full --seq 2048 --micro-batch 1 --json $q 2>/dev/null |
      grep -oE '"tokens_per_s": [0-9.]+|"planned_bytes": [0-9]+|"measured_bytes": [0-9]+|"quantize": "[a-z0-9]+"' | tr '\n' ' '
    echo
  done
done
"$B/fitlm" bench --arch llama-3.1-8b --quantize nf4 --recompute full --profile 2>/dev/null |
  grep -iE "tokens/s|memory|dequantize4|embedding|gemm projections"
