// CpuBackend: the mixture-of-experts ops (routing, its backward, the expert permutation, row
// gathers, the weighted combine and the weight gradient). The reference for every other
// backend: f32 math, f64 where a sum is free to take it. Unlike most CPU ops these read and
// write the float tensors of the interface in any float dtype (f32, bf16, f16), so the CUDA
// tests can compare against them on the very tensors the model passes.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "fitlm/backend/cpu/cpu_backend.h"
#include "fitlm/backend/moe_op_checks.h"
#include "fitlm/core/error.h"

namespace fitlm {
namespace {

float load(const Tensor& t, int64_t i) {
  switch (t.dtype) {
    case DType::kBF16: return bf16_to_f32(t.as<const uint16_t>()[i]);
    case DType::kF16: return f16_to_f32(t.as<const uint16_t>()[i]);
    default: return t.as<const float>()[i];
  }
}

void store(const Tensor& t, int64_t i, float v) {
  switch (t.dtype) {
    case DType::kBF16: t.as<uint16_t>()[i] = f32_to_bf16(v); break;
    case DType::kF16: t.as<uint16_t>()[i] = f32_to_f16(v); break;
    default: t.as<float>()[i] = v; break;
  }
}

// Every entry of an i32 index tensor in [0, limit).
void check_indices(const Tensor& idx, int64_t limit, const char* what) {
  const int32_t* p = idx.as<const int32_t>();
  for (int64_t i = 0; i < idx.numel(); ++i)
    FITLM_CHECK(p[i] >= 0 && p[i] < limit, "cpu", "{}[{}] = {} is outside [0, {})", what, i, p[i],
                limit);
}

}  // namespace

void moe_counting_sort(const int32_t* experts, int64_t t_count, int k, int num_experts,
                       int32_t* token_of_row, int32_t* pair_of_row, int32_t* row_of,
                       std::vector<int64_t>& counts) {
  FITLM_CHECK(num_experts > 0 && k > 0, "moe", "permute with {} experts, k = {}", num_experts, k);
  const int64_t n = t_count * k;
  FITLM_CHECK(n < (int64_t{1} << 31), "moe", "permute of {} rows: i32 indices overflow", n);
  counts.assign(static_cast<size_t>(num_experts), 0);
  for (int64_t p = 0; p < n; ++p) {
    const int32_t e = experts[p];
    FITLM_CHECK(e >= 0 && e < num_experts, "moe", "experts[{}, {}] = {} is outside [0, {})", p / k,
                p % k, e, num_experts);
    ++counts[static_cast<size_t>(e)];
  }
  std::vector<int64_t> next(static_cast<size_t>(num_experts), 0);  // first free row per expert
  for (int e = 1; e < num_experts; ++e)
    next[static_cast<size_t>(e)] =
        next[static_cast<size_t>(e - 1)] + counts[static_cast<size_t>(e - 1)];
  // Pairs visited in (t, j) order: stable, so rows of one expert stay ordered by t then j.
  for (int64_t p = 0; p < n; ++p) {
    const int64_t row = next[static_cast<size_t>(experts[p])]++;
    token_of_row[row] = static_cast<int32_t>(p / k);
    pair_of_row[row] = static_cast<int32_t>(p);
    row_of[p] = static_cast<int32_t>(row);
  }
}

void CpuBackend::moe_route(const Tensor& logits, int k, bool renormalize, Tensor probs,
                           Tensor weights, Tensor experts) {
  check_moe_route("cpu", logits, k, probs, weights, experts);
  const int64_t t_count = logits.rows(), e_count = logits.cols();
  float* pp = probs.as<float>();
  float* pw = weights.as<float>();
  int32_t* pe = experts.as<int32_t>();
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < t_count; ++t) {
    float* p = pp + t * e_count;
    float m = -std::numeric_limits<float>::infinity();
    for (int64_t e = 0; e < e_count; ++e) {
      p[e] = load(logits, t * e_count + e);
      m = std::max(m, p[e]);
    }
    double sum = 0.0;
    for (int64_t e = 0; e < e_count; ++e) {
      p[e] = std::exp(p[e] - m);
      sum += p[e];
    }
    const float s = static_cast<float>(sum);
    for (int64_t e = 0; e < e_count; ++e) p[e] /= s;
    // Top-k: descending probability, ties to the lower expert index.
    std::vector<int32_t> order(static_cast<size_t>(e_count));
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + k, order.end(),
                      [p](int32_t a, int32_t b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
    double chosen = 0.0;
    for (int j = 0; j < k; ++j) chosen += p[order[static_cast<size_t>(j)]];
    const float norm = renormalize ? static_cast<float>(chosen) : 1.0f;
    for (int j = 0; j < k; ++j) {
      const int32_t e = order[static_cast<size_t>(j)];
      pe[t * k + j] = e;
      pw[t * k + j] = renormalize ? p[e] / norm : p[e];
    }
  }
}

void CpuBackend::moe_route_backward(const Tensor& probs, const Tensor& weights,
                                    const Tensor& experts, const Tensor& dweights, bool renormalize,
                                    const Tensor& extra_dprobs, Tensor dlogits) {
  check_moe_route_backward("cpu", probs, weights, experts, dweights, extra_dprobs, dlogits);
  const int64_t t_count = probs.rows(), e_count = probs.cols(), k = experts.cols();
  check_indices(experts, e_count, "moe_route_backward experts");
  const float* pp = probs.as<const float>();
  const float* pw = weights.as<const float>();
  const float* pdw = dweights.as<const float>();
  const int32_t* pe = experts.as<const int32_t>();
  const float* extra = extra_dprobs.empty() ? nullptr : extra_dprobs.as<const float>();
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < t_count; ++t) {
    const float* p = pp + t * e_count;
    std::vector<double> dp(static_cast<size_t>(e_count), 0.0);
    if (renormalize) {
      // w_j = p_j / S with S = Σ chosen p: ∂L/∂p_i = (dw_i − Σ_j dw_j·w_j) / S for chosen i.
      double s = 0.0, dot = 0.0;
      for (int64_t j = 0; j < k; ++j) {
        s += p[pe[t * k + j]];
        dot += static_cast<double>(pdw[t * k + j]) * pw[t * k + j];
      }
      for (int64_t j = 0; j < k; ++j)
        dp[static_cast<size_t>(pe[t * k + j])] += (pdw[t * k + j] - dot) / s;
    } else {
      for (int64_t j = 0; j < k; ++j) dp[static_cast<size_t>(pe[t * k + j])] += pdw[t * k + j];
    }
    if (extra)
      for (int64_t e = 0; e < e_count; ++e) dp[static_cast<size_t>(e)] += extra[t * e_count + e];
    // Softmax backward: dlogits_e = p_e · (dp_e − Σ_f p_f·dp_f).
    double dot = 0.0;
    for (int64_t e = 0; e < e_count; ++e) dot += p[e] * dp[static_cast<size_t>(e)];
    for (int64_t e = 0; e < e_count; ++e)
      store(dlogits, t * e_count + e,
            static_cast<float>(p[e] * (dp[static_cast<size_t>(e)] - dot)));
  }
}

