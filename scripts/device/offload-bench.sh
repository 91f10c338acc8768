#!/usr/bin/env bash
# Issue 13, parameter offload on one GPU: the CUDA build; the CUDA test that offloaded layers
# compute exactly what resident ones do; the trainer with `offload: [weights]` byte-identical to
# the resident run; then Llama-3.1-8B shapes (LoRA r16 on all seven projections, seq 2048, full
# recompute) resident against offloaded, 16-bit and NF4, micro-batch 1 and 4; and
# Llama-3.1-70B NF4 QLoRA resident against offloaded.
#   run: carry [".debs"], command: bash scripts/device/offload-bench.sh [part]
# part: all (default), 8b (tests and 8B benches), 70b, opt (optimizer offload: trainer,
# Llama-3.2-1B and -3.1-8B full fine-tuning, 8B LoRA), or act (activation offload: its CUDA
# test, the trainer, 8B LoRA at seq 2048, 16384 and 32768 resident against offloaded, and 8B
# QLoRA at 32768 with weights and activations offloaded). FITLM_REUSE_BUILD=1 keeps a build made
# by an earlier call of this session. Results on stdout; logs under /tmp/fitlm-offload.
set -uo pipefail
PART=${1:-all}
OUT=/tmp/fitlm-offload
mkdir -p "$OUT"
start=$(date +%s)
FITLM_DEVICE_TARGETS="fitlm fitlm_cuda_tests" bash scripts/device/build.sh build-device \
  >"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
echo "build: $(($(date +%s) - start)) s"
B=$PWD/build-device
export LD_LIBRARY_PATH=/opt/fitlm-deps/usr/lib/x86_64-linux-gnu:/opt/fitlm-deps/usr/lib/x86_64-linux-gnu/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1
grep MemTotal /proc/meminfo
bench() {  # name, args...
  local name=$1; shift
  "$B/fitlm" bench --recompute full --seq 2048 --json "$@" \
    >"$OUT/bench-$name.json" 2>"$OUT/bench-$name.log"
  echo "$name rc $?: $(cat "$OUT/bench-$name.json")"
}
# train_pair DIR ADAPTER CLASSES EXTRA: the tiny demo model trained on CUDA twice, resident and
# with `offload: [CLASSES]` (EXTRA: more YAML lines); says whether the outputs are identical.
train_pair() {
  local w=$1 adapter=$2 classes=$3 extra=$4 run f=adapter_model.safetensors
  [ -d "$w/d" ] || "$B/fitlm" -q demo --dir "$w/d" --prepare-only
  for run in resident offloaded; do
    cat >"$w/$adapter-$run.yaml" <<YAML
base_model: $w/d/tiny-llama-random
datasets: [{path: $w/d/upper_train.jsonl, type: pretokenized}]
adapter: $adapter
sequence_len: 64
sample_packing: true
micro_batch_size: 4
max_steps: 20
learning_rate: 1.0e-4
save_steps: 10
logging_steps: 5
seed: 7
backend: cuda
bf16: true
output_dir: $w/$adapter-$run
$extra
YAML
    [ $run = offloaded ] && echo "offload: [$classes]" >>"$w/$adapter-$run.yaml"
    "$B/fitlm" -q train "$w/$adapter-$run.yaml" 2>"$w/$adapter-$run.log" || tail -5 "$w/$adapter-$run.log"
  done
  [ "$adapter" = full ] && f=model.safetensors
  cmp "$w/$adapter-resident/$f" "$w/$adapter-offloaded/$f" &&
    echo "$adapter, offload [$classes]: identical to the resident run"
}
if [ "$PART" = all ] || [ "$PART" = 8b ]; then
  echo "== CUDA tests: offload, model vs CPU"
  "$B/tests/fitlm_cuda_tests" --gtest_brief=1 --gtest_filter='CudaOffload*:ModelVsCpu*' 2>&1 |
    grep -E '^\[  PASSED  \]|^\[  FAILED  \]|Failure|tests ran' | head -12
  echo "== trainer: offload: [weights] against resident, QLoRA and LoRA on CUDA"
  W=/tmp/fitlm-offload/train; rm -rf "$W"; mkdir -p "$W"
  for adapter in qlora lora; do
    train_pair "$W" $adapter weights "gradient_checkpointing: true
