// Mixture-of-experts kernels. Kept simple: one warp per token for the routing ops (a row of at
// most kMoeMaxExperts probabilities sits in shared memory), a grid-stride loop over elements
// for the gather and the combine, one warp per (t, j) pair for the weight gradient. f32 math;
// every sum has a fixed order (a lane's strided partials, then the xor butterfly of warp_sum, or
// a plain loop over j), and no float atomics, so every result is bit-reproducible. Bad indices
// raise the backend's error flag (reported by synchronize()) instead of faulting. The
// permutation is a two-pass counting sort, one block per expert (moe_count / moe_scatter).
#include <climits>

#include "fitlm/backend/cuda/cuda_common.cuh"
#include "fitlm/backend/cuda/cuda_moe.cuh"

namespace fitlm::cuda {
namespace {

constexpr int kWarpsPerBlock = 4;  // tokens (or pairs) per block of the warp-per-item kernels
constexpr int kWarpBlockThreads = 32 * kWarpsPerBlock;

unsigned warp_blocks(int64_t items) {
  return static_cast<unsigned>((items + kWarpsPerBlock - 1) / kWarpsPerBlock);
}

// Softmax over the row in f32 (max subtracted), then k rounds of a warp arg-max: descending
// probability, ties to the lower expert index (a strict total order, so the butterfly gives
// every lane the same winner). Lane j keeps choice j; the renormalising sum runs over j in order.
template <typename L>
__global__ void moe_route_kernel(L logits, int64_t t_count, int e_count, int k, bool renormalize,
                                 float* probs, float* weights, int32_t* experts) {
  __shared__ float rows[kWarpsPerBlock][kMoeMaxExperts];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t t = blockIdx.x * int64_t{kWarpsPerBlock} + warp;
  if (t >= t_count) return;  // whole warps leave: no block-wide barrier below
  float* p = rows[warp];
  const int64_t base = t * e_count;
  float m = -INFINITY;
  for (int e = lane; e < e_count; e += 32) {
    const float x = logits.load(base + e);
    p[e] = x;
    m = fmaxf(m, x);
  }
  m = warp_max(m);
  float s = 0.0f;
  for (int e = lane; e < e_count; e += 32) {
    const float x = expf(p[e] - m);
    p[e] = x;
    s += x;
  }
  s = warp_sum(s);
  for (int e = lane; e < e_count; e += 32) {
    const float x = p[e] / s;
    p[e] = x;
    probs[base + e] = x;
  }
  __syncwarp();
  float my_p = 0.0f;
  int my_e = 0;
  for (int j = 0; j < k; ++j) {
    // Taken experts are marked −1 (probabilities are ≥ 0; NaN never wins either).
    float bv = -1.0f;
    int bi = INT_MAX;
    for (int e = lane; e < e_count; e += 32) {
      const float v = p[e];
      if (v >= 0.0f && v > bv) bv = v, bi = e;  // e ascends: a tie keeps the lower index
    }
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
      const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
      if (ov > bv || (ov == bv && oi < bi)) bv = ov, bi = oi;
    }
    if (bi == INT_MAX) bi = 0, bv = NAN;  // only when the row is all NaN
    if (lane == j) my_p = bv, my_e = bi;
    if (lane == 0) p[bi] = -1.0f;
    __syncwarp();
  }
  float chosen = 0.0f;
  for (int j = 0; j < k; ++j) chosen += __shfl_sync(0xffffffffu, my_p, j);
  if (lane < k) {
    weights[t * k + lane] = renormalize ? my_p / chosen : my_p;
    experts[t * k + lane] = my_e;
  }
}

// dp = extra_dprobs (or 0) plus the top-k part (lane 0, j in order: an expert chosen twice adds
// twice), then dlogits_e = p_e · (dp_e − Σ_f p_f·dp_f).
template <typename D>
__global__ void moe_route_backward_kernel(const float* probs, const float* weights,
                                          const int32_t* experts, const float* dweights,
                                          const float* extra, D dlogits, int64_t t_count,
                                          int e_count, int k, bool renormalize, int* error_flag) {
  __shared__ float rows[kWarpsPerBlock][kMoeMaxExperts];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t t = blockIdx.x * int64_t{kWarpsPerBlock} + warp;
  if (t >= t_count) return;
  float* dp = rows[warp];
  const int64_t base = t * e_count;
  const float* p = probs + base;
  for (int e = lane; e < e_count; e += 32) dp[e] = extra ? extra[base + e] : 0.0f;
  __syncwarp();
  if (lane == 0) {
    const int32_t* ex = experts + t * k;
    const float* w = weights + t * k;
    const float* dw = dweights + t * k;
    float s = 1.0f, dot = 0.0f;
    if (renormalize) {
      // w_j = p_j / S, S = Σ chosen p: ∂L/∂p_i = (dw_i − Σ_j dw_j·w_j) / S.
      s = 0.0f;
      for (int j = 0; j < k; ++j) {
        if (ex[j] >= 0 && ex[j] < e_count) s += p[ex[j]];
        dot += dw[j] * w[j];
      }
    }
    for (int j = 0; j < k; ++j) {
      if (ex[j] < 0 || ex[j] >= e_count) {
        atomicExch(error_flag, 1);
        continue;
      }
      dp[ex[j]] += renormalize ? (dw[j] - dot) / s : dw[j];
    }
  }
  __syncwarp();
  float d = 0.0f;
  for (int e = lane; e < e_count; e += 32) d += p[e] * dp[e];
  d = warp_sum(d);
  for (int e = lane; e < e_count; e += 32) dlogits.store(base + e, p[e] * (dp[e] - d));
}

template <typename S, typename D>
__global__ void gather_rows_kernel(S src, const int32_t* index, const float* scale, D dst,
                                   int64_t n, int64_t h, int64_t src_rows, int* error_flag) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n * h;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = i / h, c = i % h;
    const int64_t from = index[r];
    if (from < 0 || from >= src_rows) {
      if (c == 0) atomicExch(error_flag, 1);
      dst.store(i, 0.0f);
      continue;
    }
    const float v = src.load(from * h + c);
    dst.store(i, scale ? v * scale[r] : v);
  }
}

