#!/bin/bash
# ZeRO-2 optimizer sharding on CPU ranks (src/fitlm/dist/zero2.h): `--strategy=zero2` with N
# ranks trains what one process trains with N× the gradient accumulation — LoRA on 2 and 3
# ranks, full fine-tuning and QLoRA with gradient checkpointing on 2 — every saved tensor equal
# to f32 rounding (the global gradient norm is summed in another order). Checkpoints hold one
# optimizer file per rank and no whole optimizer state; resuming one with the same ranks gives
# the uninterrupted run's bytes; a checkpoint missing a rank's file, or resumed with another
# number of ranks or another strategy, is refused (exit 2) with an error that says so.
# `strategy: auto` with max_memory takes the planner's fastest candidate that fits the caps, at the
# same sequences per step.
set -euo pipefail
# shellcheck source=train_test_lib.sh
source "$(dirname "$0")/train_test_lib.sh"

run one2 lora 2 1
run z2 lora 1 2 --strategy=zero2
grep -q "data parallel (zero2) over 2 ranks" "$T/z2.log"
compare "$T/one2/adapter_model.safetensors" "$T/z2/adapter_model.safetensors"
# The checkpoint: one optimizer file per rank, each with that rank's block (half) of the state.
ck=$T/z2/checkpoint-3
test -f "$ck/optimizer-rank-0-of-2.safetensors"
test -f "$ck/optimizer-rank-1-of-2.safetensors"
test ! -e "$ck/optimizer_m.safetensors"
test ! -e "$ck/trainable.safetensors"
grep -q '"optimizer_shards": 2' "$ck/trainer_state.json"
compare "$T/one2/checkpoint-3/adapter_model.safetensors" "$ck/adapter_model.safetensors"
/usr/bin/python3 - "$ck" <<'PY'
import json, os, struct, sys
def sizes(path):
    with open(path, "rb") as f:
        h = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
    return {k: v["shape"][0] for k, v in h.items() if k != "__metadata__"}
a, b = (sizes(os.path.join(sys.argv[1], f"optimizer-rank-{r}-of-2.safetensors")) for r in (0, 1))
total = {k: a[k] + b[k] for k in a}
for k in a:
    assert a[k] == (total[k] + 1) // 2, (k, a[k], total[k])  # rank 0: ceil(n / 2)
print("optimizer blocks:", {k: (a[k], b[k]) for k in a})
PY

run one3 lora 3 1
run z3r lora 1 3 --strategy=zero2
compare "$T/one3/adapter_model.safetensors" "$T/z3r/adapter_model.safetensors"
run full1 full 2 1
run full2 full 1 2 --strategy=zero2
compare "$T/full1/model.safetensors" "$T/full2/model.safetensors"
# strategy: auto with a cap per rank that ddp's plan (6.60 MiB) is over: the planner takes zero2
# or a pipeline (zero3 does not shard full fine-tuning), at the 4 sequences per step ddp would
# train, so it trains what zero2 trains (to f32 rounding); under every plan it is exit 3.
run auto full 1 2 --strategy=auto --max_memory=6.3MiB
grep -Eq "strategy auto took (zero2|pipeline) mb 2 × [12], recompute none, offload none, f32" "$T/auto.log"
compare "$T/full2" "$T/auto"
rc=0
"$BIN" train "$T/auto.yaml" --nproc 2 --strategy=auto --max_memory=3MiB 2>"$T/auto3.log" || rc=$?
if [ $rc -ne 3 ]; then echo "FAIL: auto under every plan: exit $rc, expected 3"; cat "$T/auto3.log"; exit 1; fi
grep -q "strategy: auto: no configuration of LlamaForCausalLM fits max_memory 3.00 MiB" "$T/auto3.log"
# One cap per GPU: each GPU's candidate plans must fit its own cap; a list that does not match
# the ranks is exit 2.
run autol full 1 2 --strategy=auto "--max_memory=[7MiB, 6.3MiB]"
grep -q "max_memory: 2 caps" "$T/autol.log"
grep -q "strategy auto took" "$T/autol.log"
# micro_batch_size: auto keeps global_batch_size (8 sequences per step) whatever it picks.
sed 's/^micro_batch_size: 2$/micro_batch_size: auto\nglobal_batch_size: 8/; /^gradient_accumulation_steps/d; s|/auto$|/mbauto|' \
  "$T/auto.yaml" >"$T/mbauto.yaml"
"$BIN" train "$T/mbauto.yaml" --nproc 2 --max_memory=8MiB 2>"$T/mbauto.log" || { cat "$T/mbauto.log"; exit 1; }
grep -Eq "strategy/micro_batch_size auto took [a-z0-9]+ mb ([0-9]+) × ([0-9]+)" "$T/mbauto.log"
/usr/bin/python3 - "$T/mbauto.log" <<'PY'
import re, sys
log = open(sys.argv[1]).read()
s, mb, k = re.search(r"auto took (\w+) mb (\d+) × (\d+)", log).groups()
per_step = int(mb) * int(k) * (1 if s == "pipeline" else 2)
assert per_step == 8, (s, mb, k, per_step)
print("micro_batch_size auto:", s, mb, "x", k)
PY
test -f "$T/mbauto/model.safetensors.index.json" -o -f "$T/mbauto/model.safetensors"
expect_refusal caps "max_memory lists 3 caps, but this node runs 2 ranks" \
  "$T/auto.yaml" --nproc 2 "--max_memory=[7MiB, 7MiB, 7MiB]"
run q1 qlora 2 1
run q2 qlora 1 2 --strategy=zero2
compare "$T/q1/adapter_model.safetensors" "$T/q2/adapter_model.safetensors"

# Resume from checkpoint-3 of a finished 2-rank run: the same bytes as the run itself.
cp -r "$T/full2" "$T/full2r"
rm -f "$T/full2r/model.safetensors"
sed "s|$T/full2\$|$T/full2r|" "$T/full2.yaml" >"$T/full2r.yaml"
"$BIN" -q train "$T/full2r.yaml" --nproc 2 --strategy=zero2 \
  --resume "$T/full2r/checkpoint-3" 2>"$T/full2r.log" || { cat "$T/full2r.log"; exit 1; }
cmp "$T/full2/model.safetensors" "$T/full2r/model.safetensors"

expect_refusal ranks "holds the optimizer state of 2 ranks (zero2), this run shards it over 3" \
  "$T/full2r.yaml" --nproc 3 --strategy=zero2 --resume "$T/full2r/checkpoint-3"
expect_refusal ddp "holds the optimizer state of 2 ranks (zero2), this run keeps it whole" \
  "$T/full2r.yaml" --nproc 2 --resume "$T/full2r/checkpoint-3"
rm "$T/full2r/checkpoint-3/optimizer-rank-1-of-2.safetensors"
expect_refusal missing "rank 1 of the 2 ranks that wrote it is missing its optimizer state" \
  "$T/full2r.yaml" --nproc 2 --strategy=zero2 --resume "$T/full2r/checkpoint-3"
echo "zero2 train test passed"
