#include "fitlm/backend/registry/make_comm_for.h"

#include <algorithm>
#include <cstdlib>
#include <vector>

#include "fitlm/core/error.h"
#include "fitlm/dist/make_comm.h"

#ifdef FITLM_HAVE_CUDA
#include "fitlm/backend/cuda/nccl_comm.h"
#include "fitlm/dist/mpi_comm.h"
#include "fitlm/dist/single_comm.h"
#include "fitlm/dist/tcp_rendezvous.h"
#endif

namespace fitlm {

#ifdef FITLM_HAVE_CUDA
namespace {

std::unique_ptr<dist::Comm> make_gpu_comm(Backend& backend, const dist::GetEnv& getenv) {
  const std::optional<dist::RankEnv> env = dist::rank_env_from(getenv);
  if (env && env->source == "mpirun") {
    std::unique_ptr<dist::Comm> mpi = dist::MpiComm::init();
    if (mpi->rank() != env->rank || mpi->world_size() != env->world_size)
      throw_input_error("launch",
                        "OMPI_COMM_WORLD_RANK/SIZE say rank {} of {}, MPI says rank {} of {}",
                        env->rank, env->world_size, mpi->rank(), mpi->world_size());
    return dist::make_nccl_comm(backend, std::move(mpi));
  }
  if (!env || env->world_size == 1)
    return dist::make_nccl_comm(backend, std::make_unique<dist::SingleComm>());
  if (env->master_addr.empty() || env->master_port == 0)
    throw_input_error("launch",
                      "started by {} as rank {} of {} without MASTER_ADDR and MASTER_PORT: the GPU "
                      "ranks meet at rank 0's address (set both, or start them with mpirun)",
                      env->source, env->rank, env->world_size);
  const dist::NcclRanks ranks{env->rank, env->world_size, env->local_rank, env->local_world_size};
  dist::NcclUniqueId id{};
  if (ranks.rank == 0) id = dist::nccl_unique_id();
  const std::vector<uint8_t> got = dist::tcp_broadcast_bytes({.addr = env->master_addr,
                                                              .port = env->master_port,
                                                              .rank = ranks.rank,
                                                              .world = ranks.world,
                                                              .timeout_s = 120},
                                                             id, id.size());
  std::copy(got.begin(), got.end(), id.begin());
  return dist::make_nccl_comm(backend, ranks, id);
}

}  // namespace
#endif

std::unique_ptr<dist::Comm> make_comm_for(Backend& backend, const dist::GetEnv& getenv) {
  if (backend.device().kind == DeviceKind::kCPU) return dist::make_cpu_comm(getenv);
#ifdef FITLM_HAVE_CUDA
  return make_gpu_comm(backend, getenv);
#else
  throw_internal_error("dist", "no comm for the {} backend: this fitlm was built without CUDA",
                       backend.name());
#endif
}

std::unique_ptr<dist::Comm> make_comm_for(Backend& backend) {
  return make_comm_for(backend, [](const char* name) -> const char* { return std::getenv(name); });
}

}  // namespace fitlm
