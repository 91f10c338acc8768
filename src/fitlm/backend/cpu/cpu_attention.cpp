// CpuBackend: causal grouped-query attention over packed segments, forward and backward.
// Straightforward two-pass softmax per query row; scores for one row live in a small buffer, the
// S×S matrix is never stored (the same contract the CUDA kernel has).
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "fitlm/backend/cpu/cpu_backend.h"
#include "fitlm/core/error.h"

namespace fitlm {
namespace {

struct Segments {
  std::vector<int32_t> start;  // per segment
  std::vector<int32_t> end;
};

Segments read_segments(const Tensor& cu_seqlens, int64_t t_count) {
  const int32_t* cu = cu_seqlens.as<int32_t>();
  const int64_t n = cu_seqlens.numel() - 1;
  FITLM_CHECK(n >= 1 && cu[0] == 0 && cu[n] == t_count, "cpu",
              "cu_seqlens must run from 0 to T={} (got {} entries)", t_count, n + 1);
  Segments s;
  for (int64_t i = 0; i < n; ++i) {
    FITLM_CHECK(cu[i] <= cu[i + 1], "cpu", "cu_seqlens not increasing at {}", i);
    s.start.push_back(cu[i]);
    s.end.push_back(cu[i + 1]);
  }
  return s;
}

float dot(const float* a, const float* b, int n) {
  float s = 0.0f;
  for (int i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

}  // namespace

void CpuBackend::attention_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                                   const Tensor& cu_seqlens, const AttentionShape& sh,
                                   Tensor out, Tensor lse) {
  const int64_t t_count = q.rows();
  const Segments seg = read_segments(cu_seqlens, t_count);
  const int hd = sh.head_dim, group = sh.n_heads / sh.n_kv_heads;
  const int64_t qs = q.cols(), ks = k.cols();
#pragma omp parallel
  {
    std::vector<float> p;
#pragma omp for schedule(dynamic, 4) collapse(2)
    for (int h = 0; h < sh.n_heads; ++h)
      for (int64_t t = 0; t < t_count; ++t) {
        // Segment of token t (segments are few; a linear scan is fine on the reference path).
        size_t si = 0;
        while (seg.end[si] <= t) ++si;
        const int64_t s0 = seg.start[si];
        const int kvh = h / group;
        const float* qr = q.as<float>() + t * qs + int64_t{h} * hd;
        p.resize(static_cast<size_t>(t - s0 + 1));
        float mx = -std::numeric_limits<float>::infinity();
        for (int64_t j = s0; j <= t; ++j) {
          p[j - s0] = sh.scale * dot(qr, k.as<float>() + j * ks + int64_t{kvh} * hd, hd);
          mx = std::max(mx, p[j - s0]);
        }
        double sum = 0.0;
        for (auto& e : p) sum += (e = std::exp(e - mx));
        float* o = out.as<float>() + t * qs + int64_t{h} * hd;
        std::fill(o, o + hd, 0.0f);
        const float inv = static_cast<float>(1.0 / sum);
        for (int64_t j = s0; j <= t; ++j) {
          const float w = p[j - s0] * inv;
          const float* vr = v.as<float>() + j * ks + int64_t{kvh} * hd;
          for (int d = 0; d < hd; ++d) o[d] += w * vr[d];
        }
        lse.as<float>()[int64_t{h} * t_count + t] = mx + static_cast<float>(std::log(sum));
      }
  }
}

void CpuBackend::attention_backward(const Tensor& dout, const Tensor& q, const Tensor& k,
                                    const Tensor& v, const Tensor& out, const Tensor& lse,
                                    const Tensor& cu_seqlens, const AttentionShape& sh, Tensor dq,
                                    Tensor dk, Tensor dv, Tensor /*workspace: not needed*/) {
  const int64_t t_count = q.rows();
  const Segments seg = read_segments(cu_seqlens, t_count);
  const int hd = sh.head_dim, group = sh.n_heads / sh.n_kv_heads;
  const int64_t qs = q.cols(), ks = k.cols();
  fill(dq, 0.0f);
  fill(dk, 0.0f);
  fill(dv, 0.0f);
  const int64_t n_seg = static_cast<int64_t>(seg.start.size());
  // Each (segment, kv head) task owns disjoint rows × columns of dq, dk and dv.
#pragma omp parallel for schedule(dynamic, 1) collapse(2)
  for (int64_t si = 0; si < n_seg; ++si)
    for (int kvh = 0; kvh < sh.n_kv_heads; ++kvh) {
      const int64_t s0 = seg.start[si], s1 = seg.end[si];
      for (int h = kvh * group; h < (kvh + 1) * group; ++h)
        for (int64_t i = s0; i < s1; ++i) {
          const float* qi = q.as<float>() + i * qs + int64_t{h} * hd;
          const float* gi = dout.as<float>() + i * qs + int64_t{h} * hd;
          const float* oi = out.as<float>() + i * qs + int64_t{h} * hd;
          float* dqi = dq.as<float>() + i * qs + int64_t{h} * hd;
          const float l = lse.as<float>()[int64_t{h} * t_count + i];
          const float di = dot(gi, oi, hd);  // D_i = Σ_d dout·out
          for (int64_t j = s0; j <= i; ++j) {
            const float* kj = k.as<float>() + j * ks + int64_t{kvh} * hd;
            const float* vj = v.as<float>() + j * ks + int64_t{kvh} * hd;
            const float pij = std::exp(sh.scale * dot(qi, kj, hd) - l);
            const float dsij = pij * (dot(gi, vj, hd) - di) * sh.scale;
            float* dkj = dk.as<float>() + j * ks + int64_t{kvh} * hd;
            float* dvj = dv.as<float>() + j * ks + int64_t{kvh} * hd;
            for (int d = 0; d < hd; ++d) {
              dqi[d] += dsij * kj[d];
              dkj[d] += dsij * qi[d];
              dvj[d] += pij * gi[d];
            }
          }
        }
    }
}

}  // namespace fitlm
