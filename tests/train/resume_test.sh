#!/bin/bash
# Resume is exact: a run killed with -9 (or stopped by SIGTERM) and resumed from its last
# checkpoint writes byte-identical adapter files to a run that never stopped.
set -euo pipefail
BIN=${FITLM_BIN:?}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
"$BIN" -q demo --dir "$T" --prepare-only
cat > "$T/cfg.yaml" <<YAML
base_model: $T/tiny-llama-random
datasets: [{path: $T/upper_train.jsonl, type: pretokenized}]
test_datasets: [{path: $T/upper_test.jsonl, type: pretokenized}]
adapter: lora
lora_r: 4
lora_alpha: 8
lora_dropout: 0.1
sequence_len: 32
sample_packing: true
micro_batch_size: 8
gradient_accumulation_steps: 2
max_steps: 24
learning_rate: 3.0e-3
warmup_steps: 2
weight_decay: 0.01
save_steps: 2
save_total_limit: 2
eval_steps: 4
logging_steps: 4
seed: 7
YAML

"$BIN" -q train "$T/cfg.yaml" --output_dir="$T/full"
test -f "$T/full/adapter_model.safetensors"

wait_for() {  # wait until path $1 exists (max ~120 s)
  for _ in $(seq 1 12000); do [ -e "$1" ] && return 0; sleep 0.01; done
  echo "timed out waiting for $1"; return 1
}

# kill -9 mid-run, then resume from the latest complete checkpoint.
"$BIN" -q train "$T/cfg.yaml" --output_dir="$T/killed" & pid=$!
wait_for "$T/killed/checkpoint-6"
kill -9 $pid; wait $pid || true
test ! -f "$T/killed/adapter_model.safetensors"
"$BIN" -q train "$T/cfg.yaml" --output_dir="$T/killed" --resume
cmp "$T/full/adapter_model.safetensors" "$T/killed/adapter_model.safetensors"
cmp "$T/full/adapter_config.json" "$T/killed/adapter_config.json"
# save_total_limit: 2 keeps only the two newest checkpoints.
test "$(ls -d "$T"/killed/checkpoint-* | wc -l)" -le 2

# SIGTERM: finish the step, checkpoint, exit 0 with a message; resume gives the same bytes.
"$BIN" train "$T/cfg.yaml" --output_dir="$T/term" 2>"$T/term.log" & pid=$!
wait_for "$T/term/checkpoint-2"
# Freeze it mid-run so the signal surely lands before the last step, then let it handle it.
kill -STOP $pid; kill -TERM $pid; kill -CONT $pid
wait $pid  # must exit 0
grep -q "interrupted" "$T/term.log"
"$BIN" -q train "$T/cfg.yaml" --output_dir="$T/term" --resume
cmp "$T/full/adapter_model.safetensors" "$T/term/adapter_model.safetensors"
# metrics.jsonl reads as one run: steps 1..16 once each.
test "$(grep -c '"loss"' "$T/term/metrics.jsonl")" -eq 24
test -s "$T/term/loss.svg"
echo "resume test passed"