void CpuBackend::moe_permute(const Tensor& experts, int num_experts, Tensor token_of_row,
                             Tensor pair_of_row, Tensor row_of, std::vector<int64_t>& counts) {
  check_moe_permute("cpu", experts, num_experts, token_of_row, pair_of_row, row_of);
  const int64_t t_count = experts.rows(), k = experts.cols();
  moe_counting_sort(experts.as<const int32_t>(), t_count, static_cast<int>(k), num_experts,
                    token_of_row.as<int32_t>(), pair_of_row.as<int32_t>(), row_of.as<int32_t>(),
                    counts);
}

void CpuBackend::gather_rows(const Tensor& src, const Tensor& index, const Tensor& scale,
                             Tensor dst) {
  check_gather_rows("cpu", src, index, scale, dst);
  const int64_t n = index.numel(), h = src.cols();
  check_indices(index, src.rows(), "gather_rows index");
  const int32_t* idx = index.as<const int32_t>();
  const float* sc = scale.empty() ? nullptr : scale.as<const float>();
#pragma omp parallel for schedule(static) if (n * h > 65536)
  for (int64_t i = 0; i < n; ++i) {
    const int64_t from = int64_t{idx[i]} * h;
    const float s = sc ? sc[i] : 1.0f;  // × 1 is exact
    for (int64_t c = 0; c < h; ++c) store(dst, i * h + c, load(src, from + c) * s);
  }
}

void CpuBackend::moe_combine(const Tensor& rows, const Tensor& row_of, const Tensor& weights,
                             Tensor y, bool accumulate) {
  check_moe_combine("cpu", rows, row_of, weights, y);
  const int64_t t_count = row_of.rows(), k = row_of.cols(), h = rows.cols();
  check_indices(row_of, rows.rows(), "moe_combine row_of");
  const int32_t* ro = row_of.as<const int32_t>();
  const float* w = weights.empty() ? nullptr : weights.as<const float>();
#pragma omp parallel for schedule(static) if (t_count * h > 65536)
  for (int64_t t = 0; t < t_count; ++t) {
    for (int64_t c = 0; c < h; ++c) {
      float acc = 0.0f;  // f32, j in order: what every backend computes
      for (int64_t j = 0; j < k; ++j) {
        const float v = load(rows, int64_t{ro[t * k + j]} * h + c);
        acc += w ? w[t * k + j] * v : v;
      }
      store(y, t * h + c, accumulate ? load(y, t * h + c) + acc : acc);
    }
  }
}

void CpuBackend::moe_weight_grad(const Tensor& dy, const Tensor& rows, const Tensor& row_of,
                                 Tensor dweights) {
  check_moe_weight_grad("cpu", dy, rows, row_of, dweights);
  const int64_t t_count = row_of.rows(), k = row_of.cols(), h = rows.cols();
  check_indices(row_of, rows.rows(), "moe_weight_grad row_of");
  const int32_t* ro = row_of.as<const int32_t>();
  float* dw = dweights.as<float>();
#pragma omp parallel for schedule(static) if (t_count * k * h > 65536)
  for (int64_t p = 0; p < t_count * k; ++p) {
    const int64_t t = p / k, from = int64_t{ro[p]} * h;
    double s = 0.0;
    for (int64_t c = 0; c < h; ++c)
      s += static_cast<double>(load(dy, t * h + c)) * load(rows, from + c);
    dw[p] = static_cast<float>(s);
  }
}

}  // namespace fitlm
