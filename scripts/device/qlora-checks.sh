#!/usr/bin/env bash
# Follow-up checks for issue 11 on the device: the dequantize4 bandwidth next to a device copy,
# the attention determinism test repeated, and two QLoRA training runs on CUDA compared byte
# for byte (adapter and checkpoint). Few result files (a device call returns a limited number).
#   run: carry [".debs"], command: export OUT && bash scripts/device/qlora-checks.sh
set -uo pipefail
OUT=${OUT:-/tmp/fitlm-qlora-checks}
mkdir -p "$OUT"
LOG=$OUT/checks.log
bash scripts/device/build.sh build-device >/tmp/qc-build.log 2>&1 || { tail -40 /tmp/qc-build.log; exit 1; }
B=$PWD/build-device
export LD_LIBRARY_PATH=/opt/fitlm-deps/usr/lib/x86_64-linux-gnu:/opt/fitlm-deps/usr/lib/x86_64-linux-gnu/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
{
  "$B/tests/cuda_ops_bench" --quick 2>&1 | grep -i -A1 "dequantize4"
  "$B/tests/fitlm_cuda_tests" --gtest_filter='*CudnnAttentionDeterminism*:CudaDequant4*:*PackedCase*' \
    --gtest_repeat=3 --gtest_brief=1 2>&1 | grep -vE '^\s*$' | tail -40
  W=/tmp/qc; rm -rf "$W"; mkdir -p "$W"
  "$B/fitlm" -q demo --dir "$W/d" --prepare-only
  for run in a b; do
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
    "$B/fitlm" train "$W/$run.yaml" >"$W/$run.log" 2>&1 || { echo "train $run failed"; tail -20 "$W/$run.log"; }
  done
  grep -E "QLoRA|loss" "$W/a.log" | tail -4
  cmp "$W/a/adapter_model.safetensors" "$W/b/adapter_model.safetensors" && echo "qlora cuda adapters identical"
  cmp "$W/a/checkpoint-10/trainable.safetensors" "$W/b/checkpoint-10/trainable.safetensors" && echo "qlora cuda checkpoints identical"
} >"$LOG" 2>&1
cat "$LOG"
