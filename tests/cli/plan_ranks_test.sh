#!/bin/bash
# `fitlm plan --nproc N --strategy S` prints the plan of every rank: with zero2 the f32 masters
# and AdamW moments of each rank are its block, 1/N of the single-process plan's (within the
# blocks' rounding), the weights, gradients and activations are whole; with ddp every rank holds
# the single-process plan; with zero3 (LoRA, QLoRA) also every layer's frozen weights are split,
# and full fine-tuning with zero3 is refused (exit 2).
set -euo pipefail
BIN=${FITLM_BIN:?}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
group() {  # plan-output group → bytes
  /usr/bin/python3 -c '
import re, sys
units = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}
for line in sys.stdin:
    m = re.match(r"\s+" + sys.argv[1] + r"\s+([\d.]+) (\w+)", line)
    if m:
        print(int(float(m.group(1)) * units[m.group(2)])); break
' "$1"
}
one=$("$BIN" plan --arch llama-3.2-1b --mode full --seq 512)
for n in 2 3; do
  out=$("$BIN" plan --arch llama-3.2-1b --mode full --seq 512 --nproc "$n" --strategy zero2)
  grep -q "$n ranks, strategy zero2: each keeps its block" <<<"$out"
  test "$(grep -c '^rank [0-9]*: ' <<<"$out")" -eq $((n - 1))
  for g in master optimizer; do
    a=$(group "$g" <<<"$one") b=$(group "$g" <<<"$out")
    /usr/bin/python3 -c "import sys; a, b, n = $a, $b, $n; r = b * n / a
assert abs(r - 1) < 0.01, ('$g', a, b, r); print('$g', n, 'ranks: rank 0 keeps', b, 'of', a, 'bytes')"
  done
  for g in weights grads activations; do
    test "$(group "$g" <<<"$one")" = "$(group "$g" <<<"$out")"
  done
done
ddp=$("$BIN" plan --arch llama-3.2-1b --mode full --seq 512 --nproc 2 --strategy ddp)
grep -q "every rank holds this whole plan" <<<"$ddp"
test "$(group arena <<<"$one")" = "$(group arena <<<"$ddp")"
# zero3 (LoRA, and QLoRA's 4-bit base): every layer's frozen weights split over the ranks, one
# gathered layer in their place; lm_head and norms stay whole, the embedding goes to the host.
for q in "" "--quantize nf4"; do
  # shellcheck disable=SC2086
  "$BIN" plan --arch llama-3.1-8b --seq 1024 $q --buffers >"$T/one.txt"
  # shellcheck disable=SC2086
  "$BIN" plan --arch llama-3.1-8b --seq 1024 $q --nproc 2 --strategy zero3 --buffers >"$T/z3.txt"
  grep -q "each keeps its block of the masters, AdamW moments and every layer's frozen weights" "$T/z3.txt"
  /usr/bin/python3 - "$T/one.txt" "$T/z3.txt" <<'PY'
import re, sys
def layer_bytes(text, pattern):  # sum of buffer bytes whose name matches, from --buffers lines
    units = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}
    total = 0
    for line in text.splitlines():
        m = re.match(r"\s+(\d+)\s+(\S+)\s+(\S+)\s+(\[[^\]]*\])\s+.*\s(\S+)$", line)
        if m and re.fullmatch(pattern, m.group(5)):
            dims = [int(x) for x in re.findall(r"\d+", m.group(4))]
            n = 1
            for d in dims: n *= d
            size = {"bf16": 2, "f16": 2, "f32": 4, "u8": 1, "i32": 4}[m.group(3).lower()]
            total += n * size
    return total
one, z3 = (open(p).read() for p in sys.argv[1:3])
full = layer_bytes(one, r"model\.layers\.\d+\.(self_attn|mlp)\.\w+\.weight(\.\w+)?")
shards = layer_bytes(z3, r"layers\.\d+\.shard")
gathered = layer_bytes(z3, r"shard\.layer")
assert full > 0 and shards > 0 and gathered > 0, (full, shards, gathered)
ratio = shards * 2 / full
assert 1.0 <= ratio < 1.001, ratio  # each rank: half of every layer, plus alignment padding
assert layer_bytes(z3, r"lm_head\.weight") == layer_bytes(one, r"lm_head\.weight") > 0
assert layer_bytes(z3, r"model\.embed_tokens\.weight") == 0  # in host memory over 2 ranks
print(f"zero3 over 2 ranks: layer weights {full} -> {shards} bytes per rank (+ one gathered layer, {gathered})")
PY
done
rc=0
"$BIN" plan --arch llama-3.2-1b --mode full --nproc 2 --strategy zero3 >/dev/null 2>"$T/err" || rc=$?
if [ $rc -ne 2 ] || ! grep -q "full fine-tuning shards with zero2" "$T/err"; then
  echo "FAIL: full fine-tuning with zero3 should be refused with exit 2 (rc=$rc)"; cat "$T/err"; exit 1
fi
# pipeline: the layers split over the stages so that each fits its cap (Kaggle's 2×T4: a 32B
# QLoRA in fp16 under 15 GiB per GPU), one activation slot per micro-batch in flight; a 70B does
# not fit two such GPUs (exit 3, saying what an even split needs); caps must match the stages.
out=$("$BIN" plan --arch qwen2.5-32b --quantize nf4 --dtype f16 --recompute full \
  --strategy pipeline --nproc 2 --max-memory 15GiB)
grep -q "pipeline over 2 stages, 8 micro-batches per step" <<<"$out"
grep -q "^stage 0: layers 0-31 + embedding, 2 micro-batches in flight" <<<"$out"
grep -q "^stage 1: layers 32-63 + final norm, lm_head, loss, 1 micro-batch in flight" <<<"$out"
rc=0
"$BIN" plan --arch llama-3.1-70b --quantize nf4 --recompute full --strategy pipeline --nproc 2 \
  --max-memory 15GiB >"$T/p70.txt" 2>&1 || rc=$?
test $rc -eq 3
grep -q "no split of the 80 layers over 2 pipeline stages" "$T/p70.txt"
rc=0
"$BIN" plan --arch llama-3.2-1b --strategy pipeline --nproc 2 --max-memory 8GiB,8GiB,8GiB \
  >"$T/p3.txt" 2>&1 || rc=$?
test $rc -eq 2
grep -q "3 caps for 2 pipeline stages" "$T/p3.txt"
# With --gpus, an explicit --micro-batch fixes it: every candidate has that micro-batch, and one
# that is not a power of two (the search's own steps) is honoured.
"$BIN" plan --arch llama-3.2-1b --gpus 2xT4 --seq 512 --micro-batch 6 --top 0 --json >"$T/mb.json" || true
/usr/bin/python3 - "$T/mb.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
every = j["candidates"] + j["excluded"]
assert j["candidates"], "no candidate fits"
assert {k["micro_batch"] for k in every} == {6}, sorted({k["micro_batch"] for k in every})
print("--micro-batch 6 with --gpus:", len(every), "candidates, all micro-batch 6")
PY
echo "plan ranks test passed"
