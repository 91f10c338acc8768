#!/bin/bash
# `fitlm plan --nproc N --strategy S` prints the plan of every rank: with zero2 the f32 masters
# and AdamW moments of each rank are its block, 1/N of the single-process plan's (within the
# blocks' rounding), the weights, gradients and activations are whole; with ddp every rank holds
# the single-process plan. zero3 is refused with a clear error (exit 2).
set -euo pipefail
BIN=${FITLM_BIN:?}
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
rc=0
"$BIN" plan --arch llama-3.2-1b --nproc 2 --strategy zero3 >/dev/null 2>"${TMPDIR:-/tmp}/z3.$$" || rc=$?
if [ $rc -ne 2 ] || ! grep -q "zero3 is not built yet" "${TMPDIR:-/tmp}/z3.$$"; then
  echo "FAIL: zero3 should be refused with exit 2 (rc=$rc)"; exit 1
fi
rm -f "${TMPDIR:-/tmp}/z3.$$"
echo "plan ranks test passed"
