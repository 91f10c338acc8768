// The Comm for a backend: what the trainer calls once it has its backend. No MPI, CUDA or NCCL
// type here; builds without CUDA compile it too (a CUDA backend cannot exist there).
#pragma once

#include <memory>

#include "fitlm/backend/backend.h"
#include "fitlm/dist/comm.h"
#include "fitlm/dist/launch_env.h"

namespace fitlm {

// CPU backend: dist::make_cpu_comm() (MpiComm under mpirun, SingleComm alone).
// CUDA backend (already on device local_rank: make_cuda_backend(local_rank)): an NcclComm over
// that GPU, bootstrapped by the launcher's rendezvous:
//   mpirun               an MpiComm (kept alive inside the NcclComm) broadcasts NCCL's id
//   torchrun, srun       a TCP rendezvous at MASTER_ADDR:MASTER_PORT (dist/tcp_rendezvous.h)
//   none / one rank      a one-rank NcclComm
// Every rank must call it at the same time.
std::unique_ptr<dist::Comm> make_comm_for(Backend& backend, const dist::GetEnv& getenv);
std::unique_ptr<dist::Comm> make_comm_for(Backend& backend);  // from the process environment

}  // namespace fitlm
