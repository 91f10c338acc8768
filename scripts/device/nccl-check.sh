#!/usr/bin/env bash
# NcclComm on the device (backend/cuda/nccl_comm.h, tests/cuda/nccl_comm_check.cpp), in one call:
# build nccl_comm_check, run its checks on every visible GPU (one rank per GPU; the ranks meet
# through the TCP rendezvous, torchrun-style variables, so no mpirun is needed), the fault case
# (rank 1 exits mid-run: the others must fail on their own, non-zero, within 60 s) when there
# are two GPUs or more, and the all-reduce bandwidth table.
#   run: carry [".debs"], command: bash scripts/device/nccl-check.sh
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
start=$(date +%s)
FITLM_DEVICE_TARGETS=nccl_comm_check bash scripts/device/build.sh build-device || {
  tail -30 build-device.cmake.log; exit 1
}
echo "build: $(($(date +%s) - start)) s"
B=$PWD/build-device/tests/nccl_comm_check
export LD_LIBRARY_PATH=/opt/fitlm-deps/usr/lib/x86_64-linux-gnu:/opt/fitlm-deps/usr/lib/x86_64-linux-gnu/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
G=$(nvidia-smi -L | grep -c '^GPU')
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1
echo "GPUs: $G"
[ "$G" -gt 1 ] && nvidia-smi topo -m 2>/dev/null | head -$((G + 2))

# Runs G ranks of nccl_comm_check "$@", rank r on GPU r, each bounded by 300 s; logs in
# /tmp/nccl-rank-r.log, exit codes in rcs. Every rank gets the same port (a new one per call).
port=$((29500 + RANDOM % 500))
ranks() {
  local pids=() r
  for ((r = 0; r < G; r++)); do
    RANK=$r WORLD_SIZE=$G LOCAL_RANK=$r LOCAL_WORLD_SIZE=$G MASTER_ADDR=127.0.0.1 \
      MASTER_PORT=$port timeout 300 "$B" "$@" >/tmp/nccl-rank-$r.log 2>&1 &
    pids+=($!)
  done
  rcs=()
  for p in "${pids[@]}"; do wait "$p"; rcs+=($?); done
  port=$((port + 1))
}

fail=0
echo "== checks"
if [ "$G" -eq 1 ]; then
  timeout 300 "$B" --seed 12 2>&1 | tail -20; rc=${PIPESTATUS[0]}
  [ "$rc" -eq 0 ] || fail=1
else
  ranks --seed 12
  for ((r = 0; r < G; r++)); do
    grep -E 'checks,|FAIL|error' /tmp/nccl-rank-$r.log | head -8
    [ "${rcs[$r]}" -eq 0 ] || { echo "rank $r: rc=${rcs[$r]}"; fail=1; }
  done
fi

if [ "$G" -gt 1 ]; then
  echo "== fault: rank 1 of $G exits mid-run (FITLM_COMM_TIMEOUT_S=10)"
  t0=$(date +%s%N)
  FITLM_COMM_TIMEOUT_S=10 ranks --fault exit --fault-rank 1
  ms=$((($(date +%s%N) - t0) / 1000000))
  for ((r = 0; r < G; r++)); do
    echo "rank $r: rc=${rcs[$r]}: $(grep -E 'error|exits' /tmp/nccl-rank-$r.log | head -1 | cut -c1-300)"
    [ "${rcs[$r]}" -ne 0 ] || fail=1
    [ $r -eq 1 ] || grep -q 'aborted the NCCL communicator' /tmp/nccl-rank-$r.log || fail=1
  done
  echo "fault: all ranks ended after $ms ms"
  [ "$ms" -lt 60000 ] || fail=1
fi

echo "== bench"
if [ "$G" -eq 1 ]; then
  timeout 300 "$B" --bench 2>&1 | tail -25
else
  ranks --bench
  cat /tmp/nccl-rank-0.log | tail -25
  for ((r = 1; r < G; r++)); do [ "${rcs[$r]}" -eq 0 ] || tail -3 /tmp/nccl-rank-$r.log; done
fi
echo "total: $(($(date +%s) - start)) s; $([ $fail -eq 0 ] && echo PASS || echo FAIL)"
exit $fail
