// CpuBackend: cross-entropy over a logits chunk, gradient norms and AdamW.
#include <algorithm>
#include <cmath>

#include "fitlm/backend/cpu/cpu_backend.h"
#include "fitlm/core/error.h"

namespace fitlm {

void CpuBackend::cross_entropy(Tensor logits, const Tensor& labels, Tensor losses,
                               float grad_scale, bool compute_grad) {
  const int64_t rows = logits.rows(), vocab = logits.cols();
  const int32_t* lab = labels.as<int32_t>();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    float* z = logits.as<float>() + r * vocab;
    if (lab[r] == -100) {
      losses.as<float>()[r] = 0.0f;
      if (compute_grad) std::fill(z, z + vocab, 0.0f);
      continue;
    }
    FITLM_CHECK(lab[r] >= 0 && lab[r] < vocab, "cpu", "label {} outside vocabulary {}", lab[r],
                vocab);
    float mx = z[0];
    for (int64_t i = 1; i < vocab; ++i) mx = std::max(mx, z[i]);
    double sum = 0.0;
    for (int64_t i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(z[i] - mx));
    const double lse = mx + std::log(sum);
    losses.as<float>()[r] = static_cast<float>(lse - z[lab[r]]);
    if (!compute_grad) continue;
    for (int64_t i = 0; i < vocab; ++i)
      z[i] = static_cast<float>(std::exp(static_cast<double>(z[i]) - lse)) * grad_scale;
    z[lab[r]] -= grad_scale;
  }
}

double CpuBackend::sum_squares(const Tensor& x) {
  const float* p = x.as<float>();
  const int64_t n = x.numel();
  double s = 0.0;
#pragma omp parallel for reduction(+ : s) schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(p[i]) * p[i];
  return s;
}

void CpuBackend::adamw_step(Tensor param, const Tensor& grad, Tensor m, Tensor v,
                            const AdamWParams& hp, float grad_scale) {
  // torch.optim.AdamW semantics: decay first, then the bias-corrected Adam update.
  const int64_t n = param.numel();
  float *p = param.as<float>(), *pm = m.as<float>(), *pv = v.as<float>();
  const float* g = grad.as<float>();
  const double bc1 = 1.0 - std::pow(static_cast<double>(hp.beta1), static_cast<double>(hp.step));
  const double bc2 = 1.0 - std::pow(static_cast<double>(hp.beta2), static_cast<double>(hp.step));
  const float step_size = static_cast<float>(hp.lr / bc1);
  const float bc2_sqrt = static_cast<float>(std::sqrt(bc2));
  const float decay = 1.0f - hp.lr * hp.weight_decay;
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i] * grad_scale;
    p[i] *= decay;
    pm[i] = hp.beta1 * pm[i] + (1.0f - hp.beta1) * gi;
    pv[i] = hp.beta2 * pv[i] + (1.0f - hp.beta2) * gi * gi;
    p[i] -= step_size * pm[i] / (std::sqrt(pv[i]) / bc2_sqrt + hp.eps);
  }
}

}  // namespace fitlm
