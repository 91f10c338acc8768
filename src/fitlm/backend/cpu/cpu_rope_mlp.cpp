// CpuBackend: rotary position embedding and the SwiGLU activation.
#include <cmath>

#include "fitlm/backend/cpu/cpu_backend.h"
#include "fitlm/core/error.h"

namespace fitlm {

void CpuBackend::rope(Tensor x, int n_heads, int head_dim, const Tensor& positions,
                      const Tensor& inv_freq, bool inverse) {
  const int64_t t_count = x.rows();
  FITLM_CHECK(x.cols() == int64_t{n_heads} * head_dim, "cpu", "rope on {} with {}x{}",
              x.shape.str(), n_heads, head_dim);
  const int half = head_dim / 2;
  const int32_t* pos = positions.as<int32_t>();
  const float* freq = inv_freq.as<float>();
  const float sign = inverse ? -1.0f : 1.0f;
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < t_count; ++t) {
    for (int j = 0; j < half; ++j) {
      // As HF: the angle is computed in f32 as position · inv_freq, then cos/sin of it.
      const float angle = static_cast<float>(pos[t]) * freq[j];
      const float c = std::cos(angle), s = sign * std::sin(angle);
      for (int h = 0; h < n_heads; ++h) {
        float* row = x.as<float>() + t * x.cols() + int64_t{h} * head_dim;
        const float x1 = row[j], x2 = row[j + half];
        row[j] = x1 * c - x2 * s;
        row[j + half] = x2 * c + x1 * s;
      }
    }
  }
}

void CpuBackend::swiglu_forward(const Tensor& gate, const Tensor& up, Tensor out) {
  const int64_t n = gate.numel();
  const float *g = gate.as<float>(), *u = up.as<float>();
  float* o = out.as<float>();
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) o[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

void CpuBackend::swiglu_backward(const Tensor& dout, const Tensor& gate, const Tensor& up,
                                 Tensor dgate, Tensor dup) {
  const int64_t n = gate.numel();
  const float *d = dout.as<float>(), *g = gate.as<float>(), *u = up.as<float>();
  float *dg = dgate.as<float>(), *du = dup.as<float>();
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) {
    // Every input at i is read before an output at i is written: outputs may alias inputs.
    const float gi = g[i], ui = u[i], di = d[i];
    const float sig = 1.0f / (1.0f + std::exp(-gi));
    const float silu = gi * sig;
    du[i] = di * silu;
    dg[i] = di * ui * sig * (1.0f + gi * (1.0f - sig));
  }
}

}  // namespace fitlm
