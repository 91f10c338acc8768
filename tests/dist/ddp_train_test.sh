#!/bin/bash
# Data parallel on CPU ranks: `fitlm train --nproc N` (N ranks under mpirun, ddp) trains what one
# process trains with N× the gradient accumulation: the same micro-batches in the same steps,
# gradients summed across ranks in rank order. LoRA with 2 and 3 ranks, full fine-tuning and
# QLoRA (with gradient checkpointing) with 2:
# every saved tensor equals the one-process run's to f32 rounding (max |Δ| / max |x| < 1e-4),
# only rank 0 writes, and the losses logged agree. An unknown strategy is a clear error.
set -euo pipefail
# shellcheck source=train_test_lib.sh
source "$(dirname "$0")/train_test_lib.sh"

run one2 lora 2 1
run ddp2 lora 1 2
compare "$T/one2/adapter_model.safetensors" "$T/ddp2/adapter_model.safetensors"
grep -q "data parallel (ddp) over 2 ranks" "$T/ddp2.log"
test "$(grep -c '"loss"' "$T/ddp2/metrics.jsonl")" -eq 6  # one writer: one line per step
test -d "$T/ddp2/checkpoint-3"
# Per-rank memory: one line with both ranks' planned (equal: replicated) and measured bytes.
/usr/bin/python3 - "$T/ddp2/metrics.jsonl" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if "rank_planned_bytes" in l]
assert len(lines) == 1 and lines[0]["step"] == 1, lines
p = lines[0]["rank_planned_bytes"]
assert len(p) == 2 and p[0] == p[1] > 0 and len(lines[0]["rank_measured_bytes"]) == 2, lines
PY
/usr/bin/python3 - "$T/one2/metrics.jsonl" "$T/ddp2/metrics.jsonl" <<'PY'
import json, sys
a, b = ([json.loads(l)["loss"] for l in open(p) if '"loss"' in l] for p in sys.argv[1:])
assert len(a) == len(b) == 6 and all(abs(x - y) <= 1e-5 * abs(x) for x, y in zip(a, b)), (a, b)
PY
run one3 lora 3 1
run ddp3 lora 1 3
compare "$T/one3/adapter_model.safetensors" "$T/ddp3/adapter_model.safetensors"
run full1 full 2 1
run full2 full 1 2
compare "$T/full1/model.safetensors" "$T/full2/model.safetensors"
# QLoRA (the base quantized to NF4 on load) with every layer recomputed.
run q1 qlora 2 1
run q2 qlora 1 2
compare "$T/q1/adapter_model.safetensors" "$T/q2/adapter_model.safetensors"
grep -q "QLoRA: the base's linear weights are nf4" "$T/q2.log"

# An unknown strategy: a clear error, exit 2.
cfg lora 1 "$T/z4" >"$T/z4.yaml"
rc=0
"$BIN" train "$T/z4.yaml" --nproc 2 --strategy=zero4 2>"$T/z4.log" || rc=$?
if [ $rc -ne 2 ] || ! grep -q "strategy: expected auto, ddp, zero2, zero3 or pipeline, found 'zero4'" "$T/z4.log"; then
  echo "FAIL: zero4 should be refused with exit 2 (rc=$rc)"; cat "$T/z4.log"; exit 1
fi
echo "ddp train test passed"
