#!/usr/bin/env bash
# The final-code check for issue 11 in one short device call: the dequantize4 and QLoRA CUDA
# tests, then two CUDA QLoRA trainings (tiny model, checkpoint at 10) compared byte for byte and
# a kill -9 after checkpoint-10 + --resume compared with the uninterrupted run.
#   run: carry [".debs"], command: bash scripts/device/qlora-final.sh
set -uo pipefail
bash scripts/device/build.sh build-device >/tmp/qf-build.log 2>&1 || { tail -40 /tmp/qf-build.log; exit 1; }
B=$PWD/build-device
export LD_LIBRARY_PATH=/opt/fitlm-deps/usr/lib/x86_64-linux-gnu:/opt/fitlm-deps/usr/lib/x86_64-linux-gnu/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
"$B/tests/fitlm_cuda_tests" --gtest_filter='CudaDequant4*:ModelVsCpuQLoRA*' --gtest_brief=1 2>&1 |
  grep -E '^\[  PASSED  \]|^\[  FAILED  \]|Failure' | head -10
W=/tmp/qf; rm -rf "$W"; mkdir -p "$W"
"$B/fitlm" -q demo --dir "$W/d" --prepare-only
for run in a b c; do
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
"$B/fitlm" -q train "$W/c.yaml" 2>/dev/null &
pid=$!
while [ ! -d "$W/c/checkpoint-10" ] && kill -0 $pid 2>/dev/null; do sleep 0.02; done
kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
rm -rf "$W"/c/checkpoint-20
"$B/fitlm" -q train "$W/c.yaml" --resume 2>/dev/null
cmp "$W/a/adapter_model.safetensors" "$W/c/adapter_model.safetensors" && echo "kill -9 + resume: adapter identical"
