# Sourced by the CLI error tests. `expect WANT... -- ARGS`: runs "$BIN" ARGS and requires exit
# code 2, every WANT in the output, no internal error ("[internal]", "json.exception") and a
# short message (under EXPECT_MAX_BYTES, default 2000); a failure is printed and sets fail=1.
fail=0
expect() {
  local want=()
  while [ "$1" != "--" ]; do want+=("$1"); shift; done
  shift
  local out rc ok=1
  out=$(timeout "${EXPECT_TIMEOUT:-120}" "$BIN" "$@" 2>&1); rc=$?
  [ $rc -eq 2 ] || ok=0
  for w in "${want[@]}"; do grep -qF -- "$w" <<<"$out" || ok=0; done
  grep -q "json.exception\|\[internal\]" <<<"$out" && ok=0
  [ "$(wc -c <<<"$out")" -lt "${EXPECT_MAX_BYTES:-2000}" ] || ok=0
  if [ $ok -eq 0 ]; then
    echo "FAIL (rc=$rc, want: ${want[*]}): ${*:0:6}"; echo "${out:0:2000}"; fail=1
  fi
}
