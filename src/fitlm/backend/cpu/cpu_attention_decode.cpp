// CpuBackend: attention of one new query per sequence over that sequence's KV cache. Same
// two-pass softmax as attention_forward, so a decode step reproduces the full forward's row.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "fitlm/backend/cpu/cpu_backend.h"
#include "fitlm/core/error.h"

namespace fitlm {

void CpuBackend::attention_decode(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                                  const Tensor& lengths, const AttentionShape& sh, Tensor out) {
  const int64_t batch = q.rows();
  FITLM_CHECK(k_cache.ndim() == 3 && k_cache.dim(0) >= batch && lengths.numel() >= batch, "cpu",
              "attention_decode: k_cache {} / lengths {} do not cover {} queries",
              k_cache.shape.str(), lengths.shape.str(), batch);
  const int hd = sh.head_dim, group = sh.n_heads / sh.n_kv_heads;
  const int64_t max_len = k_cache.dim(1), ks = k_cache.dim(2), qs = q.cols();
  const int32_t* len = lengths.as<int32_t>();
  for (int64_t b = 0; b < batch; ++b)
    FITLM_CHECK(len[b] >= 1 && len[b] <= max_len, "cpu",
                "attention_decode: length {} of row {} outside [1, {}]", len[b], b, max_len);
#pragma omp parallel
  {
    std::vector<float> p;
#pragma omp for schedule(dynamic, 1) collapse(2)
    for (int64_t b = 0; b < batch; ++b)
      for (int h = 0; h < sh.n_heads; ++h) {
        const int kvh = h / group;
        const int64_t n = len[b];
        const float* qr = q.as<float>() + b * qs + int64_t{h} * hd;
        const float* kb = k_cache.as<float>() + b * max_len * ks + int64_t{kvh} * hd;
        const float* vb = v_cache.as<float>() + b * max_len * ks + int64_t{kvh} * hd;
        p.resize(static_cast<size_t>(n));
        float mx = -std::numeric_limits<float>::infinity();
        for (int64_t j = 0; j < n; ++j) {
          const float* kr = kb + j * ks;
          float s = 0.0f;
          for (int d = 0; d < hd; ++d) s += qr[d] * kr[d];
          p[j] = sh.scale * s;
          mx = std::max(mx, p[j]);
        }
        double sum = 0.0;
        for (auto& e : p) sum += (e = std::exp(e - mx));
        float* o = out.as<float>() + b * qs + int64_t{h} * hd;
        std::fill(o, o + hd, 0.0f);
        const float inv = static_cast<float>(1.0 / sum);
        for (int64_t j = 0; j < n; ++j) {
          const float w = p[j] * inv;
          const float* vr = vb + j * ks;
          for (int d = 0; d < hd; ++d) o[d] += w * vr[d];
        }
      }
  }
}

}  // namespace fitlm
