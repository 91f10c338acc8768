#!/bin/bash
# Fuzzer-found `fitlm train` defects: over-long paths, huge values echoed whole, errors that did
# not name the file or key, pretokenized data that required tokenizer.json, and a tokenizer
# larger than the model's embedding. Each is an input error (exit 2) naming the file and key,
# in one short line; pretokenized data trains without a tokenizer.
set -uo pipefail
BIN=${FITLM_BIN:?}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
"$BIN" -q demo --dir "$T" --prepare-only || exit 1
M=$T/tiny-llama-random
D=$T/upper_train.jsonl
EXPECT_MAX_BYTES=1000 EXPECT_TIMEOUT=120
source "$(dirname "$0")/../tools/expect_input_error.sh"
cfg() {  # cfg FILE BASE_MODEL DATASET [TYPE]
  printf 'base_model: %s\ndatasets: [{path: %s, type: %s}]\noutput_dir: %s/out\nmax_steps: 1\n' \
    "$2" "$3" "${4:-pretokenized}" "$T" > "$1"
}
LONG=$(printf 'x%.0s' $(seq 300))

# 4. Paths over 255 bytes: input errors naming the key and the (clipped) path.
cfg "$T/long_data.yaml" "$M" "$T/$LONG.jsonl"
expect "[config] $T/long_data.yaml: key 'datasets':" "cannot access this path: File name too long" "xxx...xxx" -- train "$T/long_data.yaml" --check
cfg "$T/long_data_rel.yaml" "$M" "$LONG.jsonl"
expect "[config] $T/long_data_rel.yaml: key 'datasets':" "File name too long" -- train "$T/long_data_rel.yaml" --check
cfg "$T/long_model.yaml" "$T/$LONG" "$D"
expect "[config] $T/long_model.yaml: key 'base_model':" "File name too long" -- train "$T/long_model.yaml" --check
expect "[model]" "File name too long" -- eval --model "$T/$LONG" --data "$D"
expect "[tokenizer]" "File name too long" -- tokenize --model "$T/$LONG" --text hi

# 6. A 300 KB value is quoted clipped, in a short line.
cfg "$T/ok.yaml" "$M" "$D"
python3 -c "print('lr_scheduler: ' + 'z' * 300000)" | cat "$T/ok.yaml" - > "$T/huge.yaml"
expect "$T/huge.yaml: key 'lr_scheduler': expected cosine, linear or constant, found 'zzz" "zzz...zzz" -- train "$T/huge.yaml" --check
expect "command line: unknown key 'zzz" "zzz...zzz" -- train "$T/ok.yaml" --check "--$(printf 'z%.0s' $(seq 100000))=1"

expect "key 'lora_r': expected an integer, found 'zzz" -- train "$T/ok.yaml" --check --lora_r="$(printf 'z%.0s' $(seq 5000))"
# ... and an unknown dataset type names the config file and the dataset entry.
cfg "$T/type.yaml" "$M" "$D" oasst
expect "[config] $T/type.yaml: key 'datasets[0].type': unknown dataset type 'oasst': expected alpaca" -- train "$T/type.yaml" --check
expect "command line: key 'datasets[0].type': unknown dataset type 'chatml'" -- train "$T/ok.yaml" --check "--datasets=[{path: $D, type: chatml}]"
expect "key 'lora_target_modules': unknown target module 'qproj'" -- train "$T/ok.yaml" --check --lora_target_modules=qproj
expect "key 'sequence_len' must be at most" -- train "$T/ok.yaml" --check --sequence_len=100000000000
expect "key 'lora_r' must be in [1, 65536], found 99999999999" -- train "$T/ok.yaml" --check --lora_r=99999999999
expect "key 'max_memory': '1e300GiB' is too large a size" -- train "$T/ok.yaml" --check --max_memory=1e300GiB

# 7. Pretokenized data trains without tokenizer.json ...
cp -r "$M" "$T/notok"
rm "$T/notok/tokenizer.json" "$T/notok/tokenizer_config.json"
cfg "$T/notok.yaml" "$T/notok" "$D"
out=$("$BIN" train "$T/notok.yaml" --output_dir="$T/out_notok" 2>&1); rc=$?
if [ $rc -ne 0 ] || ! grep -qF "done: 1 steps" <<<"$out"; then
  echo "FAIL (rc=$rc): pretokenized training without tokenizer.json"; echo "$out"; fail=1
fi
# ... with its ids checked against the embedding (vocab_size 259) ...
printf '{"input_ids": [1, 2, 259]}\n' > "$T/oov.jsonl"
cfg "$T/notok_oov.yaml" "$T/notok" "$T/oov.jsonl"
expect "$T/oov.jsonl:1: field 'input_ids[2]': 259 is outside the vocabulary (size 259)" -- train "$T/notok_oov.yaml" --output_dir="$T/out_oov"
# ... while text data needs the tokenizer, and says so.
printf '{"text": "hello"}\n' > "$T/text.jsonl"
cfg "$T/notok_text.yaml" "$T/notok" "$T/text.jsonl" completion
expect "[train] $T/notok_text.yaml: base_model $T/notok has no tokenizer.json" -- train "$T/notok_text.yaml" --output_dir="$T/out_text"
# A tokenizer with more ids than the embedding has rows is refused (exit 2), not silent.
cp -r "$M" "$T/bigtok"
python3 - "$T/bigtok" <<'EOF'
import json, os, sys
p = os.path.join(sys.argv[1], "tokenizer.json")
j = json.load(open(p))
j["added_tokens"].append({"id": 300, "content": "<extra>", "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": True})
json.dump(j, open(p, "w"))
EOF
cfg "$T/bigtok.yaml" "$T/bigtok" "$D"
expect "[model] $T/bigtok: tokenizer.json has token ids up to 300 (301 ids with the added tokens), but the model's embedding has 259 rows" -- train "$T/bigtok.yaml" --output_dir="$T/out_big"
expect "tokenizer.json has token ids up to 300" -- generate --model "$T/bigtok" --prompt hi --max-new-tokens 1

[ $fail -eq 0 ] && echo "train inputs test passed"
exit $fail
