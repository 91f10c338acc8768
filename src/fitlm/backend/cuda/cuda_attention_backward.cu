// Attention backward: D prepass, dK/dV kernel, dQ kernel (design in cuda_attention.cuh).
#include <type_traits>

#include "fitlm/backend/cuda/cuda_attention.cuh"
#include "fitlm/backend/cuda/cuda_common.cuh"
#include "fitlm/backend/cuda/cuda_mma.cuh"

namespace fitlm::cuda {
namespace {

constexpr float kLog2e = 1.4426950408889634f;
constexpr int kWarps = 4, kThreads = kWarps * 32;
constexpr int kTileKV = 64, kTileQInner = 32;  // dK/dV kernel: 64 keys, queries 32 at a time
constexpr int kTileQ = 64, kTileKInner = 32;   // dQ kernel: 64 queries, keys 32 at a time

// D for (row, head) lives in the first 4 bytes of dq[row, head·HD .. ]: see cuda_attention.cuh.
template <typename T>
__device__ __forceinline__ float* d_slot(T* dq, int64_t row, int64_t q_stride, int h, int hd) {
  return reinterpret_cast<float*>(dq + row * q_stride + int64_t{h} * hd);
}

// One warp per (row, head).
template <typename T, int HD>
__global__ void attention_backward_dot_kernel(const T* dout, const T* out, int t_count, int n_heads,
                                              T* dq) {
  const int64_t item = blockIdx.x * int64_t{kWarps} + (threadIdx.x >> 5);
  if (item >= int64_t{t_count} * n_heads) return;
  const int64_t row = item / n_heads;
  const int h = static_cast<int>(item % n_heads);
  const int64_t q_stride = int64_t{n_heads} * HD;
  const T* a = dout + row * q_stride + h * HD;
  const T* b = out + row * q_stride + h * HD;
  float s = 0.0f;
  for (int d = threadIdx.x & 31; d < HD; d += 32) s += to_f32(a[d]) * to_f32(b[d]);
  s = warp_sum(s);
  if ((threadIdx.x & 31) == 0) *d_slot(dq, row, q_stride, h, HD) = s;
}

// kPartials = false: one block per (key tile, kv head) loops over every q head of its GQA
// group and writes dK/dV. kPartials = true: one block per (key tile, q head) writes its head's
// share as an f32 partial (slot h % group of the caller's workspace) — `group` times more
// blocks, which fixes the causal load imbalance (the first key tile sees every query, the last
// only 64) when heads are few; a second kernel sums the partials in head order. Atomics here
// (version 1) made dK/dV depend on the blocks' timing, so two runs differed in the last bits.
template <typename T, int HD, bool kPartials>
__global__ void __launch_bounds__(kThreads)
    attention_backward_dkdv_kernel(const T* __restrict__ dout, const T* __restrict__ q,
                                   const T* __restrict__ k, const T* __restrict__ v,
                                   const float* __restrict__ lse, const int32_t* __restrict__ cu,
                                   int n_seg, int t_count, int n_heads, int n_kv, float scale,
                                   T* dq_with_d, T* __restrict__ dk, T* __restrict__ dv,
                                   float* __restrict__ part_dk, float* __restrict__ part_dv) {
  constexpr int LD = HD + kPad;
  // Shared memory: the block's K and V tiles, then two stages of (Q, dO, lse, D, segment start)
  // for the 32-query steps: step i + 1 streams in while step i is multiplied.
  extern __shared__ __align__(16) unsigned char smem[];
  T* k_tile = reinterpret_cast<T*>(smem);
  T* v_tile = k_tile + kTileKV * LD;
  T* q_stage = v_tile + kTileKV * LD;            // [2][kTileQInner * LD]
  T* do_stage = q_stage + 2 * kTileQInner * LD;  // [2][kTileQInner * LD]
  float* lse_stage = reinterpret_cast<float*>(do_stage + 2 * kTileQInner * LD);  // [2][32]
  float* d_stage = lse_stage + 2 * kTileQInner;                                  // [2][32]
  int* seg_stage = reinterpret_cast<int*>(d_stage + 2 * kTileQInner);            // [2][32]

  const int k0 = blockIdx.x * kTileKV, group = n_heads / n_kv;
  const int kvh = kPartials ? static_cast<int>(blockIdx.y) / group : blockIdx.y;
  const int h_begin = kPartials ? static_cast<int>(blockIdx.y) : kvh * group;
  const int h_end = kPartials ? h_begin + 1 : h_begin + group;
  const int64_t q_stride = int64_t{n_heads} * HD, kv_stride = int64_t{n_kv} * HD;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3;
  const float scale_log2 = scale * kLog2e;
  const int key0 = k0 + warp * 16 + g, key1 = key0 + 8;
  // Queries that can see this tile's keys end with the last key's segment.
  const int q_end = cu[segment_of(cu, n_seg, min(k0 + kTileKV - 1, t_count - 1)) + 1];
  // Steps: (head, 32-query tile) pairs, heads outermost.
  const int q_tiles = (q_end - k0 + kTileQInner - 1) / kTileQInner;
  const int steps = (h_end - h_begin) * q_tiles;
  auto issue_step = [&](int step) {
    const int st = step & 1, h = h_begin + step / q_tiles;
    const int q0 = k0 + (step % q_tiles) * kTileQInner;
    load_tile_async<T, HD, kTileQInner, kThreads>(q_stage + st * kTileQInner * LD, q + h * HD,
                                                  q_stride, q0, t_count);
    load_tile_async<T, HD, kTileQInner, kThreads>(do_stage + st * kTileQInner * LD, dout + h * HD,
                                                  q_stride, q0, t_count);
    if (threadIdx.x < kTileQInner) {
      const int r = q0 + threadIdx.x;
      const bool ok = r < t_count;
      const int rr = ok ? r : 0;
      cp_async4(lse_stage + st * kTileQInner + threadIdx.x, lse + int64_t{h} * t_count + rr, ok);
      cp_async4(d_stage + st * kTileQInner + threadIdx.x, d_slot(dq_with_d, rr, q_stride, h, HD),
                ok);
      seg_stage[st * kTileQInner + threadIdx.x] = ok ? cu[segment_of(cu, n_seg, r)] : 0;
    }
    cp_async_commit();
  };

  load_tile_async<T, HD, kTileKV, kThreads>(k_tile, k + kvh * HD, kv_stride, k0, t_count);
  load_tile_async<T, HD, kTileKV, kThreads>(v_tile, v + kvh * HD, kv_stride, k0, t_count);
  if (steps > 0) issue_step(0);  // commits the K/V copies with step 0's

  float dka[HD / 8][4] = {}, dva[HD / 8][4] = {};
  for (int step = 0; step < steps; ++step) {
    pipeline_advance(step, steps, issue_step);  // step's tiles (and K/V) are visible to every warp
    const int st = step & 1, q0 = k0 + (step % q_tiles) * kTileQInner;
    const T* q_tile = q_stage + st * kTileQInner * LD;
    const T* do_tile = do_stage + st * kTileQInner * LD;
    const float* lse_s = lse_stage + st * kTileQInner;
    const float* d_s = d_stage + st * kTileQInner;
    const int* seg_s = seg_stage + st * kTileQInner;

    // Sᵀ [16 keys × 32 queries] = K_w · Qᵀ, then Pᵀ.
    float p[kTileQInner / 8][4] = {};
    mma_rows_by_rows<T, LD, HD>(p, k_tile, warp * 16, q_tile, lane);
#pragma unroll
    for (int nt = 0; nt < kTileQInner / 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int c = nt * 8 + 2 * tq + (e & 1), qi = q0 + c, key = e < 2 ? key0 : key1;
        const bool valid = qi < t_count && key <= qi && seg_s[c] <= key;
        p[nt][e] = valid ? exp2f(p[nt][e] * scale_log2 - lse_s[c] * kLog2e) : 0.0f;
      }
    // dV += Pᵀ · dO.
    mma_fragments_by_tile<T, LD, HD>(dva, p, do_tile, lane);
    // dPᵀ = V_w · dOᵀ, then dSᵀ = Pᵀ ⊙ (dPᵀ − D).
    float ds[kTileQInner / 8][4] = {};
    mma_rows_by_rows<T, LD, HD>(ds, v_tile, warp * 16, do_tile, lane);
#pragma unroll
    for (int nt = 0; nt < kTileQInner / 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e)
        ds[nt][e] = p[nt][e] * (ds[nt][e] - d_s[nt * 8 + 2 * tq + (e & 1)]);
    // dK += dSᵀ · Q (the softmax scale is applied once at the end).
    mma_fragments_by_tile<T, LD, HD>(dka, ds, q_tile, lane);
    __syncthreads();  // every warp is done with this stage before step + 2 refills it
  }
  if constexpr (kPartials) {
    // This head's slot: every (key, column) of it is written by exactly one block.
    const int64_t slot = int64_t{h_begin % group} * t_count * kv_stride;
#pragma unroll
    for (int nt = 0; nt < HD / 8; ++nt) {
      const int col = kvh * HD + nt * 8 + 2 * tq;
      if (key0 < t_count) {
        const int64_t at = slot + key0 * kv_stride + col;
        *reinterpret_cast<float2*>(part_dk + at) =
            make_float2(dka[nt][0] * scale, dka[nt][1] * scale);
        *reinterpret_cast<float2*>(part_dv + at) = make_float2(dva[nt][0], dva[nt][1]);
      }
      if (key1 < t_count) {
        const int64_t at = slot + key1 * kv_stride + col;
        *reinterpret_cast<float2*>(part_dk + at) =
            make_float2(dka[nt][2] * scale, dka[nt][3] * scale);
        *reinterpret_cast<float2*>(part_dv + at) = make_float2(dva[nt][2], dva[nt][3]);
      }
    }
  } else {
#pragma unroll
    for (int nt = 0; nt < HD / 8; ++nt) {
      const int col = kvh * HD + nt * 8 + 2 * tq;
      if (key0 < t_count) {
        *reinterpret_cast<uint32_t*>(dk + key0 * kv_stride + col) =
            pack2<T>(dka[nt][0] * scale, dka[nt][1] * scale);
        *reinterpret_cast<uint32_t*>(dv + key0 * kv_stride + col) =
            pack2<T>(dva[nt][0], dva[nt][1]);
      }
      if (key1 < t_count) {
        *reinterpret_cast<uint32_t*>(dk + key1 * kv_stride + col) =
            pack2<T>(dka[nt][2] * scale, dka[nt][3] * scale);
        *reinterpret_cast<uint32_t*>(dv + key1 * kv_stride + col) =
            pack2<T>(dva[nt][2], dva[nt][3]);
      }
    }
  }
}

template <typename T, int HD>
__global__ void __launch_bounds__(kThreads, min_blocks_for(HD))
    attention_backward_dq_kernel(const T* __restrict__ dout, const T* __restrict__ q,
                                 const T* __restrict__ k, const T* __restrict__ v,
                                 const float* __restrict__ lse, const int32_t* __restrict__ cu,
                                 int n_seg, int t_count, int n_heads, int n_kv, float scale,
                                 T* dq) {
  constexpr int LD = HD + kPad;
  extern __shared__ __align__(16) unsigned char smem[];
  // Shared memory: the block's Q and dO tiles, then two stages of 32-key K/V tiles.
  T* q_tile = reinterpret_cast<T*>(smem);
  T* do_tile = q_tile + kTileQ * LD;
  T* k_stage = do_tile + kTileQ * LD;           // [2][kTileKInner * LD]
  T* v_stage = k_stage + 2 * kTileKInner * LD;  // [2][kTileKInner * LD]

  const int q0 = (gridDim.x - 1 - blockIdx.x) * kTileQ;
  const int h = blockIdx.y, kvh = h / (n_heads / n_kv);
  const int64_t q_stride = int64_t{n_heads} * HD, kv_stride = int64_t{n_kv} * HD;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3;
  const float scale_log2 = scale * kLog2e;
  const int k_begin = cu[segment_of(cu, n_seg, q0)];
  const int k_end = min(q0 + kTileQ, t_count);
  const int steps = (k_end - k_begin + kTileKInner - 1) / kTileKInner;
  auto issue_step = [&](int step) {
    const int st = step & 1, k0 = k_begin + step * kTileKInner;
    load_tile_async<T, HD, kTileKInner, kThreads>(k_stage + st * kTileKInner * LD, k + kvh * HD,
                                                  kv_stride, k0, t_count);
    load_tile_async<T, HD, kTileKInner, kThreads>(v_stage + st * kTileKInner * LD, v + kvh * HD,
                                                  kv_stride, k0, t_count);
    cp_async_commit();
  };

  load_tile_async<T, HD, kTileQ, kThreads>(q_tile, q + h * HD, q_stride, q0, t_count);
  load_tile_async<T, HD, kTileQ, kThreads>(do_tile, dout + h * HD, q_stride, q0, t_count);
  if (steps > 0) issue_step(0);  // commits the Q/dO copies with step 0's
  const int row0 = q0 + warp * 16 + g, row1 = row0 + 8;
  const bool ok0 = row0 < t_count, ok1 = row1 < t_count;
  const int seg0 = cu[segment_of(cu, n_seg, min(row0, t_count - 1))];
  const int seg1 = cu[segment_of(cu, n_seg, min(row1, t_count - 1))];
  const float lse0 = ok0 ? lse[int64_t{h} * t_count + row0] * kLog2e : 0.0f;
  const float lse1 = ok1 ? lse[int64_t{h} * t_count + row1] * kLog2e : 0.0f;
  const float d0 = ok0 ? *d_slot(dq, row0, q_stride, h, HD) : 0.0f;
  const float d1 = ok1 ? *d_slot(dq, row1, q_stride, h, HD) : 0.0f;
  __syncthreads();  // every D is read before any thread of the block overwrites dq rows

  float dqa[HD / 8][4] = {};
  for (int step = 0; step < steps; ++step) {
    pipeline_advance(step, steps, issue_step);
    const int st = step & 1, k0 = k_begin + step * kTileKInner;
    const T* k_tile = k_stage + st * kTileKInner * LD;
    const T* v_tile = v_stage + st * kTileKInner * LD;
    float p[kTileKInner / 8][4] = {}, ds[kTileKInner / 8][4] = {};
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk) {
      uint32_t a[4], ad[4];
      load_a<T, LD>(a, q_tile, warp * 16, kk * 16, lane);
      load_a<T, LD>(ad, do_tile, warp * 16, kk * 16, lane);
#pragma unroll
      for (int nt = 0; nt < kTileKInner / 8; nt += 2) {
        uint32_t b[2][2];
        load_b_rows_x2<T, LD>(b, k_tile, nt * 8, kk * 16, lane);
        mma16816<T>(p[nt], a, b[0]);
        mma16816<T>(p[nt + 1], a, b[1]);
        load_b_rows_x2<T, LD>(b, v_tile, nt * 8, kk * 16, lane);
        mma16816<T>(ds[nt], ad, b[0]);
        mma16816<T>(ds[nt + 1], ad, b[1]);
      }
    }
#pragma unroll
    for (int nt = 0; nt < kTileKInner / 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int j = k0 + nt * 8 + 2 * tq + (e & 1);
        const int row = e < 2 ? row0 : row1, seg = e < 2 ? seg0 : seg1;
        const bool valid = row < t_count && j <= row && j >= seg;
        const float pe = valid ? exp2f(p[nt][e] * scale_log2 - (e < 2 ? lse0 : lse1)) : 0.0f;
        ds[nt][e] = pe * (ds[nt][e] - (e < 2 ? d0 : d1));
      }
    mma_fragments_by_tile<T, LD, HD>(dqa, ds, k_tile, lane);
    __syncthreads();  // every warp is done with this stage before step + 2 refills it
  }
#pragma unroll
  for (int nt = 0; nt < HD / 8; ++nt) {
    const int col = h * HD + nt * 8 + 2 * tq;
    if (ok0)
      *reinterpret_cast<uint32_t*>(dq + row0 * q_stride + col) =
          pack2<T>(dqa[nt][0] * scale, dqa[nt][1] * scale);
    if (ok1)
      *reinterpret_cast<uint32_t*>(dq + row1 * q_stride + col) =
          pack2<T>(dqa[nt][2] * scale, dqa[nt][3] * scale);
  }
}

// dK, dV (compute dtype) = Σ over the `group` f32 partials, always in head order.
template <typename T>
__global__ void attention_backward_sum_partials_kernel(const float* __restrict__ part_dk,
                                                       const float* __restrict__ part_dv, int64_t n,
                                                       int group, T* __restrict__ dk,
                                                       T* __restrict__ dv) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    float sk = 0.0f, sv = 0.0f;
    for (int j = 0; j < group; ++j) {
      sk += part_dk[j * n + i];
      sv += part_dv[j * n + i];
    }
    dk[i] = from_f32<T>(sk);
    dv[i] = from_f32<T>(sv);
  }
}

}  // namespace

