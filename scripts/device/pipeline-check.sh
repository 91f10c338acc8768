#!/usr/bin/env bash
# Issue 13, pipeline stages on one GPU: the CUDA build, then the CUDA tests that stages in one
# process compute exactly what the whole model does (CudaPipelineStages), the offload tests
# and the model-vs-CPU tests; then `fitlm plan --strategy pipeline` for the 2×T4 and 4×3090 jobs.
#   run: carry [".debs"], command: bash scripts/device/pipeline-check.sh
# FITLM_REUSE_BUILD=1 keeps a build made by an earlier call of this session.
set -uo pipefail
OUT=/tmp/fitlm-pipeline
mkdir -p "$OUT"
start=$(date +%s)
FITLM_DEVICE_TARGETS="fitlm fitlm_cuda_tests" bash scripts/device/build.sh build-device \
  >"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
echo "build: $(($(date +%s) - start)) s"
B=$PWD/build-device
export LD_LIBRARY_PATH=/opt/fitlm-deps/usr/lib/x86_64-linux-gnu:/opt/fitlm-deps/usr/lib/x86_64-linux-gnu/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1
"$B/tests/fitlm_cuda_tests" --gtest_brief=1 \
  --gtest_filter='CudaPipelineStages*:CudaOffload*:ModelVsCpu*' 2>&1 |
  grep -E '^\[  PASSED  \]|^\[  FAILED  \]|Failure|tests ran' | head -20
"$B/fitlm" plan --arch qwen2.5-32b --quantize nf4 --dtype f16 --recompute full \
  --strategy pipeline --nproc 2 --max-memory 15GiB
"$B/fitlm" plan --arch llama-3.1-70b --quantize nf4 --recompute full --strategy pipeline \
  --nproc 4 --max-memory 23GiB
echo "total: $(($(date +%s) - start)) s"
