// Attention forward (see cuda_attention.cuh for the design) and the launchers of both passes.
#include <cmath>

#include "fitlm/backend/cuda/cuda_attention.cuh"
#include "fitlm/backend/cuda/cuda_common.cuh"
#include "fitlm/backend/cuda/cuda_mma.cuh"

namespace fitlm::cuda {

// Defined in cuda_attention_backward.cu.
template <typename T, int HD>
void attention_backward_impl(const T* dout, const T* q, const T* k, const T* v, const T* out,
                             const float* lse, const int32_t* cu, int n_seg, int t_count,
                             int n_heads, int n_kv, float scale, T* dq, T* dk, T* dv,
                             float* workspace, int64_t workspace_elems, cudaStream_t stream);

namespace {

constexpr float kLog2e = 1.4426950408889634f;
constexpr int kBlockQ = 64, kBlockK = 64, kWarps = 4, kThreads = kWarps * 32;
template <typename T, int HD>
__global__ void __launch_bounds__(kThreads, min_blocks_for(HD))
    attention_forward_kernel(const T* __restrict__ q, const T* __restrict__ k,
                             const T* __restrict__ v, const int32_t* __restrict__ cu, int n_seg,
                             int t_count, int n_heads, int n_kv, float scale_log2,
                             T* __restrict__ out, float* __restrict__ lse) {
  constexpr int LD = HD + kPad;
  // Two stages of (K, V) tiles: tile i + 1 streams in while tile i is multiplied. Stage 1's K
  // slot first carries the Q tile into registers.
  extern __shared__ __align__(16) unsigned char smem[];
  T* k_stage = reinterpret_cast<T*>(smem);  // [2][kBlockK * LD]
  T* v_stage = k_stage + 2 * kBlockK * LD;  // [2][kBlockK * LD]
  // Heavier (later) causal tiles first, so the tail of the grid is short.
  const int q0 = (gridDim.x - 1 - blockIdx.x) * kBlockQ;
  const int h = blockIdx.y, kvh = h / (n_heads / n_kv);
  const int64_t q_stride = int64_t{n_heads} * HD, kv_stride = int64_t{n_kv} * HD;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3;
  const int k_begin = cu[segment_of(cu, n_seg, q0)];
  const int k_end = min(q0 + kBlockQ, t_count);
  const int steps = (k_end - k_begin + kBlockK - 1) / kBlockK;
  auto issue_step = [&](int step) {
    const int st = step & 1, k0 = k_begin + step * kBlockK;
    load_tile_async<T, HD, kBlockK, kThreads>(k_stage + st * kBlockK * LD, k + kvh * HD, kv_stride,
                                              k0, t_count);
    load_tile_async<T, HD, kBlockK, kThreads>(v_stage + st * kBlockK * LD, v + kvh * HD, kv_stride,
                                              k0, t_count);
    cp_async_commit();
  };

  // Q fragments for this warp's 16 rows stay in registers for the whole key loop.
  load_tile_async<T, HD, kBlockQ, kThreads>(
      k_stage + kBlockK * LD, q + int64_t{q0} * q_stride + h * HD, q_stride, 0, t_count - q0);
  issue_step(0);  // commits the Q copies with step 0's
  cp_async_wait<0>();
  __syncthreads();
  uint32_t qf[HD / 16][4];
#pragma unroll
  for (int kk = 0; kk < HD / 16; ++kk)
    load_a<T, LD>(qf[kk], k_stage + kBlockK * LD, warp * 16, kk * 16, lane);
  __syncthreads();  // stage 1 is free for step 1

  const int row0 = q0 + warp * 16 + g, row1 = row0 + 8;  // the two rows this thread owns
  const int seg0 = cu[segment_of(cu, n_seg, min(row0, t_count - 1))];
  const int seg1 = cu[segment_of(cu, n_seg, min(row1, t_count - 1))];
  const int warp_first = q0 + warp * 16;
  const int warp_seg_last = cu[segment_of(cu, n_seg, min(warp_first + 15, t_count - 1))];

  float o[HD / 8][4] = {};
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;

  for (int step = 0; step < steps; ++step) {
    pipeline_advance(step, steps, issue_step);
    const int k0 = k_begin + step * kBlockK;
    const T* k_tile = k_stage + (step & 1) * kBlockK * LD;
    const T* v_tile = v_stage + (step & 1) * kBlockK * LD;

    float s[kBlockK / 8][4] = {};
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk)
#pragma unroll
      for (int nt = 0; nt < kBlockK / 8; nt += 2) {
        uint32_t b[2][2];
        load_b_rows_x2<T, LD>(b, k_tile, nt * 8, kk * 16, lane);
        mma16816<T>(s[nt], qf[kk], b[0]);
        mma16816<T>(s[nt + 1], qf[kk], b[1]);
      }

    // Mask only where the tile crosses the diagonal or a segment start (warp-uniform test).
    const bool need_mask = k0 + kBlockK - 1 > warp_first || k0 < warp_seg_last;
    float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
    for (int nt = 0; nt < kBlockK / 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        float x = s[nt][e] * scale_log2;
        if (need_mask) {
          const int j = k0 + nt * 8 + 2 * tq + (e & 1);
          const int row = e < 2 ? row0 : row1, seg = e < 2 ? seg0 : seg1;
          if (j > row || j < seg || row >= t_count) x = -INFINITY;
        }
        s[nt][e] = x;
        if (e < 2)
          mx0 = fmaxf(mx0, x);
        else
          mx1 = fmaxf(mx1, x);
      }
    // The 4 threads of a quad share a row.
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
    const float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1);
    // A row with no visible key yet keeps m = −inf; use 0 as the shift so exp2 gives 0, not NaN.
    const float base0 = mn0 == -INFINITY ? 0.0f : mn0, base1 = mn1 == -INFINITY ? 0.0f : mn1;
    const float corr0 = exp2f(m0 - base0), corr1 = exp2f(m1 - base1);
    m0 = mn0;
    m1 = mn1;
    float ps0 = 0.0f, ps1 = 0.0f;
#pragma unroll
    for (int nt = 0; nt < kBlockK / 8; ++nt) {
      s[nt][0] = exp2f(s[nt][0] - base0);
      s[nt][1] = exp2f(s[nt][1] - base0);
      s[nt][2] = exp2f(s[nt][2] - base1);
      s[nt][3] = exp2f(s[nt][3] - base1);
      ps0 += s[nt][0] + s[nt][1];
      ps1 += s[nt][2] + s[nt][3];
    }
    l0 = l0 * corr0 + ps0;  // per-thread partial row sums, reduced across the quad at the end
    l1 = l1 * corr1 + ps1;
#pragma unroll
    for (int nt = 0; nt < HD / 8; ++nt) {
      o[nt][0] *= corr0;
      o[nt][1] *= corr0;
      o[nt][2] *= corr1;
      o[nt][3] *= corr1;
    }
    mma_fragments_by_tile<T, LD, HD>(o, s, v_tile, lane);
    __syncthreads();
  }

