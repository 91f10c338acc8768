// 4-bit blockwise quantization (core/quant4): the bit layout on hand-made inputs, and round-trip
// properties on random tensors of odd sizes. Bit-exactness against the bitsandbytes rules is
// checked by tests/io/bnb4bit_torch_test.py (a PyTorch reference).
#include "fitlm/core/quant4.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

namespace fitlm::quant {
namespace {

std::vector<float> random_normal(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 0.05f);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

TEST(Quant4, ElementZeroIsTheHighNibble) {
  const std::vector<float> x = {1.0f, -1.0f, 0.0f};
  const auto nf4 = quantize4(x, QuantType::kNF4, 32, false);
  ASSERT_EQ(nf4.packed.size(), 2u);
  EXPECT_EQ(nf4.packed[0], 0xF0);  // +1 is NF4 code 15, −1 is code 0
  EXPECT_EQ(nf4.packed[1], 0x77);  // 0 is code 7, and so is the padding element
  EXPECT_EQ(nf4.absmax, std::vector<float>{1.0f});
  const auto fp4 = quantize4(x, QuantType::kFP4, 32, false);
  EXPECT_EQ(fp4.packed[0], 0x3B);  // +1 is FP4 code 3, −1 is 3 | 8
  EXPECT_EQ(fp4.packed[1], 0x00);
}

TEST(Quant4, TiesGoToTheLowerCode) {
  // Exactly halfway between NF4 codes 7 (0) and 8 (0.0795803): the lower one.
  const float mid = static_cast<float>((0.0 + double{0.07958029955625534f}) / 2.0);
  const std::vector<float> x = {mid, 1.0f};
  EXPECT_EQ(quantize4(x, QuantType::kNF4, 32, false).packed[0] >> 4, 7);
}

TEST(Quant4, ZeroBlockGivesZeroAbsmaxAndDequantizesToZero) {
  std::vector<float> x(70, 0.0f);
  x[65] = 0.5f;
  const auto q = quantize4(x, QuantType::kNF4, 64, false);
  EXPECT_EQ(q.absmax[0], 0.0f);
  std::vector<float> y(x.size());
  dequantize4(q, y);
  for (int i = 0; i < 64; ++i) EXPECT_EQ(y[i], 0.0f) << i;
  EXPECT_EQ(y[65], 0.5f);
}

TEST(Quant4, RoundTripErrorIsBoundedByHalfTheLargestCodeGap) {
  for (QuantType t : {QuantType::kNF4, QuantType::kFP4})
    for (bool dq : {false, true})
      for (int64_t bs : {32, 64, 128, 4096}) {
        const auto x = random_normal(5001, 7);  // odd, not a multiple of any blocksize
        const auto q = quantize4(x, t, bs, dq);
        ASSERT_EQ(q.packed.size(), 2501u);
        ASSERT_EQ(q.blocks(), (5001 + bs - 1) / bs);
        EXPECT_EQ(dq ? q.absmax_codes.size() : q.absmax.size(), static_cast<size_t>(q.blocks()));
        std::vector<float> y(x.size());
        dequantize4(q, y);
        const auto absmax = block_absmax(q);
        // Largest gap between adjacent codes: NF4 0.3038 (−1 → −0.696), FP4 0.333; plus the
        // 8-bit absmax error with double quantization (under 1% of the block's absmax here).
        const double gap = t == QuantType::kNF4 ? 0.3039 : 0.3334;
        for (size_t i = 0; i < x.size(); ++i) {
          const double a = std::fabs(absmax[i / bs]);
          EXPECT_LE(std::fabs(y[i] - x[i]), a * (gap / 2 + (dq ? 0.02 : 1e-6)) + 1e-7)
              << quant_type_name(t) << " dq " << dq << " bs " << bs << " at " << i;
        }
      }
}

TEST(Quant4, DoubleQuantKeepsTheAbsmaxClose) {
  const auto x = random_normal(64 * 600, 3);  // 600 blocks: three nested blocks of 256
  const auto plain = quantize4(x, QuantType::kNF4, 64, false);
  const auto dq = quantize4(x, QuantType::kNF4, 64, true);
  ASSERT_EQ(dq.nested_absmax.size(), 3u);
  const auto restored = block_absmax(dq);
  for (size_t i = 0; i < restored.size(); ++i)
    EXPECT_NEAR(restored[i], plain.absmax[i], 0.01 * plain.absmax[i]) << i;
  EXPECT_EQ(dq.packed.size(), plain.packed.size());
}

TEST(Quant4, DynamicMapIsSortedSignedAndSpansMinusOneToOne) {
  const auto& m = dynamic_map();
  for (size_t i = 1; i < m.size(); ++i) EXPECT_LT(m[i - 1], m[i]);
  EXPECT_EQ(m.back(), 1.0f);
  EXPECT_NEAR(m.front(), -0.99297, 1e-5);
  EXPECT_EQ(std::count(m.begin(), m.end(), 0.0f), 1);
}

TEST(Quant4, RejectsBlocksizesBitsandbytesDoesNot) {
  const std::vector<float> x(10, 1.0f);
  for (int64_t bs : {0, 16, 48, 8192})
    EXPECT_THROW(quantize4(x, QuantType::kNF4, bs, false), std::invalid_argument) << bs;
}

}  // namespace
}  // namespace fitlm::quant
