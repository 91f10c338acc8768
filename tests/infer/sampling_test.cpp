// The logits processors on handcrafted rows, checked against what HF's processors give.
#include "fitlm/infer/sampling.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

using namespace fitlm;

namespace {
constexpr float kInf = std::numeric_limits<float>::infinity();
}

TEST(Sampling, RepetitionPenaltyDividesPositiveAndMultipliesNegativeOncePerId) {
  std::vector<float> l = {2.0f, -2.0f, 1.0f, 0.5f};
  const std::vector<int32_t> prev = {0, 1, 1, 0};
  apply_repetition_penalty(l, prev, 2.0f);
  EXPECT_EQ(l, (std::vector<float>{1.0f, -4.0f, 1.0f, 0.5f}));
}

TEST(Sampling, TopKKeepsTheKLargestAndTies) {
  std::vector<float> l = {1.0f, 3.0f, 2.0f, 0.0f, 2.0f};
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 2;
  apply_temperature_top_k_top_p(l, p);
  EXPECT_EQ(l, (std::vector<float>{-kInf, 3.0f, 2.0f, -kInf, 2.0f}));
}

TEST(Sampling, TopPKeepsTheSmallestSetReachingP) {
  // probs 0.5, 0.25, 0.125, 0.125 (log-space)
  const std::vector<float> base = {std::log(0.5f), std::log(0.25f), std::log(0.125f),
                                   std::log(0.125f)};
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_p = 0.7f;  // 0.5 + 0.25 reaches 0.7: keep two
  std::vector<float> l = base;
  apply_temperature_top_k_top_p(l, p);
  EXPECT_EQ(l[0], base[0]);
  EXPECT_EQ(l[1], base[1]);
  EXPECT_EQ(l[2], -kInf);
  EXPECT_EQ(l[3], -kInf);
  p.top_p = 0.1f;  // only the most likely survives
  l = base;
  apply_temperature_top_k_top_p(l, p);
  EXPECT_EQ(l[0], base[0]);
  EXPECT_EQ(l[1], -kInf);
}

TEST(Sampling, TemperatureScalesAndGreedyIsArgmaxAfterPenalty) {
  std::vector<float> l = {1.0f, 4.0f, 2.0f};
  SamplingParams p;
  p.temperature = 2.0f;
  apply_temperature_top_k_top_p(l, p);
  EXPECT_EQ(l, (std::vector<float>{0.5f, 2.0f, 1.0f}));
  SplitMix64 rng(1);
  SamplingParams greedy;
  greedy.repetition_penalty = 3.0f;
  std::vector<float> g = {1.0f, 2.0f, 1.5f};
  const std::vector<int32_t> prev = {1};
  EXPECT_EQ(sample_next(g, prev, greedy, rng), 2);  // 2/3 < 1.5
}

TEST(Sampling, DrawsFollowTheDistribution) {
  SplitMix64 rng(42);
  SamplingParams p;
  p.temperature = 1.0f;
  int counts[3] = {0, 0, 0};
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    std::vector<float> l = {std::log(0.6f), std::log(0.3f), std::log(0.1f)};
    ++counts[sample_next(l, {}, p, rng)];
  }
  EXPECT_NEAR(counts[0] / double(n), 0.6, 0.02);
  EXPECT_NEAR(counts[1] / double(n), 0.3, 0.02);
  EXPECT_NEAR(counts[2] / double(n), 0.1, 0.02);
}
