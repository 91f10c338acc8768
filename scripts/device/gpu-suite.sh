#!/usr/bin/env bash
# The GPU suite (issue 10), one device call: every CUDA unit test, the whole-model CUDA-vs-CPU
# tests, the built-in demo on CUDA, and for Llama-3 / Qwen3 random models, packed and unpacked
# rows, bf16 and fp16, LoRA and full: two identical training runs compared byte for byte and a
# kill -9 after checkpoint-10 + --resume compared byte for byte with the uninterrupted run.
#   run: carry [".debs"], command: bash scripts/device/gpu-suite.sh
# Results: a table at the end of the output and $OUT/suite.md; logs under $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/fitlm-suite-out}
mkdir -p "$OUT"
bash scripts/device/build.sh build-device >"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
FITLM_BIN=$PWD/build-device/fitlm FITLM_CUDA_TESTS=$PWD/build-device/tests/fitlm_cuda_tests
export LD_LIBRARY_PATH=/opt/fitlm-deps/usr/lib/x86_64-linux-gnu:/opt/fitlm-deps/usr/lib/x86_64-linux-gnu/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
SUMMARY=$OUT/suite.md
echo "| check | result |" >"$SUMMARY"; echo "| --- | --- |" >>"$SUMMARY"
row() { echo "| $1 | $2 |" >>"$SUMMARY"; }

# 1. CUDA unit tests + whole-model CUDA-vs-CPU tests.
if [ -z "${SUITE_SKIP_UNIT:-}" ]; then
  "$FITLM_CUDA_TESTS" --gtest_brief=1 >"$OUT/cuda_tests.log" 2>&1
  rc=$?
  row "fitlm_cuda_tests: $(grep -E '^\[  PASSED  \]' "$OUT/cuda_tests.log" | head -1)" \
    "$([ $rc = 0 ] && echo pass || echo "**FAIL** (rc $rc): $(grep '^\[  FAILED  \]' "$OUT/cuda_tests.log" | head -5 | tr '\n' ' ')")"
  grep -E '^\[  PASSED  \]|^\[  FAILED  \]' "$OUT/cuda_tests.log" | tail -12
fi

W=/tmp/fitlm-suite; rm -rf "$W"; mkdir -p "$W"
# 2. The built-in demo on CUDA (tiny Llama, head_dim 32).
"$FITLM_BIN" demo --dir "$W/demo" --backend cuda >"$OUT/demo_cuda.log" 2>&1
row "fitlm demo --backend cuda" "$([ $? = 0 ] && grep -o 'accuracy after.*' "$OUT/demo_cuda.log" | head -1 || echo '**FAIL**')"

# 3. Determinism and exact resume.
"$FITLM_BIN" -q demo --dir "$W/tok" --prepare-only >/dev/null
python3 scripts/device/make_models.py "$W/models" "$W/tok/tiny-llama-random" || exit 1
config() {  # model packing dtype adapter outdir
  local dtype_key=bf16; [ "$3" = fp16 ] && dtype_key=fp16
  cat <<YAML
base_model: $W/models/$1
datasets: [{path: $W/models/train.jsonl, type: pretokenized}]
adapter: $4
lora_r: 16
lora_alpha: 32
lora_dropout: 0.05
sequence_len: 256
sample_packing: $2
micro_batch_size: 1
gradient_accumulation_steps: 2
max_steps: 20
learning_rate: 1.0e-3
warmup_steps: 2
max_grad_norm: 1.0
save_steps: 10
logging_steps: 5
seed: 7
backend: cuda
$dtype_key: true
output_dir: $5
YAML
}
wait_for() { for _ in $(seq 1 6000); do [ -e "$1" ] && return 0; sleep 0.02; done; return 1; }
same_dirs() {  # every file of the final output and of checkpoint-20 (loss curve plots aside)
  local a=$1 b=$2 f
  for f in $(cd "$a" && find . -type f ! -name '*.svg' ! -name '*.log' ! -name 'metrics.jsonl' | sort); do
    cmp -s "$a/$f" "$b/$f" || { echo "differs: $f"; return 1; }
  done
}
for model in llama3 qwen3; do
  # kernels: packed rows with FITLM_ATTENTION=kernels (fitlm's flash-attention kernels only).
  for pack in true kernels false; do
    for dt in bf16 fp16; do
      for adapter in lora full; do
        [ "$adapter" = full ] && [ "$model" = qwen3 ] && continue  # full: Llama only
        name="$model packing=$pack $dt $adapter"
        d=$W/runs/$model-$pack-$dt-$adapter; mkdir -p "$d"
        config $model "$([ $pack = false ] && echo false || echo true)" $dt $adapter "$d/a" >"$d/cfg.yaml"
        if [ $pack = kernels ]; then export FITLM_ATTENTION=kernels; else unset FITLM_ATTENTION; fi
        log=$d/train.log
        "$FITLM_BIN" train "$d/cfg.yaml" --output_dir="$d/a" >"$log" 2>&1 || { row "$name" "**run failed** (see $(basename $log))"; continue; }
        "$FITLM_BIN" -q train "$d/cfg.yaml" --output_dir="$d/b" >>"$log" 2>&1
        twice=$(same_dirs "$d/a" "$d/b" && echo yes || echo "**no** ($(same_dirs "$d/a" "$d/b"))")
        "$FITLM_BIN" -q train "$d/cfg.yaml" --output_dir="$d/k" >>"$log" 2>&1 & pid=$!
        wait_for "$d/k/checkpoint-10" && kill -9 $pid; wait $pid 2>/dev/null
        if [ -e "$d/k/checkpoint-20" ] || [ -e "$d/k/adapter_model.safetensors" ] || [ -e "$d/k/model.safetensors" ]; then
          row "$name" "**kill -9 came after the run had finished: resume not tested**"; continue
        fi
        "$FITLM_BIN" -q train "$d/cfg.yaml" --output_dir="$d/k" --resume >>"$log" 2>&1
        resumed=$(same_dirs "$d/a" "$d/k" && echo yes || echo "**no** ($(same_dirs "$d/a" "$d/k"))")
        cudnn=$(grep -c 'attention: cuDNN' "$log"); fallback=$(grep -c "using fitlm's kernels" "$log")
        row "$name: two runs identical / kill -9 + resume identical" "$twice / $resumed (cuDNN plans: $cudnn, refusals: $fallback)"
        { echo "== $name"; grep -E 'attention|warn|error|step +(10|20)' "$log" | head -20; } >>"$OUT/train.log"
      done
    done
  done
done
echo; cat "$SUMMARY"
