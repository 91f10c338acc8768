#include "fitlm/dist/launch_env.h"

#include <gtest/gtest.h>

#include <map>
#include <string>

#include "fitlm/core/error.h"

using namespace fitlm;
using namespace fitlm::dist;

namespace {

using Vars = std::map<std::string, std::string>;

std::optional<RankEnv> from(const Vars& vars) {
  return rank_env_from([&](const char* name) -> const char* {
    const auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  });
}

// The input error of `vars`, which must contain every string in `want`.
void expect_error(const Vars& vars, std::initializer_list<std::string> want) {
  try {
    from(vars);
    ADD_FAILURE() << "no error; expected one containing '" << *want.begin() << "'";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::kBadInput) << e.what();
    for (const std::string& w : want)
      EXPECT_NE(std::string(e.what()).find(w), std::string::npos)
          << e.what() << "\n  does not contain: " << w;
  }
}

const Vars kMpirun = {{"OMPI_COMM_WORLD_RANK", "3"},
                      {"OMPI_COMM_WORLD_SIZE", "8"},
                      {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
                      {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"}};
const Vars kSrun = {{"SLURM_PROCID", "5"},
                    {"SLURM_NTASKS", "6"},
                    {"SLURM_LOCALID", "2"},
                    {"SLURM_NTASKS_PER_NODE", "3"}};
const Vars kTorchrun = {{"RANK", "1"},
                        {"WORLD_SIZE", "4"},
                        {"LOCAL_RANK", "1"},
                        {"LOCAL_WORLD_SIZE", "2"},
                        {"MASTER_ADDR", "node0"},
                        {"MASTER_PORT", "29500"}};

Vars with(Vars vars, const Vars& changes) {
  for (const auto& [k, v] : changes) vars[k] = v;
  return vars;
}

Vars without(Vars vars, const std::string& name) {
  vars.erase(name);
  return vars;
}

}  // namespace

TEST(LaunchEnv, NoneWithoutALauncher) {
  EXPECT_FALSE(from({}).has_value());
  // Half of torchrun's variables without RANK is no launcher either.
  EXPECT_FALSE(from({{"WORLD_SIZE", "4"}, {"LOCAL_RANK", "0"}}).has_value());
}

TEST(LaunchEnv, Mpirun) {
  const auto env = from(kMpirun);
  ASSERT_TRUE(env.has_value());
  EXPECT_EQ(env->source, "mpirun");
  EXPECT_EQ(env->rank, 3);
  EXPECT_EQ(env->world_size, 8);
  EXPECT_EQ(env->local_rank, 1);
  EXPECT_EQ(env->local_world_size, 2);
  EXPECT_EQ(env->master_addr, "");
  EXPECT_EQ(env->master_port, 0);
  const auto master = from(with(kMpirun, {{"MASTER_ADDR", "10.0.0.1"}, {"MASTER_PORT", "1234"}}));
  EXPECT_EQ(master->master_addr, "10.0.0.1");
  EXPECT_EQ(master->master_port, 1234);
}

TEST(LaunchEnv, Srun) {
  const auto env = from(kSrun);
  ASSERT_TRUE(env.has_value());
  EXPECT_EQ(env->source, "srun");
  EXPECT_EQ(env->rank, 5);
  EXPECT_EQ(env->world_size, 6);
  EXPECT_EQ(env->local_rank, 2);
  EXPECT_EQ(env->local_world_size, 3);
}

TEST(LaunchEnv, SrunTasksPerNodeLists) {
  // Without --ntasks-per-node Slurm gives per-node counts; the step's list before the job's.
  const Vars base = with(without(kSrun, "SLURM_NTASKS_PER_NODE"),
                         {{"SLURM_LOCALID", "0"}, {"SLURM_NTASKS", "7"}});
  const auto count = [&](const Vars& changes) {
    return from(with(base, changes))->local_world_size;
  };
  EXPECT_EQ(count({{"SLURM_TASKS_PER_NODE", "2(x3),1"}, {"SLURM_NODEID", "0"}}), 2);
  EXPECT_EQ(count({{"SLURM_TASKS_PER_NODE", "2(x3),1"}, {"SLURM_NODEID", "2"}}), 2);
  EXPECT_EQ(count({{"SLURM_TASKS_PER_NODE", "2(x3),1"}, {"SLURM_NODEID", "3"}}), 1);
  EXPECT_EQ(count({{"SLURM_TASKS_PER_NODE", "4"},
                   {"SLURM_STEP_TASKS_PER_NODE", "1,3,3"},
                   {"SLURM_NODEID", "1"}}),
            3);
  expect_error(with(base, {{"SLURM_TASKS_PER_NODE", "2(x3),1"}, {"SLURM_NODEID", "4"}}),
               {"SLURM_TASKS_PER_NODE lists 4 nodes; SLURM_NODEID is 4"});
  for (const char* bad : {"2(x3", "2(3)", "2,", ",2", "x", "2(x0)", "0"})
    expect_error(with(base, {{"SLURM_TASKS_PER_NODE", bad}, {"SLURM_NODEID", "0"}}),
                 {"SLURM_TASKS_PER_NODE"});
  expect_error(with(base, {{"SLURM_TASKS_PER_NODE", "2"}}), {"SLURM_NODEID is not"});
  expect_error(base, {"none of SLURM_NTASKS_PER_NODE, SLURM_STEP_TASKS_PER_NODE"});
}

TEST(LaunchEnv, Torchrun) {
  const auto env = from(kTorchrun);
  ASSERT_TRUE(env.has_value());
  EXPECT_EQ(env->source, "torchrun");
  EXPECT_EQ(env->rank, 1);
  EXPECT_EQ(env->world_size, 4);
  EXPECT_EQ(env->local_rank, 1);
  EXPECT_EQ(env->local_world_size, 2);
  EXPECT_EQ(env->master_addr, "node0");
  EXPECT_EQ(env->master_port, 29500);
  for (const char* name :
       {"WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"})
    expect_error(without(kTorchrun, name), {"RANK is set (started by torchrun) but", name});
  expect_error(with(kTorchrun, {{"MASTER_ADDR", ""}}), {"MASTER_ADDR is empty"});
  expect_error(with(kTorchrun, {{"MASTER_PORT", "0"}}), {"MASTER_PORT is 0: expected at least 1"});
  expect_error(with(kTorchrun, {{"MASTER_PORT", "65536"}}), {"MASTER_PORT is 65536", "1..65535"});
}

TEST(LaunchEnv, Priorities) {
  Vars all = kTorchrun;
  all.insert(kSrun.begin(), kSrun.end());
  EXPECT_EQ(from(all)->source, "srun");  // srun starts torchrun-style jobs too
  all.insert(kMpirun.begin(), kMpirun.end());
  EXPECT_EQ(from(all)->source, "mpirun");  // mpirun inside a Slurm allocation
  EXPECT_EQ(from(all)->rank, 3);
  // The chosen launcher's variables decide, even when another's are broken.
  EXPECT_EQ(from(with(all, {{"RANK", "x"}, {"SLURM_NTASKS", "-1"}}))->world_size, 8);
}

TEST(LaunchEnv, BadValuesNameTheVariable) {
  for (const char* bad : {"abc", "-1", "", "1.5", " 1", "1 ", "+1", "0x2"})
    expect_error(with(kMpirun, {{"OMPI_COMM_WORLD_RANK", bad}}),
                 {"OMPI_COMM_WORLD_RANK is '", "expected a non-negative integer"});
  expect_error(with(kMpirun, {{"OMPI_COMM_WORLD_SIZE", "99999999999999999999"}}),
               {"OMPI_COMM_WORLD_SIZE is 99999999999999999999: more than fitlm accepts"});
  expect_error(with(kMpirun, {{"OMPI_COMM_WORLD_SIZE", "4294967297"}}),
               {"OMPI_COMM_WORLD_SIZE is 4294967297: more than"});
  expect_error(with(kMpirun, {{"OMPI_COMM_WORLD_SIZE", "0"}}),
               {"OMPI_COMM_WORLD_SIZE is 0: expected at least 1"});
  expect_error(without(kMpirun, "OMPI_COMM_WORLD_LOCAL_SIZE"),
               {"OMPI_COMM_WORLD_LOCAL_SIZE is not"});
  expect_error(with(kSrun, {{"SLURM_LOCALID", "-3"}}), {"SLURM_LOCALID is '-3'"});
  expect_error(with(kTorchrun, {{"LOCAL_WORLD_SIZE", "two"}}), {"LOCAL_WORLD_SIZE is 'two'"});
  // A long value is clipped in the message.
  expect_error(with(kTorchrun, {{"RANK", std::string(5000, '7') + "x"}}), {"RANK is '777", "..."});
}

TEST(LaunchEnv, InconsistentRanks) {
  expect_error(with(kMpirun, {{"OMPI_COMM_WORLD_RANK", "8"}}),
               {"OMPI_COMM_WORLD_RANK is 8 but OMPI_COMM_WORLD_SIZE is 8"});
  expect_error(with(kSrun, {{"SLURM_LOCALID", "3"}}),
               {"SLURM_LOCALID is 3 but SLURM_NTASKS_PER_NODE is 3"});
  expect_error(with(kTorchrun, {{"LOCAL_WORLD_SIZE", "5"}, {"LOCAL_RANK", "0"}}),
               {"LOCAL_WORLD_SIZE is 5 but WORLD_SIZE is 4: more ranks on this node"});
  const auto one = from(
      with(kTorchrun,
           {{"RANK", "0"}, {"WORLD_SIZE", "1"}, {"LOCAL_RANK", "0"}, {"LOCAL_WORLD_SIZE", "1"}}));
  EXPECT_EQ(one->world_size, 1);
}
