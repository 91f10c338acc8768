#!/bin/bash
# Fuzzer-found JSON defects: numbers out of range (1e999, 400-digit integers), wrong JSON types
# and absurd sizes in every JSON input end as input errors (exit 2) naming the file and, where
# it has one, the field or line; never as "[internal] [json.exception...]" (exit 1).
set -uo pipefail
BIN=${FITLM_BIN:?}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
"$BIN" -q demo --dir "$T" --prepare-only || exit 1
M=$T/tiny-llama-random
BIG=$(printf '9%.0s' $(seq 400))
EXPECT_MAX_BYTES=2000 EXPECT_TIMEOUT=60
source "$(dirname "$0")/../tools/expect_input_error.sh"
# model NAME PYTHON: a copy of the demo model with PYTHON run on it (d = its directory).
model() {
  rm -rf "$T/$1"; cp -r "$M" "$T/$1"
  python3 - "$T/$1" <<EOF || { echo "FAIL: python for $1"; exit 1; }
import json, os, struct, sys
d = sys.argv[1]
def load(f): return json.load(open(os.path.join(d, f)))
def save(f, j): open(os.path.join(d, f), "w").write(json.dumps(j))
def patch(f, old, new):
    p = os.path.join(d, f); s = open(p).read(); assert old in s, (f, old); open(p, "w").write(s.replace(old, new, 1))
$2
EOF
}
D=$T/rows.jsonl
printf '{"input_ids": [1, 2, 3, 4]}\n' > "$D"

# config.json
model c1 'patch("config.json", "\"rms_norm_eps\"", "\"x\": 1e999, \"rms_norm_eps\"")'
expect "[config] $T/c1/config.json: invalid JSON: number out of range at line" -- eval --model "$T/c1" --data "$D"
model c2 "patch('config.json', '\"rms_norm_eps\"', '\"x\": $BIG, \"rms_norm_eps\"')"
expect "$T/c2/config.json: invalid JSON: number out of range" -- eval --model "$T/c2" --data "$D"
model c3 'c = load("config.json"); c["num_hidden_layers"] = 1000000000; save("config.json", c)'
expect "$T/c3/config.json: field 'num_hidden_layers' is 1000000000, more than fitlm accepts (at most 1024" -- eval --model "$T/c3" --data "$D"
model c4 'c = load("config.json"); c["vocab_size"] = 0; save("config.json", c)'
expect "$T/c4/config.json: field 'vocab_size' must be positive, found 0" -- eval --model "$T/c4" --data "$D"
model c5 'c = load("config.json"); c["hidden_size"] = "128"; save("config.json", c)'
expect "$T/c5/config.json: field 'hidden_size' must be a non-negative integer, found \"128\"" -- eval --model "$T/c5" --data "$D"
model c6 'c = load("config.json"); c["vocab_size"] = 20000000; save("config.json", c)'
expect "$T/c6/config.json: field 'vocab_size' is 20000000, more than fitlm accepts" -- eval --model "$T/c6" --data "$D"
model c7 'c = load("config.json"); c["eos_token_id"] = [1, 1e300]; c["rope_theta"] = "big"; save("config.json", c)'
expect "$T/c7/config.json: field 'rope_theta' must be a number, found \"big\"" -- eval --model "$T/c7" --data "$D"
# 1000 layers declared, 2 in the checkpoint: found before planning (which took 104 s for 1000).
model c8 'c = load("config.json"); c["num_hidden_layers"] = 1000; save("config.json", c)'
start=$(date +%s)
expect "$T/c8: tensor 'model.layers.2.input_layernorm.weight' is missing from the checkpoint" -- eval --model "$T/c8" --data "$D"
[ $(($(date +%s) - start)) -lt 20 ] || { echo "FAIL: the missing layers took $(($(date +%s) - start)) s to find"; fail=1; }

# safetensors header
model s1 'p = os.path.join(d, "model.safetensors"); b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = b[8:8 + n].decode().replace("{", "{\"x\":1e999,", 1).encode(); open(p, "wb").write(struct.pack("<Q", len(h)) + h + b[8 + n:])'
expect "[safetensors] $T/s1/model.safetensors: header is not valid UTF-8 JSON: number out of range at line 1, column 6" -- eval --model "$T/s1" --data "$D"

# tokenizer.json / tokenizer_config.json
model t1 'j = load("tokenizer.json"); j["model"]["type"] = 5; save("tokenizer.json", j)'
expect "[tokenizer] $T/t1/tokenizer.json: field model.type: expected a string, found number" -- tokenize --model "$T/t1" --text hi
model t2 'j = load("tokenizer.json"); j["model"]["vocab"]["x"] = 1000000000; save("tokenizer.json", j)'
expect "$T/t2/tokenizer.json: field model.vocab: token \"x\" has id 1000000000: expected an integer in [0, " -- tokenize --model "$T/t2" --text hi
model t3 'j = load("tokenizer.json"); j["added_tokens"][0]["id"] = 20000000; save("tokenizer.json", j)'
expect "$T/t3/tokenizer.json: field added_tokens[0].id: token \"" "has id 20000000" -- tokenize --model "$T/t3" --text hi
model t4 'patch("tokenizer.json", "\"added_tokens\"", "\"x\": 1e999, \"added_tokens\"")'
expect "$T/t4/tokenizer.json: not valid JSON: number out of range" -- tokenize --model "$T/t4" --text hi
model t5 'j = load("tokenizer_config.json"); j["eos_token"] = 5; save("tokenizer_config.json", j)'
expect "$T/t5/tokenizer_config.json: field eos_token: expected a string or {\"content\": ...}, found number" -- tokenize --model "$T/t5" --text hi
model t6 'patch("tokenizer_config.json", "{", "{\"x\": -1e999, ")'
expect "$T/t6/tokenizer_config.json: not valid JSON: number out of range" -- tokenize --model "$T/t6" --text hi
expect "$T/t6/tokenizer_config.json: not valid JSON: number out of range" -- chat-template --model "$T/t6" --messages "$D"

