// Helpers for the CUDA-vs-CPU op tests: device buffers owned by a test, random inputs rounded to
// the storage dtype (so both backends see the same numbers), norm-wise relative error.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <memory>
#include <random>
#include <vector>

#include "fitlm/backend/backend.h"
#include "fitlm/backend/cpu/cpu_backend.h"
#include "fitlm/backend/cuda/cuda_backend.h"
#include "fitlm/core/error.h"

namespace fitlm::cuda_test {

// A device tensor allocated through the backend (tests stand in for the Arena here).
class DeviceTensor {
 public:
  DeviceTensor(Backend& be, DType dtype, Shape shape) : be_(&be) {
    t_ = Tensor(nullptr, dtype, shape, be.device());
    t_.data = be.allocate(std::max<size_t>(t_.bytes(), 16));
  }
  ~DeviceTensor() { be_->deallocate(t_.data); }
  DeviceTensor(const DeviceTensor&) = delete;
  DeviceTensor& operator=(const DeviceTensor&) = delete;
  operator Tensor() const { return t_; }
  const Tensor& tensor() const { return t_; }

 private:
  Backend* be_;
  Tensor t_;
};

inline std::vector<float> random_vec(int64_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = dist(rng);
  return v;
}

// The values a tensor of `dtype` would hold.
inline std::vector<float> rounded(std::vector<float> v, DType dtype) {
  for (auto& x : v) {
    if (dtype == DType::kBF16) x = bf16_to_f32(f32_to_bf16(x));
    if (dtype == DType::kF16) x = f16_to_f32(f32_to_f16(x));
  }
  return v;
}

inline Tensor host_tensor(std::vector<float>& v, Shape s) {
  return Tensor(v.data(), DType::kF32, s, Device{});
}
inline Tensor host_i32(std::vector<int32_t>& v, Shape s) {
  return Tensor(v.data(), DType::kI32, s, Device{});
}

// A device tensor of `dtype` holding `values` (already rounded by the caller if it matters).
inline std::unique_ptr<DeviceTensor> to_device(Backend& be, const std::vector<float>& values,
                                               DType dtype, Shape s) {
  auto d = std::make_unique<DeviceTensor>(be, dtype, s);
  be.upload(*d, values.data(), DType::kF32);
  return d;
}
inline std::unique_ptr<DeviceTensor> to_device_i32(Backend& be, const std::vector<int32_t>& v,
                                                   Shape s) {
  auto d = std::make_unique<DeviceTensor>(be, DType::kI32, s);
  be.upload(*d, v.data(), DType::kI32);
  return d;
}

// A device output filled with NaN first, so an element the op never writes fails the check.
inline std::unique_ptr<DeviceTensor> poisoned(Backend& be, DType dtype, Shape s) {
  auto d = std::make_unique<DeviceTensor>(be, dtype, s);
  be.fill(*d, std::nanf(""));
  return d;
}

inline std::vector<float> from_device(Backend& be, const Tensor& t) {
  std::vector<float> v(static_cast<size_t>(t.numel()));
  be.download(t, v.data());
  return v;
}

// ‖a − b‖ / ‖b‖ in f64; NaN anywhere gives NaN, which fails every `<` check.
inline double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    const double d = static_cast<double>(a[i]) - b[i];
    num += d * d;
    den += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-30);
}

// Tolerance for an output stored in `dtype`.
inline double tol_for(DType dtype) {
  return dtype == DType::kF32 ? 1e-5 : 1e-2;
}

// Records the worst error per op so the test log ends with one table.
void record(const std::string& op, double err);

// FITLM_ATTENTION for the lifetime of one test: cuDNN required, or fitlm's kernels only.
struct ScopedAttentionMode {
  explicit ScopedAttentionMode(bool cudnn) {
    setenv("FITLM_ATTENTION", cudnn ? "cudnn" : "kernels", 1);
  }
  ~ScopedAttentionMode() { unsetenv("FITLM_ATTENTION"); }
};

}  // namespace fitlm::cuda_test
