// The planner's copy of the CUDA backend's fixed reserve (plan/gpu_catalog.h) equals the
// backend's own figure, which only CUDA builds have.
#include <gtest/gtest.h>

#include "fitlm/backend/cuda/cuda_backend.h"
#include "fitlm/plan/gpu_catalog.h"

namespace fitlm {
namespace {

TEST(PlanReserveCuda, EqualsTheBackendsFixedWorkspace) {
  EXPECT_EQ(plan::kCudaFixedWorkspaceBytes, cuda_fixed_workspace_bytes());
}

}  // namespace
}  // namespace fitlm
