#!/bin/bash
# MpiComm under mpirun (src/fitlm/dist/mpi_comm.h): every collective bit-identical to the sums
# each rank computes in rank order, on 2 and 3 ranks (tests/dist/comm_mpi_check.cpp); a rank
# that exits, aborts or throws while the others are inside an all-reduce ends the whole job,
# non-zero, in seconds rather than a hang; and a rank that hangs instead of joining one is
# named by the others, which end the job (exit 5) once FITLM_COMM_TIMEOUT_S has passed.
set -uo pipefail
CHECK=${FITLM_COMM_MPI_CHECK:?}
# CI runs as root, which mpirun refuses unless told; --oversubscribe: more ranks than cores.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPIRUN=(mpirun --oversubscribe --bind-to none)
fail=0

for np in 2 3; do
  out=$(timeout 120 "${MPIRUN[@]}" -np "$np" "$CHECK" --seed 12 2>&1); rc=$?
  if [ $rc -ne 0 ] || [ "$(grep -c ' 0 failures' <<<"$out")" -ne "$np" ]; then
    echo "FAIL: $np ranks (rc=$rc)"; echo "${out:0:6000}"; fail=1
  else
    grep ' checks, ' <<<"$out"
  fi
done

# The fault cases: rank 1 of 3 leaves; the job must end non-zero well within 60 s.
for kind in exit abort throw; do
  start=$(date +%s%N)
  out=$(timeout 90 "${MPIRUN[@]}" -np 3 "$CHECK" --fault "$kind" --fault-rank 1 2>&1); rc=$?
  ms=$((($(date +%s%N) - start) / 1000000))
  if [ $rc -eq 0 ] || [ $rc -eq 124 ] || [ $ms -ge 60000 ]; then
    echo "FAIL: fault '$kind': rc=$rc after $ms ms"; echo "${out:0:3000}"; fail=1
  else
    echo "fault '$kind': the job ended with rc=$rc after $ms ms"
  fi
  if [ "$kind" = throw ] && ! grep -q "rank 1: error: \[check\] rank 1 fails on purpose" <<<"$out"; then
    echo "FAIL: fault 'throw': the exception's message was not printed"; echo "${out:0:3000}"; fail=1
  fi
done
# A rank that hangs (sleeps for good instead of joining the 6th all-reduce): with a 5 s timeout
# the others name it and the op, and end the job (exit 5, ExitCode::kRankFailed) within 30 s.
for hung in 1 0; do
  start=$(date +%s%N)
  out=$(FITLM_COMM_TIMEOUT_S=5 timeout 90 "${MPIRUN[@]}" -np 3 "$CHECK" --fault hang \
    --fault-rank "$hung" 2>&1); rc=$?
  ms=$((($(date +%s%N) - start) / 1000000))
  want="all_reduce_sum(f32 × 65536) waited 5 s for rank $hung (the exchange of call signatures)"
  if [ $rc -eq 0 ] || [ $rc -eq 124 ] || [ $ms -ge 30000 ] || ! grep -qF "$want" <<<"$out"; then
    echo "FAIL: rank $hung hangs: rc=$rc after $ms ms"; echo "${out:0:3000}"; fail=1
  else
    echo "rank $hung hangs: the job ended with rc=$rc after $ms ms: $(grep -m1 -F "$want" <<<"$out")"
  fi
done
exit $fail
