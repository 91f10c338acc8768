#!/usr/bin/env bash
# Issue 12's device targets in one call (needs the nvidia-h200-x2 kind; on one GPU it runs the
# 1-GPU baseline only): Llama-3.1-8B shapes (random weights, `fitlm random-model`), LoRA r16 on
# all projections, seq 2048, micro-batch 1 per rank, gradient checkpointing, bf16 —
#   1 GPU; 2 GPUs ddp; 2 GPUs zero3 (tokens/s = median of steps 4..N from metrics.jsonl, and
#   each rank's planned and measured device bytes); full fine-tuning with zero2 on 2 GPUs
#   (planned vs measured per rank); NcclComm's all-reduce bus bandwidth against ncclAllReduce.
# Ranks are started torchrun-style (RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/MASTER_PORT; the NCCL
# id goes through fitlm's TCP rendezvous), so no mpirun is needed on the device.
#   run: carry [".debs"], command: bash scripts/device/dist-two-gpu.sh
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
start=$(date +%s)
FITLM_DEVICE_TARGETS="fitlm nccl_comm_check" bash scripts/device/build.sh build-device \
  >/tmp/d2-build.log 2>&1 || { tail -40 /tmp/d2-build.log; exit 1; }
echo "build: $(($(date +%s) - start)) s"
B=$PWD/build-device
export LD_LIBRARY_PATH=/opt/fitlm-deps/usr/lib/x86_64-linux-gnu:/opt/fitlm-deps/usr/lib/x86_64-linux-gnu/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
G=$(nvidia-smi -L | grep -c '^GPU')
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
W=/tmp/d2; rm -rf "$W"; mkdir -p "$W"
"$B/fitlm" random-model --arch llama-3.1-8b --out "$W/m" || exit 1
python3 - "$W/rows.jsonl" <<'PY'
import json, random, sys
random.seed(0)
with open(sys.argv[1], "w") as f:
    for _ in range(256):
        f.write(json.dumps({"input_ids": [random.randrange(1, 128000) for _ in range(2048)]}) + "\n")
PY
echo "model and data: $(($(date +%s) - start)) s"

cfg() {  # name adapter steps
  cat >"$W/$1.yaml" <<YAML
base_model: $W/m
datasets: [{path: $W/rows.jsonl, type: pretokenized}]
adapter: $2
lora_r: 16
lora_alpha: 32
lora_target_modules: [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj]
sequence_len: 2048
micro_batch_size: 1
max_steps: $3
learning_rate: 1.0e-4
gradient_checkpointing: true
bf16: true
backend: cuda
logging_steps: 1
output_dir: $W/$1
YAML
}
port=$((29500 + RANDOM % 500))
train() {  # name nproc args... : ranks torchrun-style, rank r on GPU r
  local name=$1 n=$2 pids=() r
  shift 2
  for ((r = 0; r < n; r++)); do
    RANK=$r WORLD_SIZE=$n LOCAL_RANK=$r LOCAL_WORLD_SIZE=$n MASTER_ADDR=127.0.0.1 \
      MASTER_PORT=$port timeout 400 "$B/fitlm" train "$W/$name.yaml" "$@" \
      >"$W/$name.rank$r.log" 2>&1 &
    pids+=($!)
  done
  local rc=0
  for p in "${pids[@]}"; do wait "$p" || rc=$?; done
  port=$((port + 1))
  [ $rc -eq 0 ] || { echo "$name: exit $rc"; tail -5 "$W/$name.rank0.log"; }
  python3 - "$W/$name/metrics.jsonl" "$name" <<'PY'
import json, statistics, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
steps = [l for l in lines if "tokens_per_s" in l][3:]
ranks = [l for l in lines if "rank_planned_bytes" in l]
gib = lambda b: f"{b / 2**30:.2f}"
out = f"{sys.argv[2]}: {statistics.median(l['tokens_per_s'] for l in steps):,.1f} tokens/s"
if ranks:
    r = ranks[0]
    out += "; per rank planned/measured GiB: " + ", ".join(
        f"{gib(p)}/{gib(m)}" for p, m in zip(r["rank_planned_bytes"], r["rank_measured_bytes"]))
print(out)
PY
  grep -h "device memory: planned" "$W/$name.rank0.log" | head -1
}

cfg one lora 24; train one 1
if [ "$G" -lt 2 ]; then
  "$B/fitlm" plan --model "$W/m" --seq 2048 --recompute full --nproc 2 --strategy zero3 | tail -4
  echo "one GPU only: the 2-GPU runs need the nvidia-h200-x2 kind; total $(($(date +%s) - start)) s"
  exit 0
fi
cfg ddp lora 24; train ddp 2 --strategy=ddp
cfg zero3 lora 24; train zero3 2 --strategy=zero3
cfg full adapter_full 6; sed -i 's/adapter: adapter_full/adapter: full/' "$W/full.yaml"
train full 2 --strategy=zero2
echo "== NcclComm bus bandwidth (2 ranks)"
for ((r = 0; r < 2; r++)); do
  RANK=$r WORLD_SIZE=2 LOCAL_RANK=$r LOCAL_WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
    timeout 300 "$B/tests/nccl_comm_check" --bench >"$W/bench.rank$r.log" 2>&1 &
done
wait
cat "$W/bench.rank0.log" | tail -15
echo "total: $(($(date +%s) - start)) s"
