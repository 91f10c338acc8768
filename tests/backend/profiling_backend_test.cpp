// ProfilingBackend must be transparent (same results as the backend it wraps) and book every
// op under its family.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "fitlm/backend/arena.h"
#include "fitlm/backend/profiling_backend.h"
#include "fitlm/core/allocation_plan.h"

namespace fitlm {
namespace {

TEST(ProfilingBackend, ForwardsResultsAndCountsOps) {
  auto cpu = make_backend("cpu");
  ProfilingBackend prof(*cpu);
  AllocationPlan plan;
  plan.add("a", "t", Shape{300, 320}, DType::kF32);
  plan.add("b", "t", Shape{280, 320}, DType::kF32);
  plan.add("c", "t", Shape{300, 280}, DType::kF32);
  plan.add("c_ref", "t", Shape{300, 280}, DType::kF32);
  plan.finalize();
  Arena arena(prof, plan);
  std::mt19937 rng(7);
  std::normal_distribution<float> nd;
  for (const char* n : {"a", "b"}) {
    std::vector<float> h(static_cast<size_t>(arena.get(n).numel()));
    for (float& x : h) x = nd(rng);
    prof.upload(arena.get(n), h.data(), DType::kF32);
  }
  prof.gemm(arena.get("a"), false, arena.get("b"), true, arena.get("c"), 1.0f, 0.0f);
  cpu->gemm(arena.get("a"), false, arena.get("b"), true, arena.get("c_ref"), 1.0f, 0.0f);
  prof.scale(arena.get("c"), 2.0f);
  prof.set_enabled(false);
  prof.scale(arena.get("c"), 0.5f);  // passes through, not booked

  std::vector<float> c(300 * 280), ref(300 * 280);
  cpu->download(arena.get("c"), c.data());
  cpu->download(arena.get("c_ref"), ref.data());
  EXPECT_EQ(c, ref);

  const auto& t = prof.times();
  ASSERT_EQ(t.count("gemm projections"), 1u);
  EXPECT_EQ(t.at("gemm projections").calls, 1);
  EXPECT_DOUBLE_EQ(t.at("gemm projections").flops, 2.0 * 300 * 280 * 320);
  EXPECT_EQ(t.at("scale").calls, 1);
  EXPECT_NE(prof.report(1).find("gemm projections"), std::string::npos);
}

}  // namespace
}  // namespace fitlm