  l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
  l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
  const float inv0 = l0 > 0.0f ? 1.0f / l0 : 0.0f, inv1 = l1 > 0.0f ? 1.0f / l1 : 0.0f;
#pragma unroll
  for (int nt = 0; nt < HD / 8; ++nt) {
    const int col = h * HD + nt * 8 + 2 * tq;
    if (row0 < t_count)
      *reinterpret_cast<uint32_t*>(out + row0 * q_stride + col) =
          pack2<T>(o[nt][0] * inv0, o[nt][1] * inv0);
    if (row1 < t_count)
      *reinterpret_cast<uint32_t*>(out + row1 * q_stride + col) =
          pack2<T>(o[nt][2] * inv1, o[nt][3] * inv1);
  }
  if (tq == 0) {
    constexpr float kLn2 = 0.6931471805599453f;
    if (row0 < t_count) lse[int64_t{h} * t_count + row0] = (m0 + log2f(l0)) * kLn2;
    if (row1 < t_count) lse[int64_t{h} * t_count + row1] = (m1 + log2f(l1)) * kLn2;
  }
}

// The head sizes of the models users bring: 32/64 (small models), 80 and 96 (Qwen-VL's vision
// tower, Phi), 128 (Llama, Qwen, Mistral), 256 (Gemma-class). The kernels need a multiple of 16.
template <typename F>
void dispatch_head_dim(int head_dim, F&& f) {
  switch (head_dim) {
    case 32: f(std::integral_constant<int, 32>{}); return;
    case 64: f(std::integral_constant<int, 64>{}); return;
    case 80: f(std::integral_constant<int, 80>{}); return;
    case 96: f(std::integral_constant<int, 96>{}); return;
    case 128: f(std::integral_constant<int, 128>{}); return;
    case 256: f(std::integral_constant<int, 256>{}); return;
    default:
      throw_arg_error("attention kernels support head_dim 32, 64, 80, 96, 128 and 256", __FILE__,
                      __LINE__);
  }
}

}  // namespace

