#!/bin/bash
# ZeRO-3 on CPU ranks (src/fitlm/dist/zero3.h): `--strategy=zero3` with N ranks — each keeping
# its bytes of every layer's frozen weights and gathering a layer before it runs — trains what
# one process trains with N× the gradient accumulation: LoRA on 2 and 3 ranks, QLoRA (the base
# quantized to NF4 on load, so the packed bytes and absmax are what is sharded) with gradient
# checkpointing on 2; every saved tensor equal to f32 rounding. Resuming a zero3 checkpoint
# gives the uninterrupted run's bytes. Full fine-tuning with zero3 is refused (exit 2).
set -euo pipefail
# shellcheck source=train_test_lib.sh
source "$(dirname "$0")/train_test_lib.sh"

run one2 lora 2 1
run z2 lora 1 2 --strategy=zero3
grep -q "data parallel (zero3) over 2 ranks" "$T/z2.log"
compare "$T/one2/adapter_model.safetensors" "$T/z2/adapter_model.safetensors"
test -f "$T/z2/checkpoint-3/optimizer-rank-1-of-2.safetensors"
run one3 lora 3 1
run z3 lora 1 3 --strategy=zero3
compare "$T/one3/adapter_model.safetensors" "$T/z3/adapter_model.safetensors"
run q1 qlora 2 1
run q2 qlora 1 2 --strategy=zero3
compare "$T/q1/adapter_model.safetensors" "$T/q2/adapter_model.safetensors"

# Resume from checkpoint-3 of a finished zero3 run: the same bytes as the run itself.
cp -r "$T/q2" "$T/q2r"
rm -f "$T/q2r/adapter_model.safetensors"
sed "s|$T/q2\$|$T/q2r|" "$T/q2.yaml" >"$T/q2r.yaml"
"$BIN" -q train "$T/q2r.yaml" --nproc 2 --strategy=zero3 --resume "$T/q2r/checkpoint-3" \
  2>"$T/q2r.log" || { cat "$T/q2r.log"; exit 1; }
cmp "$T/q2/adapter_model.safetensors" "$T/q2r/adapter_model.safetensors"

cfg full 1 "$T/full" >"$T/full.yaml"
expect_refusal full "full fine-tuning shards with zero2" "$T/full.yaml" --nproc 2 --strategy=zero3
echo "zero3 train test passed"
