#include "fitlm/backend/registry/make_comm_for.h"

#include <gtest/gtest.h>

#include <map>
#include <string>

#include "fitlm/backend/cpu/cpu_backend.h"
#include "fitlm/core/error.h"

using namespace fitlm;

namespace {

dist::GetEnv env_of(const std::map<std::string, std::string>& vars) {
  return [vars](const char* name) -> const char* {
    const auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  };
}

}  // namespace

// A CPU backend gets the CPU comm: SingleComm without a launcher.
TEST(MakeCommFor, CpuBackendAloneGetsSingleComm) {
  CpuBackend cpu;
  const std::unique_ptr<dist::Comm> comm = make_comm_for(cpu, env_of({}));
  EXPECT_EQ(comm->name(), "single");
  EXPECT_EQ(comm->world_size(), 1);
  EXPECT_EQ(comm->device_kind(), DeviceKind::kCPU);
}

// CPU ranks talk over MPI: torchrun with two ranks is an input error naming mpirun.
TEST(MakeCommFor, CpuBackendUnderTorchrunIsAnInputError) {
  CpuBackend cpu;
  try {
    make_comm_for(cpu, env_of({{"RANK", "0"},
                               {"WORLD_SIZE", "2"},
                               {"LOCAL_RANK", "0"},
                               {"LOCAL_WORLD_SIZE", "2"},
                               {"MASTER_ADDR", "127.0.0.1"},
                               {"MASTER_PORT", "29500"}}));
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::kBadInput);
    EXPECT_NE(std::string(e.what()).find("mpirun"), std::string::npos) << e.what();
  }
}
