#!/bin/bash
# `--quantize` on the commands that plan or load a model (a 4-bit base, dequantized per layer):
# plan lists the packed buffers and the one dequantized layer and refuses full fine-tuning;
# bench runs a QLoRA step on the CPU in a smaller plan than 16-bit LoRA; generate and eval run
# on a base quantized on load and on one written 4-bit by `fitlm quantize`, with equal results;
# a 4-bit directory asked for the other quant type is an input error.
set -euo pipefail
BIN=${FITLM_BIN:?}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

"$BIN" plan --arch tiny --quantize nf4 --recompute full --buffers >"$T/plan.txt"
grep -q "on a nf4 base" "$T/plan.txt"
grep -qE "weights.4bit .*u8 .*model.layers.0.mlp.down_proj.weight$" "$T/plan.txt"
grep -qE "weights.4bit .*model.layers.1.self_attn.q_proj.weight.nested_absmax$" "$T/plan.txt"
grep -qE "dequant .*base4.layer$" "$T/plan.txt"
! grep -q "model.embed_tokens.weight" "$T/plan.txt"  # kept in host memory
set +e
"$BIN" plan --arch tiny --quantize nf4 --mode full 2>"$T/full.err"; rc=$?
"$BIN" plan --arch tiny --quantize nf3 2>"$T/type.err"; rc_type=$?
set -e
test $rc -eq 2
grep -q "full fine-tuning of a 4-bit base is not supported" "$T/full.err"
test $rc_type -ne 0
grep -q "nf3" "$T/type.err"

bench() { "$BIN" -q bench --arch tiny --backend cpu --seq 64 --steps 1 --warmup 1 --gemm-size 64 --json "$@"; }
bench >"$T/b16.json"
bench --quantize nf4 >"$T/b4.json"
/usr/bin/python3 - "$T/b16.json" "$T/b4.json" <<'PY'
import json, math, sys
b16, b4 = (json.loads(open(p).read()) for p in sys.argv[1:])
assert b4["quantize"] == "nf4" and b16["quantize"] == "none", (b4, b16)
assert b4["planned_bytes"] < b16["planned_bytes"], (b4["planned_bytes"], b16["planned_bytes"])
assert math.isfinite(b4["loss"]) and b4["tokens_per_s"] > 0, b4
PY

"$BIN" -q demo --dir "$T/d" --prepare-only
M=$T/d/tiny-llama-random
"$BIN" -q quantize --model "$M" --out "$T/m4"
gen() { "$BIN" -q generate --prompt-ids 1,2,3 --max-new-tokens 6 --json "$@"; }
gen --model "$M" --quantize nf4 >"$T/g_load.json"
gen --model "$T/m4" >"$T/g_pre.json"
cmp "$T/g_load.json" "$T/g_pre.json"
ev() { "$BIN" -q eval --json --data "$T/d/upper_test.jsonl" "$@"; }
ev --model "$M" --quantize nf4 >"$T/e_load.json"
ev --model "$T/m4" >"$T/e_pre.json"
cmp "$T/e_load.json" "$T/e_pre.json"
ev --model "$M" >"$T/e16.json"
! cmp -s "$T/e16.json" "$T/e_pre.json"  # 4-bit values differ from the 16-bit ones
set +e
ev --model "$T/m4" --quantize fp4 2>"$T/mismatch.err"; rc=$?
set -e
test $rc -eq 2
grep -q "already quantized as nf4; --quantize fp4 cannot change that" "$T/mismatch.err"
echo "quantize CLI test passed"
