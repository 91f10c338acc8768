#!/usr/bin/env bash
# Issue 12 on one GPU (the kind lent when no 2-GPU machine is): the CUDA build with NCCL linked,
# the complete CUDA test binary, NcclComm's checks at one rank, and the refactored trainer on
# CUDA — two QLoRA trainings byte-identical, kill -9 after checkpoint-10 + --resume equal to the
# uninterrupted run, and `--strategy zero3` / `zero2` at one rank equal to the plain run.
#   run: carry [".debs"], command: bash scripts/device/dist-one-gpu.sh
set -uo pipefail
start=$(date +%s)
FITLM_DEVICE_TARGETS="fitlm fitlm_cuda_tests nccl_comm_check" \
  bash scripts/device/build.sh build-device >/tmp/d1-build.log 2>&1 || { tail -40 /tmp/d1-build.log; exit 1; }
echo "build: $(($(date +%s) - start)) s"
B=$PWD/build-device
export LD_LIBRARY_PATH=/opt/fitlm-deps/usr/lib/x86_64-linux-gnu:/opt/fitlm-deps/usr/lib/x86_64-linux-gnu/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1
echo "== fitlm_cuda_tests (all)"
"$B/tests/fitlm_cuda_tests" --gtest_brief=1 2>&1 | grep -E '^\[  PASSED  \]|^\[  FAILED  \]|tests ran' | head -12
echo "== nccl_comm_check, one rank"
timeout 300 "$B/tests/nccl_comm_check" --seed 12 2>&1 | tail -3
echo "== trainer on CUDA"
W=/tmp/d1; rm -rf "$W"; mkdir -p "$W"
"$B/fitlm" -q demo --dir "$W/d" --prepare-only
for run in a b c z2 z3; do
  cat >"$W/$run.yaml" <<YAML
base_model: $W/d/tiny-llama-random
datasets: [{path: $W/d/upper_train.jsonl, type: pretokenized}]
adapter: qlora
lora_r: 8
lora_alpha: 16
sequence_len: 64
sample_packing: true
micro_batch_size: 4
max_steps: 20
learning_rate: 1.0e-3
save_steps: 10
logging_steps: 5
seed: 7
backend: cuda
bf16: true
output_dir: $W/$run
YAML
done
"$B/fitlm" -q train "$W/a.yaml" 2>/dev/null; "$B/fitlm" -q train "$W/b.yaml" 2>/dev/null
cmp "$W/a/adapter_model.safetensors" "$W/b/adapter_model.safetensors" && echo "two runs: adapters identical"
cmp "$W/a/checkpoint-10/trainable.safetensors" "$W/b/checkpoint-10/trainable.safetensors" && echo "two runs: checkpoints identical"
"$B/fitlm" -q train "$W/z2.yaml" --strategy=zero2 2>/dev/null
"$B/fitlm" -q train "$W/z3.yaml" --strategy=zero3 2>/dev/null
cmp "$W/a/adapter_model.safetensors" "$W/z2/adapter_model.safetensors" && echo "zero2 at one rank: identical"
cmp "$W/a/adapter_model.safetensors" "$W/z3/adapter_model.safetensors" && echo "zero3 at one rank: identical"
"$B/fitlm" -q train "$W/c.yaml" 2>/dev/null &
pid=$!
while [ ! -d "$W/c/checkpoint-10" ] && kill -0 $pid 2>/dev/null; do sleep 0.02; done
kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
"$B/fitlm" -q train "$W/c.yaml" --resume 2>/dev/null
cmp "$W/a/adapter_model.safetensors" "$W/c/adapter_model.safetensors" && echo "kill -9 + resume: adapter identical"
echo "total: $(($(date +%s) - start)) s"
