#!/bin/bash
# `fitlm random-model`: a preset's model directory with random weights that fitlm loads and
# trains on pretokenized rows; its plan is the preset's; the same seed writes the same bytes and
# another seed other ones; linear weights have standard deviation 0.02 and mean 0, norms are 1.
set -euo pipefail
BIN=${FITLM_BIN:?}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
"$BIN" random-model --arch tiny --out "$T/a" >/dev/null
"$BIN" random-model --arch tiny --out "$T/b" >/dev/null
"$BIN" random-model --arch tiny --out "$T/c" --seed 2 >/dev/null
cmp "$T/a/model.safetensors" "$T/b/model.safetensors"
if cmp -s "$T/a/model.safetensors" "$T/c/model.safetensors"; then
  echo "FAIL: seeds 1 and 2 wrote the same weights"; exit 1
fi
test "$("$BIN" plan --model "$T/a" | tail -1)" = "$("$BIN" plan --arch tiny | tail -1)"
/usr/bin/python3 - "$T/a/model.safetensors" <<'PY'
import json, struct, sys
with open(sys.argv[1], "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    header = json.loads(f.read(n))
    data = f.read()
def values(name):  # bf16 -> float
    b, e = header[name]["data_offsets"]
    raw = struct.unpack(f"<{(e - b) // 2}H", data[b:e])
    return [struct.unpack("<f", struct.pack("<I", h << 16))[0] for h in raw]
w = values("model.layers.0.mlp.gate_proj.weight")
mean = sum(w) / len(w)
std = (sum((x - mean) ** 2 for x in w) / len(w)) ** 0.5
assert abs(mean) < 0.002 and abs(std - 0.02) < 0.002, (mean, std)
assert set(values("model.layers.0.input_layernorm.weight")) == {1.0}
print(f"gate_proj: mean {mean:.5f}, std {std:.5f} over {len(w)} values")
PY
/usr/bin/python3 -c "
import json
with open('$T/rows.jsonl', 'w') as f:
    for i in range(8):
        f.write(json.dumps({'input_ids': [(7 * i + j) % 250 + 1 for j in range(40)]}) + '\n')"
cat >"$T/c.yaml" <<YAML
base_model: $T/a
datasets: [{path: $T/rows.jsonl, type: pretokenized}]
adapter: lora
lora_r: 4
sequence_len: 64
micro_batch_size: 2
max_steps: 2
output_dir: $T/out
YAML
"$BIN" -q train "$T/c.yaml" >/dev/null 2>&1
test -f "$T/out/adapter_model.safetensors"
rc=0
"$BIN" random-model --arch nonesuch --out "$T/x" 2>"$T/err" || rc=$?
if [ $rc -ne 2 ] || ! grep -q "llama-3.1-8b" "$T/err"; then
  echo "FAIL: an unknown preset should be exit 2 listing the presets (rc=$rc)"; cat "$T/err"; exit 1
fi
echo "random model test passed"
