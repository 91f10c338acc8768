#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "fitlm/core/allocation_plan.h"
#include "fitlm/core/dtype.h"
#include "fitlm/core/error.h"

using namespace fitlm;

TEST(DType, Bf16RoundTripIsNearestEven) {
  std::mt19937 rng(1);
  std::normal_distribution<float> d(0.0f, 3.0f);
  for (int i = 0; i < 10000; ++i) {
    const float x = d(rng);
    const float y = bf16_to_f32(f32_to_bf16(x));
    EXPECT_LE(std::fabs(x - y), std::fabs(x) * (1.0f / 256.0f)) << x;
  }
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(NAN))));
}

TEST(DType, F16RoundTrip) {
  std::mt19937 rng(2);
  std::uniform_real_distribution<float> d(-60000.0f, 60000.0f);
  for (int i = 0; i < 10000; ++i) {
    const float x = d(rng);
    EXPECT_LE(std::fabs(x - f16_to_f32(f32_to_f16(x))), std::fabs(x) / 1024.0f) << x;
  }
  EXPECT_EQ(f32_to_f16(1.0f), 0x3c00);
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_TRUE(std::isinf(f16_to_f32(f32_to_f16(1e6f))));
}

TEST(AllocationPlan, DisjointPhaseSetsShareBytes) {
  AllocationPlan plan(256);
  plan.add("a", "activations", Shape{1024}, DType::kF32, Lifetime::of({0, 1}));
  plan.add("b", "activations", Shape{1024}, DType::kF32, Lifetime::of({2, 3}));
  plan.add("w", "weights", Shape{100}, DType::kF32);
  plan.finalize();
  EXPECT_EQ(plan.at("a").offset, plan.at("b").offset);
  EXPECT_EQ(plan.total_bytes(), 4096u + 512u);
  // Overlapping buffers never share bytes.
  const auto& w = plan.at("w");
  EXPECT_TRUE(w.offset >= 4096 || w.offset + w.bytes <= plan.at("a").offset);
}

TEST(AllocationPlan, PhaseSetsShareOnlyWhenDisjoint) {
  // Kinds recur (e.g. once per layer), so {0, 2} and {1} share although 1 lies "between" 0 and 2,
  // while {0, 2} and {2, 3} do not.
  AllocationPlan plan(256);
  plan.add("x", "g", Shape{1024}, DType::kF32, Lifetime::of({0, 2}));
  plan.add("y", "g", Shape{1024}, DType::kF32, Lifetime::of({1}));
  plan.add("z", "g", Shape{1024}, DType::kF32, Lifetime::of({2, 3}));
  plan.finalize();
  EXPECT_EQ(plan.at("x").offset, plan.at("y").offset);
  EXPECT_NE(plan.at("x").offset, plan.at("z").offset);
  EXPECT_EQ(plan.at("z").offset, plan.at("x").offset == 0 ? 4096u : 0u);
  EXPECT_EQ(plan.total_bytes(), 2 * 4096u);
  // Without sharing every buffer has its own bytes.
  AllocationPlan own(256);
  for (const char* n : {"x", "y", "z"})
    own.add(n, "g", Shape{1024}, DType::kF32, plan.at(n).lifetime);
  own.finalize(/*share_bytes=*/false);
  EXPECT_EQ(own.total_bytes(), 3 * 4096u);
}

TEST(AllocationPlan, LifetimeSets) {
  EXPECT_TRUE(Lifetime::whole_job().is_whole_job());
  EXPECT_TRUE(Lifetime::whole_job().overlaps(Lifetime::of({63})));
  EXPECT_FALSE(Lifetime::of({0, 5}).overlaps(Lifetime::of({1, 4, 6})));
  EXPECT_TRUE(Lifetime::of({0, 5}).overlaps(Lifetime::of({5})));
  EXPECT_TRUE(Lifetime::of({3}).contains(3));
  EXPECT_FALSE(Lifetime::of({3}).contains(2));
  AllocationPlan plan;
  plan.set_phase_names({"F", "L"});
  EXPECT_EQ(plan.describe(Lifetime::whole_job()), "all");
  EXPECT_EQ(plan.describe(Lifetime::of({0, 1, 4})), "F L #4");
}

TEST(AllocationPlan, OverlappingLifetimesDoNotCollide) {
  AllocationPlan plan(64);
  std::mt19937 rng(3);
  for (int i = 0; i < 200; ++i) {
    // Random sets over 8 kinds, some whole-job.
    const Lifetime life = rng() % 10 == 0 ? Lifetime::whole_job() : Lifetime{1 + rng() % 255};
    plan.add(fmt::format("x{}", i), "g", Shape{static_cast<int64_t>(1 + rng() % 500)}, DType::kF32,
             life);
  }
  plan.finalize();
  const auto& bs = plan.buffers();
  size_t shared = 0;
  for (size_t i = 0; i < bs.size(); ++i)
    for (size_t j = i + 1; j < bs.size(); ++j) {
      const bool live = bs[i].lifetime.overlaps(bs[j].lifetime);
      const bool overlap =
          bs[i].offset < bs[j].offset + bs[j].bytes && bs[j].offset < bs[i].offset + bs[i].bytes;
      EXPECT_FALSE(live && overlap) << bs[i].name << " " << bs[j].name;
      shared += overlap;
    }
  EXPECT_GT(shared, 0u);  // and some bytes are shared
}

TEST(AllocationPlan, DuplicateNameIsAnError) {
  AllocationPlan plan;
  plan.add("a", "g", Shape{1}, DType::kF32);
  EXPECT_THROW(plan.add("a", "g", Shape{1}, DType::kF32), Error);
}