template <typename R, typename Y>
__global__ void moe_combine_kernel(R rows, const int32_t* row_of, const float* weights, Y y,
                                   int64_t t_count, int k, int64_t h, int64_t n_rows,
                                   bool accumulate, int* error_flag) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < t_count * h;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t t = i / h, c = i % h;
    float acc = 0.0f;
    for (int j = 0; j < k; ++j) {
      const int64_t r = row_of[t * k + j];
      if (r < 0 || r >= n_rows) {
        if (c == 0) atomicExch(error_flag, 1);
        continue;
      }
      const float v = rows.load(r * h + c);
      acc += weights ? weights[t * k + j] * v : v;
    }
    y.store(i, accumulate ? y.load(i) + acc : acc);
  }
}

template <typename D, typename R>
__global__ void moe_weight_grad_kernel(D dy, R rows, const int32_t* row_of, float* dweights,
                                       int64_t n_pairs, int k, int64_t h, int64_t n_rows,
                                       int* error_flag) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t pair = blockIdx.x * int64_t{kWarpsPerBlock} + warp;
  if (pair >= n_pairs) return;
  const int64_t t = pair / k, r = row_of[pair];
  if (r < 0 || r >= n_rows) {
    if (lane == 0) {
      atomicExch(error_flag, 1);
      dweights[pair] = 0.0f;
    }
    return;
  }
  float s = 0.0f;
  for (int64_t c = lane; c < h; c += 32) s += dy.load(t * h + c) * rows.load(r * h + c);
  s = warp_sum(s);
  if (lane == 0) dweights[pair] = s;
}