void launch_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                              const Tensor& cu_seqlens, const AttentionDims& sh, const Tensor& out,
                              const Tensor& lse, cudaStream_t stream) {
  const int t_count = static_cast<int>(q.rows());
  if (t_count == 0) return;
  const int n_seg = static_cast<int>(cu_seqlens.numel()) - 1;
  const float scale_log2 = sh.scale * kLog2e;
  dispatch_half(q.dtype, [&](auto tag) {
    using T = decltype(tag);
    dispatch_head_dim(sh.head_dim, [&](auto hd) {
      constexpr int HD = decltype(hd)::value;
      const dim3 grid(static_cast<unsigned>((t_count + kBlockQ - 1) / kBlockQ),
                      static_cast<unsigned>(sh.n_heads));
      const size_t smem = sizeof(T) * (HD + kPad) * 4 * kBlockK;  // over 48 KB: opt in
      FITLM_CUDA_CHECK(cudaFuncSetAttribute(attention_forward_kernel<T, HD>,
                                            cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            static_cast<int>(smem)));
      attention_forward_kernel<T, HD><<<grid, kThreads, smem, stream>>>(
          q.as<T>(), k.as<T>(), v.as<T>(), cu_seqlens.as<int32_t>(), n_seg, t_count, sh.n_heads,
          sh.n_kv_heads, scale_log2, out.as<T>(), lse.as<float>());
    });
  });
  FITLM_CUDA_CHECK_LAUNCH();
}

void launch_attention_backward(const Tensor& dout, const Tensor& q, const Tensor& k,
                               const Tensor& v, const Tensor& out, const Tensor& lse,
                               const Tensor& cu_seqlens, const AttentionDims& sh, const Tensor& dq,
                               const Tensor& dk, const Tensor& dv, const Tensor& workspace,
                               cudaStream_t stream) {
  const int t_count = static_cast<int>(q.rows());
  if (t_count == 0) return;
  const int n_seg = static_cast<int>(cu_seqlens.numel()) - 1;
  dispatch_half(q.dtype, [&](auto tag) {
    using T = decltype(tag);
    dispatch_head_dim(sh.head_dim, [&](auto hd) {
      constexpr int HD = decltype(hd)::value;
      attention_backward_impl<T, HD>(
          dout.as<T>(), q.as<T>(), k.as<T>(), v.as<T>(), out.as<T>(), lse.as<float>(),
          cu_seqlens.as<int32_t>(), n_seg, t_count, sh.n_heads, sh.n_kv_heads, sh.scale, dq.as<T>(),
          dk.as<T>(), dv.as<T>(), workspace.empty() ? nullptr : workspace.as<float>(),
          workspace.numel(), stream);
    });
  });
}

}  // namespace fitlm::cuda