# --messages, tokenize --decode
model ct 'j = load("tokenizer_config.json"); j["chat_template"] = "{{ messages[0].content }}"; save("tokenizer_config.json", j)'
printf '[{"role": "user", "content": "hi", "n": 1e999}]' > "$T/msgs.json"
expect "[chat-template] $T/msgs.json: not valid JSON: number out of range at line 1, column 41" -- chat-template --model "$T/ct" --messages "$T/msgs.json"

expect "[tokenize] --decode input: not valid JSON: number out of range" -- tokenize --model "$M" --decode --text "[1, $BIG]"
expect "[tokenize] --decode input: token ids must be integers" -- tokenize --model "$M" --decode --text "[1, 2.5]"
printf '[1, 2]\n[1e999]\n' > "$T/ids.jsonl"
expect "[tokenize] $T/ids.jsonl:2: not valid JSON: number out of range" -- tokenize --model "$M" --decode --jsonl --file "$T/ids.jsonl"

# dataset rows: a row error (file:line), skippable
printf '{"input_ids": [1, 2, 3]}\n{"input_ids": [1, 1e999]}\n{"input_ids": [4, 5, 6]}\n' > "$T/bad.jsonl"
expect "[dataset] $T/bad.jsonl:2: malformed JSON: number out of range at line 1, column 19" -- data inspect "$T/bad.jsonl" --model "$M" --type pretokenized
out=$("$BIN" data inspect "$T/bad.jsonl" --model "$M" --type pretokenized --on-bad-row skip 2>&1); rc=$?
if [ $rc -ne 0 ] || ! grep -qF "rows read 3, examples 2, skipped 1 (malformed 1)" <<<"$out"; then
  echo "FAIL (rc=$rc): --on-bad-row skip must skip the out-of-range row"; echo "$out"; fail=1
fi
printf '[{"input_ids": [1, 2, 3]},\n {"input_ids": [%s]}]\n' "$BIG" > "$T/bad.json"
out=$("$BIN" data inspect "$T/bad.json" --model "$M" --type pretokenized --on-bad-row skip 2>&1); rc=$?
if [ $rc -ne 0 ] || ! grep -qF "rows read 2, examples 1, skipped 1 (malformed 1)" <<<"$out"; then
  echo "FAIL (rc=$rc): JSON array element out of range must be a skipped row"; echo "$out"; fail=1
fi
printf 'input_ids\n"[1, 1e999]"\n"[1, 2]"\n' > "$T/bad.csv"
out=$("$BIN" data inspect "$T/bad.csv" --model "$M" --type pretokenized --on-bad-row skip 2>&1); rc=$?
if [ $rc -ne 0 ] || ! grep -qF "skipped 1 (wrong_type 1)" <<<"$out"; then
  echo "FAIL (rc=$rc): CSV ids out of range must be a skipped row"; echo "$out"; fail=1
fi
printf '{"input_ids": [1, 2]}\n{"input_ids": [1, 1e999]}\n' > "$T/eval.jsonl"
expect "[data] $T/eval.jsonl:2: invalid JSON: number out of range" -- eval --model "$M" --data "$T/eval.jsonl"
printf '{"input_ids": [1, 4294967297]}\n' > "$T/eval2.jsonl"
expect "[data] $T/eval2.jsonl:1: 'input_ids' must hold token ids, found 4294967297" -- eval --model "$M" --data "$T/eval2.jsonl"

# PEFT adapter_config.json
mkdir -p "$T/ad"
printf '{"peft_type": "LORA", "r": 1e999, "target_modules": ["q_proj"]}' > "$T/ad/adapter_config.json"
expect "[adapter] $T/ad/adapter_config.json: invalid JSON: number out of range" -- eval --model "$M" --adapter "$T/ad" --data "$D"
printf '{"peft_type": "LORA", "r": "8", "target_modules": ["q_proj"]}' > "$T/ad/adapter_config.json"
expect "[adapter] $T/ad/adapter_config.json: field 'r': expected an integer in [1, 65536], found \"8\"" -- eval --model "$M" --adapter "$T/ad" --data "$D"
printf '{"peft_type": "LORA", "r": 8, "target_modules": 5}' > "$T/ad/adapter_config.json"
expect "$T/ad/adapter_config.json: field 'target_modules': expected a name or a list of them, found 5" -- eval --model "$M" --adapter "$T/ad" --data "$D"
printf '{"peft_type": 7, "r": 8, "target_modules": ["q_proj"]}' > "$T/ad/adapter_config.json"
expect "$T/ad/adapter_config.json: peft_type must be \"LORA\"" -- eval --model "$M" --adapter "$T/ad" --data "$D"
printf '{"peft_type": "LORA", "r": 8, "lora_alpha": [1], "target_modules": ["q_proj"]}' > "$T/ad/adapter_config.json"
expect "$T/ad/adapter_config.json: field 'lora_alpha': expected a number, found [1]" -- eval --model "$M" --adapter "$T/ad" --data "$D"

[ $fail -eq 0 ] && echo "bad JSON test passed"
exit $fail
