// Which rank this process is, read from the variables its launcher sets. fitlm starts one
// process per device (DESIGN.md principle 4) and does not launch them itself; mpirun, srun or
// torchrun does, and each names the rank differently.
#pragma once

#include <functional>
#include <optional>
#include <string>

namespace fitlm::dist {

struct RankEnv {
  int rank = 0;              // 0 .. world_size - 1
  int world_size = 1;        // processes in the job
  int local_rank = 0;        // 0 .. local_world_size - 1: rank among this node's processes
  int local_world_size = 1;  // processes on this node
  std::string master_addr;   // rendezvous host (MASTER_ADDR); empty when none is set
  int master_port = 0;       // rendezvous port (MASTER_PORT); 0 when none is set
  std::string source;        // "mpirun", "srun" or "torchrun"
};

// A lookup like std::getenv: the value, or nullptr when the variable is not set.
using GetEnv = std::function<const char*(const char*)>;

// The first launcher whose variables are set, in this order:
//   mpirun    OMPI_COMM_WORLD_RANK, _SIZE, _LOCAL_RANK, _LOCAL_SIZE (Open MPI)
//   srun      SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, and the tasks on this node from
//             SLURM_NTASKS_PER_NODE, else SLURM_STEP_TASKS_PER_NODE or SLURM_TASKS_PER_NODE
//             ("2(x3),1" lists) at SLURM_NODEID
//   torchrun  RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT
// mpirun first because it may run inside a Slurm allocation, whose SLURM_* variables then
// describe the allocation, not the MPI job. mpirun and srun take MASTER_ADDR / MASTER_PORT when
// set. nullopt when no launcher's rank variable is set (a plain one-process run). A launcher
// whose rank variable is set but whose other variables are missing, not non-negative
// integers, or inconsistent (rank >= world size) is an input error naming the variable.
// Note: an sbatch script outside srun also has SLURM_PROCID=0 and SLURM_NTASKS set; start the
// ranks with srun.
std::optional<RankEnv> rank_env_from(const GetEnv& getenv);

// rank_env_from(std::getenv).
std::optional<RankEnv> rank_env_from_process();

}  // namespace fitlm::dist
