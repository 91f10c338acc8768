// AllocationPlan::finalize places buffers by first fit over per-lifetime runs; these tests check
// it against the straightforward quadratic placement it replaced (same offsets, same total) and
// that a 1000-layer transformer plan is fast.
#include "fitlm/core/allocation_plan.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <numeric>
#include <random>

#include "fitlm/model/presets.h"
#include "fitlm/model/transformer.h"

namespace fitlm {
namespace {

// The placement finalize() used to do: for each buffer (largest first), scan every placed
// buffer whose lifetime overlaps, and take the lowest gap.
std::vector<size_t> reference_offsets(const std::vector<BufferSpec>& buffers, size_t alignment,
                                      bool share_bytes, size_t& total) {
  auto align = [&](size_t v) { return (v + alignment - 1) / alignment * alignment; };
  std::vector<size_t> order(buffers.size()), offsets(buffers.size(), 0);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return buffers[a].bytes > buffers[b].bytes; });
  std::vector<size_t> placed;
  total = 0;
  for (size_t i : order) {
    std::vector<std::pair<size_t, size_t>> busy;
    for (size_t j : placed)
      if (!share_bytes || buffers[j].lifetime.overlaps(buffers[i].lifetime))
        busy.emplace_back(offsets[j], offsets[j] + align(buffers[j].bytes));
    std::sort(busy.begin(), busy.end());
    size_t offset = 0;
    for (auto [lo, hi] : busy) {
      if (offset + align(buffers[i].bytes) <= lo) break;
      offset = std::max(offset, hi);
    }
    offsets[i] = offset;
    total = std::max(total, offset + align(buffers[i].bytes));
    placed.push_back(i);
  }
  return offsets;
}

TEST(AllocationPlanPlacement, SameOffsetsAsExhaustiveFirstFit) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 300; ++trial) {
    AllocationPlan plan(trial % 2 ? 256 : 64);
    const int n = 1 + static_cast<int>(rng() % 120);
    const int kinds = 1 + static_cast<int>(rng() % 6);
    for (int b = 0; b < n; ++b) {
      // Sizes with many ties (stable order matters), zero-size buffers, and lifetimes from a
      // few phase kinds, whole-job and empty sets included.
      const int64_t elems = rng() % 5 == 0 ? 0 : static_cast<int64_t>(1 + rng() % 9) * 100;
      Lifetime life{rng() % 4 == 0 ? ~uint64_t{0} : rng() % (uint64_t{1} << kinds)};
      plan.add("b" + std::to_string(b), "g", Shape{elems}, DType::kF32, life);
    }
    const bool share = trial % 5 != 0;
    size_t total = 0;
    const std::vector<size_t> want =
        reference_offsets(plan.buffers(), trial % 2 ? 256 : 64, share, total);
    plan.finalize(share);
    ASSERT_EQ(plan.total_bytes(), total) << "trial " << trial;
    for (size_t b = 0; b < want.size(); ++b)
      ASSERT_EQ(plan.buffers()[b].offset, want[b]) << "trial " << trial << " buffer " << b;
  }
}

TEST(AllocationPlanPlacement, TransformerPlanMatchesExhaustiveFirstFit) {
  ModelConfig c = preset_config("llama-3.2-1b");
  c.num_layers = 6;
  for (bool recompute : {false, true}) {
    RunShape shape;
    shape.max_tokens = 256;
    shape.with_optimizer = true;
    shape.recompute = recompute ? RecomputePolicy::kFull : RecomputePolicy::kSave;
    shape.recompute_layers = recompute ? 3 : -1;
    LoraConfig lora;
    lora.r = 8;
    lora.targets = {kAllProjections.begin(), kAllProjections.end()};
    const AllocationPlan plan = plan_transformer(c, TrainMode::kLora, lora, shape, DType::kBF16);
    size_t total = 0;
    const std::vector<size_t> want = reference_offsets(plan.buffers(), 256, true, total);
    EXPECT_EQ(plan.total_bytes(), total);
    for (size_t b = 0; b < want.size(); ++b)
      ASSERT_EQ(plan.buffers()[b].offset, want[b]) << plan.buffers()[b].name;
  }
}

// The planner was quadratic in layers (104 s for 1,000); it is now near-linear.
TEST(AllocationPlanPlacement, ThousandLayersPlanQuickly) {
  ModelConfig c = preset_config("llama-3.2-1b");
  c.num_layers = 1000;
  RunShape shape;
  shape.max_tokens = 2048;
  shape.with_optimizer = true;
  LoraConfig lora;
  lora.r = 16;
  lora.targets = {kAllProjections.begin(), kAllProjections.end()};
  const auto t0 = std::chrono::steady_clock::now();
  const AllocationPlan plan = plan_transformer(c, TrainMode::kFull, lora, shape, DType::kBF16);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_GT(plan.buffers().size(), 50000u);
  EXPECT_LT(s, 20.0) << "planning 1000 layers took " << s << " s";
}

}  // namespace
}  // namespace fitlm
