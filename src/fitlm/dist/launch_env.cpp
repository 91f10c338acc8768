#include "fitlm/dist/launch_env.h"

#include <charconv>
#include <climits>
#include <cstdlib>
#include <string_view>
#include <system_error>

#include "fitlm/core/error.h"

namespace fitlm::dist {
namespace {

constexpr const char* kComponent = "launch";

// Reads one launcher's variables; `source` and `trigger` (the variable that said this launcher
// started us) go into the errors.
class Reader {
 public:
  Reader(const GetEnv& getenv, const char* source, const char* trigger)
      : getenv_(getenv), source_(source), trigger_(trigger) {}

  bool is_set(const char* name) const { return getenv_(name) != nullptr; }

  // A required non-negative integer of at least `min`.
  int number(const char* name, int min = 0) const {
    const char* v = getenv_(name);
    if (v == nullptr)
      throw_input_error(kComponent, "{} is set (started by {}) but {} is not", trigger_, source_,
                        name);
    return parse(name, v, min);
  }

  int parse(const char* name, std::string_view v, int min) const {
    int64_t n = 0;
    const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    // from_chars takes a leading '-': a negative value is "not a non-negative integer" too.
    if (v.empty() || v[0] == '-' || end != v.data() + v.size() ||
        (ec != std::errc() && ec != std::errc::result_out_of_range))
      throw_input_error(kComponent, "{} is '{}': expected a non-negative integer", name, clip(v));
    if (ec == std::errc::result_out_of_range || n > INT_MAX)
      throw_input_error(kComponent, "{} is {}: more than fitlm accepts (at most {})", name, clip(v),
                        INT_MAX);
    if (n < min) throw_input_error(kComponent, "{} is {}: expected at least {}", name, n, min);
    return static_cast<int>(n);
  }

  // MASTER_ADDR / MASTER_PORT: required for torchrun, taken when set otherwise.
  void master(RankEnv& env, bool required) const {
    if (required || is_set("MASTER_ADDR")) {
      const char* addr = getenv_("MASTER_ADDR");
      if (addr == nullptr || *addr == '\0')
        throw_input_error(kComponent, "{} is set (started by {}) but MASTER_ADDR is {}", trigger_,
                          source_, addr == nullptr ? "not" : "empty");
      env.master_addr = addr;
    }
    if (required || is_set("MASTER_PORT")) {
      env.master_port = number("MASTER_PORT", 1);
      if (env.master_port > 65535)
        throw_input_error(kComponent, "MASTER_PORT is {}: expected a port in 1..65535",
                          env.master_port);
    }
  }

  // "2(x3),1": 2 tasks on each of nodes 0-2, 1 on node 3. The count of node `node`.
  int tasks_on_node(const char* name, std::string_view list, int node) const {
    const auto bad = [&] {
      throw_input_error(kComponent, "{} is '{}': expected task counts like 2(x3),1", name,
                        clip(list));
    };
    int64_t first = 0;  // the node of the item being read
    while (!list.empty()) {
      const size_t comma = list.find(',');
      std::string_view item = list.substr(0, comma);
      list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
      if (comma != std::string_view::npos && list.empty()) bad();
      int repeat = 1;
      if (const size_t paren = item.find('('); paren != std::string_view::npos) {
        if (item.size() < paren + 4 || item.substr(paren, 2) != "(x" || item.back() != ')') bad();
        repeat = parse(name, item.substr(paren + 2, item.size() - paren - 3), 1);
        item = item.substr(0, paren);
      }
      const int count = parse(name, item, 1);
      if (node < first + repeat) return count;
      first += repeat;
    }
    throw_input_error(kComponent, "{} lists {} nodes; SLURM_NODEID is {}", name, first, node);
  }

 private:
  const GetEnv& getenv_;
  const char* source_;
  const char* trigger_;
};

// The cross checks every launcher shares.
void check_ranks(const RankEnv& env, const char* rank, const char* size, const char* local_rank,
                 const char* local_size) {
  if (env.rank >= env.world_size)
    throw_input_error(kComponent, "{} is {} but {} is {}: a rank must be less than the world size",
                      rank, env.rank, size, env.world_size);
  if (env.local_rank >= env.local_world_size)
    throw_input_error(kComponent,
                      "{} is {} but {} is {}: a local rank must be less than the "
                      "ranks on the node",
                      local_rank, env.local_rank, local_size, env.local_world_size);
  if (env.local_world_size > env.world_size)
    throw_input_error(kComponent, "{} is {} but {} is {}: more ranks on this node than in the job",
                      local_size, env.local_world_size, size, env.world_size);
}

RankEnv from_mpirun(const GetEnv& getenv) {
  const Reader r(getenv, "mpirun", "OMPI_COMM_WORLD_RANK");
  RankEnv env;
  env.source = "mpirun";
  env.rank = r.number("OMPI_COMM_WORLD_RANK");
  env.world_size = r.number("OMPI_COMM_WORLD_SIZE", 1);
  env.local_rank = r.number("OMPI_COMM_WORLD_LOCAL_RANK");
  env.local_world_size = r.number("OMPI_COMM_WORLD_LOCAL_SIZE", 1);
  r.master(env, false);
  check_ranks(env, "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
              "OMPI_COMM_WORLD_LOCAL_SIZE");
  return env;
}

RankEnv from_srun(const GetEnv& getenv) {
  const Reader r(getenv, "srun", "SLURM_PROCID");
  RankEnv env;
  env.source = "srun";
  env.rank = r.number("SLURM_PROCID");
  env.world_size = r.number("SLURM_NTASKS", 1);
  env.local_rank = r.number("SLURM_LOCALID");
  const char* local_size = "SLURM_NTASKS_PER_NODE";
  if (r.is_set("SLURM_NTASKS_PER_NODE")) {
    env.local_world_size = r.number("SLURM_NTASKS_PER_NODE", 1);
  } else {
    local_size = r.is_set("SLURM_STEP_TASKS_PER_NODE") ? "SLURM_STEP_TASKS_PER_NODE"
                                                       : "SLURM_TASKS_PER_NODE";
    if (!r.is_set(local_size))
      throw_input_error(kComponent,
                        "SLURM_PROCID is set (started by srun) but none of "
                        "SLURM_NTASKS_PER_NODE, SLURM_STEP_TASKS_PER_NODE, SLURM_TASKS_PER_NODE "
                        "is");
    env.local_world_size =
        r.tasks_on_node(local_size, getenv(local_size), r.number("SLURM_NODEID"));
  }
  r.master(env, false);
  check_ranks(env, "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", local_size);
  return env;
}

RankEnv from_torchrun(const GetEnv& getenv) {
  const Reader r(getenv, "torchrun", "RANK");
  RankEnv env;
  env.source = "torchrun";
  env.rank = r.number("RANK");
  env.world_size = r.number("WORLD_SIZE", 1);
  env.local_rank = r.number("LOCAL_RANK");
  env.local_world_size = r.number("LOCAL_WORLD_SIZE", 1);
  r.master(env, true);
  check_ranks(env, "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE");
  return env;
}

}  // namespace

std::optional<RankEnv> rank_env_from(const GetEnv& getenv) {
  if (getenv("OMPI_COMM_WORLD_RANK") != nullptr) return from_mpirun(getenv);
  if (getenv("SLURM_PROCID") != nullptr) return from_srun(getenv);
  if (getenv("RANK") != nullptr) return from_torchrun(getenv);
  return std::nullopt;
}

std::optional<RankEnv> rank_env_from_process() {
  return rank_env_from([](const char* name) -> const char* { return std::getenv(name); });
}

}  // namespace fitlm::dist
