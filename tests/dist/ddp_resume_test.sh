#!/bin/bash
# Data parallel on CPU ranks, killed and resumed: a 2-rank run whose rank 1 is killed with
# SIGKILL after its first checkpoint must end (mpirun non-zero) within 60 s, leave only whole
# checkpoints, and `--resume` with 2 ranks must write the same adapter bytes as a 2-rank run that
# never stopped. SIGTERM to one rank of a zero2 run stops both after a checkpoint (exit 0), and
# resuming gives the uninterrupted zero2 run's bytes.
set -euo pipefail
BIN=${FITLM_BIN:?}
T=$(mktemp -d)
trap 'pkill -9 -f "$T/" 2>/dev/null || true; rm -rf "$T"' EXIT
export OMP_NUM_THREADS=1
"$BIN" -q demo --dir "$T" --prepare-only
cfg() {  # output_dir
  cat <<YAML
base_model: $T/tiny-llama-random
datasets: [{path: $T/upper_train.jsonl, type: pretokenized}]
adapter: lora
lora_r: 8
lora_alpha: 16
sequence_len: 64
sample_packing: true
micro_batch_size: 4
max_steps: 400
learning_rate: 1.0e-3
save_steps: 10
logging_steps: 10
seed: 5
output_dir: $1
YAML
}
cfg "$T/whole" >"$T/whole.yaml"
cfg "$T/killed" >"$T/killed.yaml"
"$BIN" -q train "$T/whole.yaml" --nproc 2

"$BIN" -q train "$T/killed.yaml" --nproc 2 2>"$T/killed.log" &
launcher=$!
for _ in $(seq 600); do
  [ -d "$T/killed/checkpoint-10" ] && break
  sleep 0.05
done
test -d "$T/killed/checkpoint-10" || { echo "no checkpoint-10"; cat "$T/killed.log"; exit 1; }
# The rank processes run the config too; the second one found is rank 1 (or 0: either must do).
rank_pid=$(pgrep -f "train $T/killed.yaml" | grep -v "^$launcher\$" | tail -1)
t0=$(date +%s.%N)
kill -9 "$rank_pid"
set +e
wait "$launcher"; rc=$?
set -e
t1=$(date +%s.%N)
secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
echo "killed a rank: the run ended with exit $rc after ${secs}s"
test "$rc" -ne 0
awk -v s="$secs" 'BEGIN { exit !(s < 60) }'
if ls -d "$T"/killed/checkpoint-*.tmp* 2>/dev/null | grep -q .; then
  echo "a partial checkpoint was left"; exit 1
fi
if [ -f "$T/killed/adapter_model.safetensors" ]; then
  echo "the run finished before the kill: the test needs more steps"; exit 1
fi

"$BIN" -q train "$T/killed.yaml" --nproc 2 --resume
cmp "$T/whole/adapter_model.safetensors" "$T/killed/adapter_model.safetensors"

# SIGTERM to one rank (rank 1 or 0) stops every rank after the same step, with a checkpoint of
# that step, exit 0; --resume then writes the uninterrupted run's bytes. zero2: each rank's
# optimizer file is in that checkpoint.
cfg "$T/termed" >"$T/termed.yaml"
"$BIN" -q train "$T/termed.yaml" --nproc 2 --strategy=zero2 2>"$T/termed.log" &
launcher=$!
for _ in $(seq 600); do
  [ -d "$T/termed/checkpoint-10" ] && break
  sleep 0.05
done
rank_pid=$(pgrep -f "train $T/termed.yaml" | grep -v "^$launcher\$" | tail -1)
kill -TERM "$rank_pid"
rc=0
wait "$launcher" || rc=$?
test "$rc" -eq 0 || { echo "SIGTERM: exit $rc"; cat "$T/termed.log"; exit 1; }
last=$(ls -d "$T"/termed/checkpoint-* | sed 's/.*checkpoint-//' | sort -n | tail -1)
test -f "$T/termed/checkpoint-$last/optimizer-rank-1-of-2.safetensors"
if [ -f "$T/termed/adapter_model.safetensors" ]; then
  echo "the run finished before SIGTERM: the test needs more steps"; exit 1
fi
lines=$(grep -c '"loss"' "$T/termed/metrics.jsonl")
test "$lines" -eq "$last" || { echo "metrics has $lines steps, checkpoint-$last"; exit 1; }
echo "SIGTERM to a rank: both stopped after step $last with checkpoint-$last"
cfg "$T/whole2" >"$T/whole2.yaml"
"$BIN" -q train "$T/whole2.yaml" --nproc 2 --strategy=zero2
"$BIN" -q train "$T/termed.yaml" --nproc 2 --strategy=zero2 --resume
cmp "$T/whole2/adapter_model.safetensors" "$T/termed/adapter_model.safetensors"
echo "ddp resume test passed"
