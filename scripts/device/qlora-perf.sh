#!/usr/bin/env bash
# Quick QLoRA throughput check on the device: the dequantize4 bandwidth (cuda_ops_bench), then
# Llama-3.1-8B 16-bit LoRA and NF4 QLoRA (full recompute, seq 2048, micro-batch 1) in one call,
# and the QLoRA step profiled. Output on stdout only.
#   run: carry [".debs"], command: bash scripts/device/qlora-perf.sh
set -uo pipefail
bash scripts/device/build.sh build-device >/tmp/qp-build.log 2>&1 || { tail -40 /tmp/qp-build.log; exit 1; }
B=$PWD/build-device
export LD_LIBRARY_PATH=/opt/fitlm-deps/usr/lib/x86_64-linux-gnu:/opt/fitlm-deps/usr/lib/x86_64-linux-gnu/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
"$B/cuda_ops_bench" --quick >/tmp/qp-ops.txt 2>&1; echo "ops bench rc $?"
grep -iE "dequantize4|error|device" /tmp/qp-ops.txt | head -5
for q in "" "--quantize nf4"; do
  "$B/fitlm" bench --arch llama-3.1-8b --recompute full --seq 2048 --micro-batch 1 --json $q 2>/dev/null
done
"$B/fitlm" bench --arch llama-3.1-8b --quantize nf4 --recompute full --profile 2>/dev/null |
  grep -iE "tokens/s|memory|dequantize4|upload|embedding|gemm projections"