template <typename T, int HD>
void attention_backward_impl(const T* dout, const T* q, const T* k, const T* v, const T* out,
                             const float* lse, const int32_t* cu, int n_seg, int t_count,
                             int n_heads, int n_kv, float scale, T* dq, T* dk, T* dv,
                             float* workspace, int64_t workspace_elems, cudaStream_t stream) {
  constexpr int LD = HD + kPad;
  const int64_t items = int64_t{t_count} * n_heads;
  attention_backward_dot_kernel<T, HD>
      <<<static_cast<unsigned>((items + kWarps - 1) / kWarps), kThreads, 0, stream>>>(
          dout, out, t_count, n_heads, dq);
  FITLM_CUDA_CHECK_LAUNCH();

  // Over 48 KB of shared memory at head_dim 128: the kernels must opt in.
  const size_t dkdv_smem =
      sizeof(T) * LD * (2 * kTileKV + 4 * kTileQInner) + 2 * 3 * sizeof(float) * kTileQInner;
  const unsigned k_tiles = static_cast<unsigned>((t_count + kTileKV - 1) / kTileKV);
  const int group = n_heads / n_kv;
  const int64_t n = int64_t{t_count} * n_kv * HD;  // elements of dK (and of dV)
  // The partials need 2·group·n f32 (2·heads·hd per token: attention_workspace_cols has room).
  const bool partials = workspace != nullptr && group > 1 && workspace_elems >= 2 * group * n;
  auto launch_dkdv = [&](auto partials_tag, unsigned heads, float* part_dk, float* part_dv) {
    constexpr bool kPartials = decltype(partials_tag)::value;
    FITLM_CUDA_CHECK(cudaFuncSetAttribute(attention_backward_dkdv_kernel<T, HD, kPartials>,
                                          cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          static_cast<int>(dkdv_smem)));
    attention_backward_dkdv_kernel<T, HD, kPartials>
        <<<dim3(k_tiles, heads), kThreads, dkdv_smem, stream>>>(dout, q, k, v, lse, cu, n_seg,
                                                                t_count, n_heads, n_kv, scale, dq,
                                                                dk, dv, part_dk, part_dv);
    FITLM_CUDA_CHECK_LAUNCH();
  };
  if (partials) {
    float* part_dk = workspace;
    float* part_dv = workspace + group * n;
    launch_dkdv(std::true_type{}, static_cast<unsigned>(n_heads), part_dk, part_dv);
    attention_backward_sum_partials_kernel<T>
        <<<grid_for(n, 256), 256, 0, stream>>>(part_dk, part_dv, n, group, dk, dv);
    FITLM_CUDA_CHECK_LAUNCH();
  } else {
    launch_dkdv(std::false_type{}, static_cast<unsigned>(n_kv), nullptr, nullptr);
  }

  const size_t dq_smem = sizeof(T) * LD * (2 * kTileQ + 4 * kTileKInner);
  FITLM_CUDA_CHECK(cudaFuncSetAttribute(attention_backward_dq_kernel<T, HD>,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(dq_smem)));
  const dim3 grid_q(static_cast<unsigned>((t_count + kTileQ - 1) / kTileQ),
                    static_cast<unsigned>(n_heads));
  attention_backward_dq_kernel<T, HD><<<grid_q, kThreads, dq_smem, stream>>>(
      dout, q, k, v, lse, cu, n_seg, t_count, n_heads, n_kv, scale, dq);
  FITLM_CUDA_CHECK_LAUNCH();
}

#define FITLM_INSTANTIATE(T, HD)                                                                 \
  template void attention_backward_impl<T, HD>(const T*, const T*, const T*, const T*, const T*, \
                                               const float*, const int32_t*, int, int, int, int, \
                                               float, T*, T*, T*, float*, int64_t, cudaStream_t);
#define FITLM_INSTANTIATE_HEAD_DIMS(T) \
  FITLM_INSTANTIATE(T, 32)             \
  FITLM_INSTANTIATE(T, 64)             \
  FITLM_INSTANTIATE(T, 80)             \
  FITLM_INSTANTIATE(T, 96)             \
  FITLM_INSTANTIATE(T, 128)            \
  FITLM_INSTANTIATE(T, 256)
FITLM_INSTANTIATE_HEAD_DIMS(__nv_bfloat16)
FITLM_INSTANTIATE_HEAD_DIMS(__half)
#undef FITLM_INSTANTIATE_HEAD_DIMS
#undef FITLM_INSTANTIATE

}  // namespace fitlm::cuda
