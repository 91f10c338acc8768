// CpuBackend: element-wise ops, bias and dropout (f32).
#include "fitlm/backend/cpu/cpu_backend.h"
#include "fitlm/core/error.h"

namespace fitlm {

void CpuBackend::add(const Tensor& a, const Tensor& b, Tensor out) {
  FITLM_CHECK(a.numel() == b.numel() && a.numel() == out.numel(), "cpu", "add {} + {} -> {}",
              a.shape.str(), b.shape.str(), out.shape.str());
  const float *pa = a.as<float>(), *pb = b.as<float>();
  float* po = out.as<float>();
  const int64_t n = a.numel();
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) po[i] = pa[i] + pb[i];
}

void CpuBackend::axpy(float alpha, const Tensor& x, Tensor y) {
  FITLM_CHECK(x.numel() == y.numel(), "cpu", "axpy {} -> {}", x.shape.str(), y.shape.str());
  const float* px = x.as<float>();
  float* py = y.as<float>();
  const int64_t n = x.numel();
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) py[i] += alpha * px[i];
}

void CpuBackend::scale(Tensor x, float alpha) {
  float* p = x.as<float>();
  const int64_t n = x.numel();
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) p[i] *= alpha;
}

void CpuBackend::add_bias(Tensor x, const Tensor& bias) {
  const int64_t rows = x.rows(), cols = x.cols();
  FITLM_CHECK(bias.numel() == cols, "cpu", "bias {} for {}", bias.shape.str(), x.shape.str());
  float* px = x.as<float>();
  const float* pb = bias.as<float>();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) px[r * cols + c] += pb[c];
}

void CpuBackend::bias_backward(const Tensor& dout, Tensor dbias) {
  const int64_t rows = dout.rows(), cols = dout.cols();
  const float* pd = dout.as<float>();
  float* pb = dbias.as<float>();
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < cols; ++c) {
    double s = 0.0;
    for (int64_t r = 0; r < rows; ++r) s += pd[r * cols + c];
    pb[c] += static_cast<float>(s);
  }
}

void CpuBackend::dropout(const Tensor& x, Tensor out, float p, uint64_t seed) {
  const float* px = x.as<float>();
  float* po = out.as<float>();
  const int64_t n = x.numel();
  const float keep_scale = 1.0f / (1.0f - p);
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i)
    po[i] = dropout_uniform(seed, static_cast<uint64_t>(i)) >= p ? px[i] * keep_scale : 0.0f;
}

}  // namespace fitlm
