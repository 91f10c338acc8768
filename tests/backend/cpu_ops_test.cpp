// CPU backend ops where the model relies on a property beyond their results: running in place.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "fitlm/backend/backend.h"

namespace fitlm {
namespace {

std::vector<float> random_vec(size_t n, uint32_t seed, float stddev = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, stddev);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

Tensor host(std::vector<float>& v, Shape s) {
  return Tensor(v.data(), DType::kF32, s, Device{});
}

TEST(CpuOps, SwigluBackwardInPlaceEqualsOutOfPlace) {
  auto be = make_backend("cpu");
  const int64_t t = 37, i = 1003;  // above the OpenMP threshold
  const Shape s{t, i};
  std::vector<float> dout = random_vec(t * i, 1), gate = random_vec(t * i, 2, 2.0f),
                     up = random_vec(t * i, 3);
  std::vector<float> dgate(t * i), dup(t * i);
  be->swiglu_backward(host(dout, s), host(gate, s), host(up, s), host(dgate, s), host(dup, s));
  // dgate into gate, dup into up, as the model does.
  be->swiglu_backward(host(dout, s), host(gate, s), host(up, s), host(gate, s), host(up, s));
  EXPECT_EQ(gate, dgate);
  EXPECT_EQ(up, dup);
}

}  // namespace
}  // namespace fitlm