// Calls f(a, b) with element accessors for two float tensors: typed when the dtypes agree (the
// usual case), dtype-erased otherwise.
// The permutation, a stable counting sort without atomics in two passes of one block per
// expert over the pairs in order: a warp's ballot ranks its hits, the block's warps add up in
// warp order. Pass 1 counts (and flags experts outside [0, E)); pass 2 starts expert e's rows
// after the counts of the experts before it and writes them in pair order, as the CPU does.
constexpr int kPermuteThreads = 256;
constexpr int kPermuteWarps = kPermuteThreads / 32;

__global__ void moe_count_kernel(const int32_t* experts, int64_t n, int e_count, int32_t* counts,
                                 int* error_flag) {
  const int e = blockIdx.x;
  int hits = 0;
  for (int64_t p = threadIdx.x; p < n; p += kPermuteThreads) {
    const int32_t x = experts[p];
    hits += x == e;
    if (e == 0 && (x < 0 || x >= e_count)) atomicExch(error_flag, 1);
  }
  __shared__ int partial[kPermuteWarps];
  for (int off = 16; off > 0; off >>= 1) hits += __shfl_xor_sync(0xffffffffu, hits, off);
  if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = hits;
  __syncthreads();
  if (threadIdx.x == 0) {
    int total = 0;
    for (int w = 0; w < kPermuteWarps; ++w) total += partial[w];
    counts[e] = total;
  }
}

__global__ void moe_scatter_kernel(const int32_t* experts, int64_t n, int k, const int32_t* counts,
                                   int32_t* token_of_row, int32_t* pair_of_row, int32_t* row_of) {
  const int e = blockIdx.x, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __shared__ int64_t first;
  __shared__ int warp_hits[kPermuteWarps];
  if (threadIdx.x == 0) {
    int64_t f = 0;
    for (int x = 0; x < e; ++x) f += counts[x];
    first = f;
  }
  __syncthreads();
  int64_t base = first;
  for (int64_t start = 0; start < n; start += kPermuteThreads) {
    const int64_t p = start + threadIdx.x;
    const bool hit = p < n && experts[p] == e;
    const unsigned mask = __ballot_sync(0xffffffffu, hit);
    if (lane == 0) warp_hits[warp] = __popc(mask);
    __syncthreads();
    int before = 0, total = 0;
    for (int w = 0; w < kPermuteWarps; ++w) {
      before += w < warp ? warp_hits[w] : 0;
      total += warp_hits[w];
    }
    if (hit) {
      const int64_t row = base + before + __popc(mask & ((1u << lane) - 1u));
      token_of_row[row] = static_cast<int32_t>(p / k);
      pair_of_row[row] = static_cast<int32_t>(p);
      row_of[p] = static_cast<int32_t>(row);
    }
    base += total;
    __syncthreads();  // warp_hits is rewritten next round
  }
}

template <typename F>
void dispatch_pair(const Tensor& a, const Tensor& b, F&& f) {
  if (a.dtype == b.dtype) {
    dispatch_float(a.dtype, [&](auto tag) {
      using T = decltype(tag);
      f(Typed<T>{a.as<T>()}, Typed<T>{b.as<T>()});
    });
  } else {
    f(dyn(a), dyn(b));
  }
}

}  // namespace

void launch_moe_route(const Tensor& logits, int k, bool renormalize, const Tensor& probs,
                      const Tensor& weights, const Tensor& experts, cudaStream_t stream) {
  const int64_t t_count = logits.rows();
  if (t_count == 0) return;
  const int e_count = static_cast<int>(logits.cols());
  dispatch_float(logits.dtype, [&](auto tag) {
    using T = decltype(tag);
    moe_route_kernel<<<warp_blocks(t_count), kWarpBlockThreads, 0, stream>>>(
        Typed<T>{logits.as<T>()}, t_count, e_count, k, renormalize, probs.as<float>(),
        weights.as<float>(), experts.as<int32_t>());
  });
  FITLM_CUDA_CHECK_LAUNCH();
}

