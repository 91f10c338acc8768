#!/bin/bash
# QLoRA on the CPU end to end: `adapter: qlora` quantizes the base's linear weights to NF4 on
# load and trains a LoRA adapter that lowers the loss; the same run on a base written 4-bit by
# `fitlm quantize` gives the same adapter bytes (quantize-on-load = quantize, then load). From a
# random base (loss ≈ ln 259 = 5.56) 40 steps take the loss from 5.51 to 4.96: the check is < 93%.
set -euo pipefail
BIN=${FITLM_BIN:?}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
"$BIN" -q demo --dir "$T" --prepare-only
cfg() {  # base output_dir adapter
  cat <<YAML
base_model: $1
datasets: [{path: $T/upper_train.jsonl, type: pretokenized}]
adapter: $3
lora_r: 8
lora_alpha: 16
sequence_len: 32
sample_packing: true
micro_batch_size: 8
max_steps: 40
learning_rate: 2.0e-2
warmup_steps: 2
logging_steps: 1
seed: 7
output_dir: $2
YAML
}
cfg "$T/tiny-llama-random" "$T/qlora" qlora >"$T/qlora.yaml"
"$BIN" train "$T/qlora.yaml" 2>"$T/qlora.log"
grep -q "QLoRA: the base.s linear weights are nf4" "$T/qlora.log"
test -f "$T/qlora/adapter_model.safetensors"
first=$(head -1 "$T/qlora/metrics.jsonl" | sed 's/.*"loss": *\([0-9.e+-]*\).*/\1/')
last=$(grep '"loss"' "$T/qlora/metrics.jsonl" | tail -1 | sed 's/.*"loss": *\([0-9.e+-]*\).*/\1/')
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < 0.93 * a) }' || { echo "loss $first -> $last"; exit 1; }

"$BIN" -q quantize --model "$T/tiny-llama-random" --out "$T/base-nf4"
cfg "$T/base-nf4" "$T/prequant" lora >"$T/prequant.yaml"
"$BIN" -q train "$T/prequant.yaml"
cmp "$T/qlora/adapter_model.safetensors" "$T/prequant/adapter_model.safetensors"

# QLoRA keys are checked like every other key.
cfg "$T/tiny-llama-random" "$T/bad" full >"$T/bad.yaml"
echo "load_in_4bit: true" >>"$T/bad.yaml"
set +e
"$BIN" train "$T/bad.yaml" 2>"$T/bad.log"; rc=$?
set -e
test $rc -eq 2
grep -q "load_in_4bit needs adapter: lora or qlora" "$T/bad.log"
echo "qlora train test passed"
