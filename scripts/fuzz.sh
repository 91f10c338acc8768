#!/usr/bin/env bash
# Runs the libFuzzer targets of fuzz/ (docs/fuzzing.md), built by `make fuzz-build`.
#   scripts/fuzz.sh regress  [BUILD]          every target over its seed corpus, then
#                                             FUZZ_SECONDS (10; 0: none) of fixed-seed fuzzing
#   scripts/fuzz.sh campaign MINUTES [BUILD]  every target for MINUTES, crashes kept and counted
#   scripts/fuzz.sh findings [BUILD]          replays fuzz/findings/: which inputs still fail
# BUILD defaults to build-fuzz. FUZZ_JOBS (default: the core count) targets run at once, each
# one libFuzzer process; FUZZ_TARGETS="a_fuzz b_fuzz" picks a subset.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:?usage: scripts/fuzz.sh regress|campaign MINUTES|findings [BUILD]}
shift
minutes=0
if [ "$mode" = campaign ]; then
  minutes=${1:?usage: scripts/fuzz.sh campaign MINUTES [BUILD]}
  shift
fi
build=${1:-build-fuzz}
jobs=${FUZZ_JOBS:-$(nproc)}
# shellcheck disable=SC2012
targets=${FUZZ_TARGETS:-$(cd fuzz && ls ./*_fuzz.cpp | sed 's|^\./||; s|\.cpp$||')}
for t in $targets; do
  [ -x "$build/fuzz/$t" ] || { echo "fuzz: $build/fuzz/$t is not built (make fuzz-build)" >&2; exit 1; }
done

# Limits shared by every run: an input that takes 10 s, or a process that needs 2 GiB, is a
# finding (timeout-*, oom-* files) like a crash is.
common_flags() {
  local t=$1
  echo "-timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=2048 -print_final_stats=1"
  [ -f "fuzz/dict/$t.dict" ] && echo "-dict=fuzz/dict/$t.dict"
  return 0
}

# The final libFuzzer status line: "#N ... cov: C ft: F ...", as "N C F".
final_stats() {
  grep -E '^#[0-9]+.*cov: ' "$1" | tail -n 1 |
    sed -E 's/^#([0-9]+).*cov: ([0-9]+) ft: ([0-9]+).*/\1 \2 \3/' || true
}

regress_one() {
  local t=$1 dir="$build/regress/$1" seconds=${FUZZ_SECONDS:-10} budget
  rm -rf "$dir" && mkdir -p "$dir/corpus"
  # FUZZ_SECONDS=0: the seed corpus only (libFuzzer reads -max_total_time=0 as "no limit").
  budget="-max_total_time=$seconds"
  [ "$seconds" -gt 0 ] || budget="-runs=0"
  # New inputs go to the scratch corpus first in the list; the seed corpus is only read.
  # shellcheck disable=SC2046
  if "$build/fuzz/$t" $(common_flags "$t") -seed=1 "$budget" -artifact_prefix="$dir/" \
    "$dir/corpus" "fuzz/corpus/$t" >"$dir/log" 2>&1; then
    read -r execs cov ft <<<"$(final_stats "$dir/log")"
    printf 'fuzz-regress %-28s ok     %8s execs  cov %5s  ft %6s\n' "$t" "$execs" "$cov" "$ft"
  else
    printf 'fuzz-regress %-28s FAILED (log: %s)\n' "$t" "$dir/log"
    # The report without libFuzzer's own frames: what failed and where.
    grep -E 'FINDING|ERROR|runtime error|SUMMARY|Test unit written|^    #[0-9]' "$dir/log" |
      grep -v -E 'fuzzer::|__sanitizer_print|libc\.so|libc_start|_start |in main ' | head -n 20
    return 1
  fi
}

campaign_one() {
  local t=$1 dir="$build/campaign/$1"
  mkdir -p "$dir/corpus" "$dir/crashes"
  # -fork=1: one worker process that libFuzzer restarts after each crash, so one campaign finds
  # several; the corpus dir persists, so a later campaign continues where this one stopped.
  # shellcheck disable=SC2046
  "$build/fuzz/$t" $(common_flags "$t") -fork=1 -ignore_crashes=1 -ignore_ooms=1 \
    -ignore_timeouts=1 -max_total_time=$((minutes * 60)) -artifact_prefix="$dir/crashes/" \
    "$dir/corpus" "fuzz/corpus/$t" >"$dir/log" 2>&1 || true
}

summary() {
  printf '%-28s %12s %7s %8s %8s  %s\n' target execs cov ft findings "by kind"
  for t in $targets; do
    local dir="$build/campaign/$t" execs cov ft kinds n
    read -r execs cov ft <<<"$(final_stats "$dir/log")"
    n=$(find "$dir/crashes" -type f | wc -l)
    kinds=$(find "$dir/crashes" -type f -printf '%f\n' | sed 's/-.*//' | sort | uniq -c |
      awk '{printf "%s%s:%s", sep, $2, $1; sep=" "}')
    printf '%-28s %12s %7s %8s %8s  %s\n' "$t" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$n" "$kinds"
  done
  echo "logs and crash files: $build/campaign/<target>/{log,crashes/}"
}

case "$mode" in
  regress)
    export build
    export -f regress_one common_flags final_stats
    # xargs exits non-zero when any target failed.
    # shellcheck disable=SC2086
    printf '%s\n' $targets | xargs -P "$jobs" -I{} bash -c 'regress_one {}'
    ;;
  campaign)
    echo "fuzz-campaign: $minutes min per target, $jobs at once, under $build/campaign/"
    export build minutes
    export -f campaign_one common_flags
    # shellcheck disable=SC2086
    printf '%s\n' $targets | xargs -P "$jobs" -I{} bash -c 'campaign_one {}'
    summary
    ;;
  findings)
    status=0
    for t in $targets; do
      [ -d "fuzz/findings/$t" ] || continue
      for f in "fuzz/findings/$t"/*; do
        [ -f "$f" ] || continue
        # shellcheck disable=SC2046
        if "$build/fuzz/$t" $(common_flags "$t") "$f" >/dev/null 2>&1; then
          printf 'fixed         %s\n' "$f"
        else
          printf 'still failing %s\n' "$f"
          status=1
        fi
      done
    done
    exit $status
    ;;
  *)
    echo "usage: scripts/fuzz.sh regress|campaign MINUTES|findings [BUILD]" >&2
    exit 2
    ;;
esac