void launch_moe_route_backward(const Tensor& probs, const Tensor& weights, const Tensor& experts,
                               const Tensor& dweights, bool renormalize, const Tensor& extra_dprobs,
                               const Tensor& dlogits, int* error_flag, cudaStream_t stream) {
  const int64_t t_count = probs.rows();
  if (t_count == 0) return;
  const int e_count = static_cast<int>(probs.cols()), k = static_cast<int>(experts.cols());
  const float* extra = extra_dprobs.empty() ? nullptr : extra_dprobs.as<float>();
  dispatch_float(dlogits.dtype, [&](auto tag) {
    using T = decltype(tag);
    moe_route_backward_kernel<<<warp_blocks(t_count), kWarpBlockThreads, 0, stream>>>(
        probs.as<float>(), weights.as<float>(), experts.as<int32_t>(), dweights.as<float>(), extra,
        Typed<T>{dlogits.as<T>()}, t_count, e_count, k, renormalize, error_flag);
  });
  FITLM_CUDA_CHECK_LAUNCH();
}

void launch_gather_rows(const Tensor& src, const Tensor& index, const Tensor& scale,
                        const Tensor& dst, int* error_flag, cudaStream_t stream) {
  const int64_t n = index.numel(), h = src.cols();
  if (n * h == 0) return;
  const float* sc = scale.empty() ? nullptr : scale.as<float>();
  dispatch_pair(src, dst, [&](auto s, auto d) {
    gather_rows_kernel<<<grid_for(n * h, 256), 256, 0, stream>>>(s, index.as<int32_t>(), sc, d, n,
                                                                 h, src.rows(), error_flag);
  });
  FITLM_CUDA_CHECK_LAUNCH();
}

void launch_moe_combine(const Tensor& rows, const Tensor& row_of, const Tensor& weights,
                        const Tensor& y, bool accumulate, int* error_flag, cudaStream_t stream) {
  const int64_t t_count = row_of.rows(), h = y.cols();
  const int k = static_cast<int>(row_of.cols());
  if (t_count * h == 0) return;
  const float* w = weights.empty() ? nullptr : weights.as<float>();
  dispatch_pair(rows, y, [&](auto r, auto yy) {
    moe_combine_kernel<<<grid_for(t_count * h, 256), 256, 0, stream>>>(
        r, row_of.as<int32_t>(), w, yy, t_count, k, h, rows.rows(), accumulate, error_flag);
  });
  FITLM_CUDA_CHECK_LAUNCH();
}

void launch_moe_weight_grad(const Tensor& dy, const Tensor& rows, const Tensor& row_of,
                            const Tensor& dweights, int* error_flag, cudaStream_t stream) {
  const int64_t n_pairs = row_of.numel(), h = dy.cols();
  const int k = static_cast<int>(row_of.cols());
  if (n_pairs == 0) return;
  dispatch_pair(dy, rows, [&](auto d, auto r) {
    moe_weight_grad_kernel<<<warp_blocks(n_pairs), kWarpBlockThreads, 0, stream>>>(
        d, r, row_of.as<int32_t>(), dweights.as<float>(), n_pairs, k, h, rows.rows(), error_flag);
  });
  FITLM_CUDA_CHECK_LAUNCH();
}

void launch_moe_permute(const Tensor& experts, int num_experts, const Tensor& token_of_row,
                        const Tensor& pair_of_row, const Tensor& row_of, int32_t* counts,
                        int* error_flag, cudaStream_t stream) {
  const int64_t n = experts.numel(), k = experts.cols();
  moe_count_kernel<<<num_experts, kPermuteThreads, 0, stream>>>(experts.as<int32_t>(), n,
                                                                num_experts, counts, error_flag);
  FITLM_CUDA_CHECK_LAUNCH();
  moe_scatter_kernel<<<num_experts, kPermuteThreads, 0, stream>>>(
      experts.as<int32_t>(), n, static_cast<int>(k), counts, token_of_row.as<int32_t>(),
      pair_of_row.as<int32_t>(), row_of.as<int32_t>());
  FITLM_CUDA_CHECK_LAUNCH();
}

}  // namespace fitlm::cuda
