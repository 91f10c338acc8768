#!/bin/bash
# Bad configs fail before training with exit code 2 and a message naming the problem.
set -uo pipefail
BIN=${FITLM_BIN:?}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
"$BIN" -q demo --dir "$T" --prepare-only || exit 1
M=$T/tiny-llama-random
D=$T/upper_train.jsonl
fail=0
expect() {  # expect "substring" -- args...
  local want=$1; shift
  out=$("$BIN" train "$@" 2>&1); rc=$?
  if [ $rc -ne 2 ] || ! grep -qF -- "$want" <<<"$out"; then
    echo "FAIL (rc=$rc, want '$want'): $*"; echo "$out"; fail=1
  fi
  if ls "$T"/out*/checkpoint-* >/dev/null 2>&1; then echo "FAIL: training started"; fail=1; fi
}
printf 'base_model: %s\ndatasets: [{path: %s, type: pretokenized}]\noutput_dir: %s/out\nmax_steps: 2\n' "$M" "$D" "$T" > "$T/ok.yaml"
printf 'lerning_rate: 1e-4\n' | cat "$T/ok.yaml" - > "$T/typo.yaml"
expect "unknown key 'lerning_rate' (did you mean 'learning_rate'?)" "$T/typo.yaml"
expect "key 'lora_r': expected an integer, found 'big'" "$T/ok.yaml" --lora_r=big
expect "dataset file '$T/missing.jsonl' does not exist" "$T/ok.yaml" "--datasets=[{path: $T/missing.jsonl, type: alpaca}]"
touch "$T/afile"
expect "output_dir '$T/afile/out' cannot be created" "$T/ok.yaml" --output_dir="$T/afile/out"
expect "has no config.json" "$T/ok.yaml" --base_model="$T"
expect "bnb_4bit_quant_type: expected nf4 or fp4" "$T/ok.yaml" --adapter=qlora --bnb_4bit_quant_type=int4
expect "unknown key 'micro_batch'" "$T/ok.yaml" --micro_batch=4
expect "gradient_checkpointing: auto needs max_memory" "$T/ok.yaml" --gradient_checkpointing=auto
expect "key 'max_memory'" "$T/ok.yaml" --max_memory=lots
# A cap below the plan: refused before training with the breakdown (exit 3, kNoFit).
out=$("$BIN" train "$T/ok.yaml" --max_memory=100KiB --output_dir="$T/out_cap" 2>&1); rc=$?
if [ $rc -ne 3 ] || ! grep -qF "the plan needs" <<<"$out" || ! grep -qF "weights" <<<"$out"; then
  echo "FAIL (rc=$rc): max_memory below the plan"; echo "$out"; fail=1
fi
# auto under a cap between the full-recompute and the no-recompute plans recomputes layers.
plan_mib() {  # the trainer's "memory plan N MiB" for the given overrides
  "$BIN" train "$T/ok.yaml" --max_steps=1 --output_dir="$T/out_plan" "$@" 2>&1 |
    sed -n 's/.*memory plan \([0-9.]*\) MiB.*/\1/p'
}
none=$(plan_mib --gradient_checkpointing=false); full=$(plan_mib --gradient_checkpointing=true)
cap=$(awk -v a="$none" -v b="$full" 'BEGIN { printf "%dKiB", (a + b) / 2 * 1024 }')
out=$("$BIN" train "$T/ok.yaml" --gradient_checkpointing=auto --max_memory="$cap" \
  --output_dir="$T/out_auto" 2>&1); rc=$?
if [ -z "$none" ] || [ -z "$full" ] || [ $rc -ne 0 ] ||
  ! grep -qE "gradient_checkpointing auto: recomputing [1-9][0-9]* of [0-9]+ layers" <<<"$out"; then
  echo "FAIL (rc=$rc, plans '$none' / '$full' MiB, cap $cap): gradient_checkpointing auto"
  echo "$out"; fail=1
fi
"$BIN" train "$T/ok.yaml" --check >/dev/null || { echo "FAIL: --check on a good config"; fail=1; }
[ $fail -eq 0 ] && echo "bad config test passed"
exit $fail
