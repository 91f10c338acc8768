#include "fitlm/dist/make_comm.h"

#include <cstdlib>

#include "fitlm/core/error.h"
#include "fitlm/dist/mpi_comm.h"
#include "fitlm/dist/single_comm.h"

namespace fitlm::dist {

std::unique_ptr<Comm> make_cpu_comm(const GetEnv& getenv) {
  const std::optional<RankEnv> env = rank_env_from(getenv);
  if (env && env->source == "mpirun") {
    std::unique_ptr<Comm> comm = MpiComm::init();
    // MPI and the launcher must agree; otherwise the variables came from somewhere else
    // (a wrapper, a copied environment) and the ranks would not be who they think.
    if (comm->rank() != env->rank || comm->world_size() != env->world_size)
      throw_input_error("launch",
                        "OMPI_COMM_WORLD_RANK/SIZE say rank {} of {}, MPI says rank {} of {}",
                        env->rank, env->world_size, comm->rank(), comm->world_size());
    return comm;
  }
  if (env && env->world_size > 1)
    throw_input_error("launch",
                      "started by {} as rank {} of {}: CPU ranks talk over MPI; start them "
                      "with mpirun",
                      env->source, env->rank, env->world_size);
  return std::make_unique<SingleComm>();
}

std::unique_ptr<Comm> make_cpu_comm() {
  return make_cpu_comm([](const char* name) -> const char* { return std::getenv(name); });
}

}  // namespace fitlm::dist
