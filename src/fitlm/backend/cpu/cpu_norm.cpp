// CpuBackend: embedding lookup and RMSNorm, forward and backward.
#include <algorithm>
#include <cmath>

#include "fitlm/backend/cpu/cpu_backend.h"
#include "fitlm/core/error.h"

namespace fitlm {

void CpuBackend::embedding_forward(const Tensor& ids, const Tensor& table, Tensor out) {
  const int64_t t_count = ids.numel(), h = table.cols(), vocab = table.rows();
  const int32_t* pid = ids.as<int32_t>();
  for (int64_t t = 0; t < t_count; ++t)
    if (pid[t] < 0 || pid[t] >= vocab)
      throw_input_error("model", "token id {} at position {} is outside the vocabulary [0, {})",
                        pid[t], t, vocab);
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < t_count; ++t)
    std::copy_n(table.as<float>() + pid[t] * h, h, out.as<float>() + t * h);
}

void CpuBackend::embedding_backward(const Tensor& ids, const Tensor& dout, Tensor dtable) {
  // Sequential over tokens: repeated ids accumulate into the same row.
  const int64_t t_count = ids.numel(), h = dtable.cols();
  const int32_t* pid = ids.as<int32_t>();
  for (int64_t t = 0; t < t_count; ++t) {
    float* row = dtable.as<float>() + pid[t] * h;
    const float* d = dout.as<float>() + t * h;
    for (int64_t i = 0; i < h; ++i) row[i] += d[i];
  }
}

void CpuBackend::rmsnorm_forward(const Tensor& x, const Tensor& w, float eps, Tensor out,
                                 Tensor rstd) {
  const int64_t rows = x.rows(), h = x.cols();
  FITLM_CHECK(w.numel() == h, "cpu", "rmsnorm weight {} for {}", w.shape.str(), x.shape.str());
  const float* pw = w.as<float>();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const float* px = x.as<float>() + r * h;
    float* po = out.as<float>() + r * h;
    double ss = 0.0;
    for (int64_t i = 0; i < h; ++i) ss += static_cast<double>(px[i]) * px[i];
    const float rs = 1.0f / std::sqrt(static_cast<float>(ss / h) + eps);
    rstd.as<float>()[r] = rs;
    for (int64_t i = 0; i < h; ++i) po[i] = pw[i] * (px[i] * rs);
  }
}

void CpuBackend::rmsnorm_backward(const Tensor& dout, const Tensor& x, const Tensor& w,
                                  const Tensor& rstd, Tensor dx, Tensor dw) {
  const int64_t rows = x.rows(), h = x.cols();
  const float* pw = w.as<float>();
  // dx_i = rs·(w_i·g_i − x̂_i · mean_j(w_j·g_j·x̂_j)), x̂ = x·rs
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const float* px = x.as<float>() + r * h;
    const float* pg = dout.as<float>() + r * h;
    float* pdx = dx.as<float>() + r * h;
    const float rs = rstd.as<float>()[r];
    double dot = 0.0;
    for (int64_t i = 0; i < h; ++i) dot += static_cast<double>(pw[i]) * pg[i] * px[i] * rs;
    const float mean = static_cast<float>(dot / h);
    for (int64_t i = 0; i < h; ++i) pdx[i] = rs * (pw[i] * pg[i] - px[i] * rs * mean);
  }
  if (dw.empty()) return;
  float* pdw = dw.as<float>();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < h; ++i) {
    double s = 0.0;
    for (int64_t r = 0; r < rows; ++r)
      s += static_cast<double>(dout.as<float>()[r * h + i]) * x.as<float>()[r * h + i] *
           rstd.as<float>()[r];
    pdw[i] += static_cast<float>(s);
  }
}

}  // namespace fitlm