lora_r: 8
lora_alpha: 16"
  done
  echo "== 8B benches"
  bench 8b-lora-resident --arch llama-3.1-8b
  bench 8b-lora-offload --arch llama-3.1-8b --offload-weights
  bench 8b-lora-mb4-resident --arch llama-3.1-8b --micro-batch 4
  bench 8b-lora-mb4-offload --arch llama-3.1-8b --micro-batch 4 --offload-weights
  bench 8b-qlora-resident --arch llama-3.1-8b --quantize nf4
  bench 8b-qlora-offload --arch llama-3.1-8b --quantize nf4 --offload-weights
fi
if [ "$PART" = all ] || [ "$PART" = 70b ]; then
  echo "== 70B QLoRA"
  bench 70b-qlora-resident --arch llama-3.1-70b --quantize nf4 --steps 2 --warmup 1
  bench 70b-qlora-offload --arch llama-3.1-70b --quantize nf4 --offload-weights --steps 2 --warmup 1
  grep -h "host memory" "$OUT"/bench-70b-*.log | head -2
fi
if [ "$PART" = all ] || [ "$PART" = opt ]; then
  echo "== optimizer offload: trainer, full fine-tuning and LoRA, against resident"
  W=/tmp/fitlm-offload/opt; rm -rf "$W"; mkdir -p "$W"
  for adapter in full lora; do train_pair "$W" $adapter optimizer ""; done
  bench 1b-full-resident --arch llama-3.2-1b --mode full
  bench 1b-full-offopt --arch llama-3.2-1b --mode full --offload-optimizer
  bench 8b-lora-offopt --arch llama-3.1-8b --offload-optimizer
  bench 8b-full-offopt --arch llama-3.1-8b --mode full --offload-optimizer --steps 3 --warmup 1
  bench 8b-full-resident --arch llama-3.1-8b --mode full --steps 3 --warmup 1
  tail -2 "$OUT/bench-8b-full-resident.log"
fi
if [ "$PART" = all ] || [ "$PART" = act ]; then
  echo "== activation offload: CUDA test, trainer, long-context benches"
  "$B/tests/fitlm_cuda_tests" --gtest_brief=1 --gtest_filter='CudaOffloadActivations*' 2>&1 |
    grep -E '^\[  PASSED  \]|^\[  FAILED  \]|Failure|tests ran' | head -12
  W=/tmp/fitlm-offload/act; rm -rf "$W"; mkdir -p "$W"
  train_pair "$W" lora activations "gradient_checkpointing: true"
  train_pair "$W" full activations ""
  bench 8b-lora-2k-resident --arch llama-3.1-8b
  bench 8b-lora-2k-offact --arch llama-3.1-8b --offload-activations
  for seq in 16384 32768; do
    long="--recompute full --seq $seq --json --steps 3 --warmup 1"
    for what in resident offact; do
      extra=""; [ $what = offact ] && extra=--offload-activations
      # shellcheck disable=SC2086
      "$B/fitlm" bench --arch llama-3.1-8b $long $extra >"$OUT/bench-8b-$seq-$what.json" \
        2>"$OUT/bench-8b-$seq-$what.log"
      echo "8b-lora-$seq-$what rc $?: $(cat "$OUT/bench-8b-$seq-$what.json")"
    done
  done
  # shellcheck disable=SC2086
  "$B/fitlm" bench --arch llama-3.1-8b --quantize nf4 --recompute full --seq 32768 --json \
    --steps 3 --warmup 1 --offload-weights --offload-activations >"$OUT/bench-8b-q32k.json" \
    2>"$OUT/bench-8b-q32k.log"
  echo "8b-qlora-32768-offload-weights-activations rc $?: $(cat "$OUT/bench-8b-q32k.json")"
  grep -h "host memory" "$OUT"/bench-8b-32768-offact.log "$OUT/bench-8b-q32k.log" | head -2
fi
echo "total: $(($(date +%s) - start)) s"
