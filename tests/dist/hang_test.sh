#!/bin/bash
# A rank that hangs instead of dying (src/fitlm/dist/mpi_comm.h, "Failures"): a 2-rank run
# whose rank 1 is stopped with SIGSTOP after its first checkpoint must end (non-zero, exit 5)
# within 60 s with FITLM_COMM_TIMEOUT_S=10, rank 0 naming the rank it waited for; no process
# may be left behind; the checkpoints left are whole: `--resume` completes with exit 0.
set -euo pipefail
BIN=${FITLM_BIN:?}
T=$(mktemp -d)
pids=()
cleanup() {
  # A stopped process ignores SIGTERM until continued; SIGKILL ends it either way.
  for p in "${pids[@]}"; do
    kill -CONT "$p" 2>/dev/null || true
    kill -9 "$p" 2>/dev/null || true
  done
  rm -rf "$T"
}
trap cleanup EXIT
export OMP_NUM_THREADS=1
"$BIN" -q demo --dir "$T" --prepare-only
cat >"$T/hung.yaml" <<YAML
base_model: $T/tiny-llama-random
datasets: [{path: $T/upper_train.jsonl, type: pretokenized}]
adapter: lora
lora_r: 8
lora_alpha: 16
sequence_len: 64
sample_packing: true
micro_batch_size: 4
max_steps: 300
learning_rate: 1.0e-3
save_steps: 10
logging_steps: 10
seed: 5
output_dir: $T/hung
YAML

FITLM_COMM_TIMEOUT_S=10 "$BIN" -q train "$T/hung.yaml" --nproc 2 2>"$T/hung.log" &
launcher=$!  # mpirun, once the command has re-run itself under it
pids+=("$launcher")
for _ in $(seq 600); do
  [ -d "$T/hung/checkpoint-10" ] && break
  sleep 0.05
done
test -d "$T/hung/checkpoint-10" || { echo "no checkpoint-10"; cat "$T/hung.log"; exit 1; }
rank1=""
for p in $(pgrep -P "$launcher" -f "train $T/hung.yaml"); do
  pids+=("$p")
  if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=1"; then
    rank1=$p
  fi
done
test -n "$rank1" || { echo "rank 1's process not found"; ps -ef; exit 1; }
t0=$(date +%s.%N)
kill -STOP "$rank1"
set +e
wait "$launcher"; rc=$?
set -e
t1=$(date +%s.%N)
secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
echo "stopped rank 1: the run ended with exit $rc after ${secs}s"
msg=$(grep -m1 "rank 0 of 2: .* waited 10 s for rank 1 (" "$T/hung.log" || true)
test -n "$msg" || { echo "rank 0 did not name rank 1:"; cat "$T/hung.log"; exit 1; }
echo "$msg"
test "$rc" -eq 5 || { echo "expected exit 5 (ExitCode::kRankFailed)"; cat "$T/hung.log"; exit 1; }
awk -v s="$secs" 'BEGIN { exit !(s < 60) }'
left=""
for p in "${pids[@]}"; do
  if kill -0 "$p" 2>/dev/null && ! grep -q '^State:.*zombie' "/proc/$p/status" 2>/dev/null; then
    left+=" $p"
  fi
done
if [ -n "$left" ]; then echo "mpirun left processes running:$left (killed now)"; fi
if [ -f "$T/hung/adapter_model.safetensors" ]; then
  echo "the run finished before the stop: the test needs more steps"; exit 1
fi
last=$(ls -d "$T"/hung/checkpoint-* | grep -v '\.tmp' | sed 's/.*checkpoint-//' | sort -n | tail -1)
echo "checkpoint left: checkpoint-$last"
"$BIN" -q train "$T/hung.yaml" --nproc 2 --resume
test -f "$T/hung/adapter_model.safetensors"
echo "hang test passed"
