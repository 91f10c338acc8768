// The Comm of a CPU job: what the launcher's variables (launch_env.h) say this process is.
#pragma once

#include <memory>

#include "fitlm/dist/comm.h"
#include "fitlm/dist/launch_env.h"

namespace fitlm::dist {

// MpiComm when mpirun started this process (OMPI_COMM_WORLD_* set), SingleComm when no
// launcher did or when one started a single rank. Another launcher with more than one rank
// (srun, torchrun) is an input error: the CPU ranks talk over MPI, so start them with mpirun.
// Under mpirun every rank must call it at the same time (MPI_Comm_dup is collective).
std::unique_ptr<Comm> make_cpu_comm(const GetEnv& getenv);
std::unique_ptr<Comm> make_cpu_comm();  // from the process environment

}  // namespace fitlm::dist
