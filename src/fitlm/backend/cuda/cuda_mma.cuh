// Tensor-core building blocks for the attention kernels: the m16n8k16 MMA (f32 accumulate) on
// bf16/f16 fragments, fragment loads from padded shared-memory tiles, tile copies and the
// segment lookup for packed sequences.
//
// Fragment layout of mma.m16n8k16 (PTX ISA), g = lane / 4, t = lane % 4:
//   A (16×16, row): a0 = (g, 2t..2t+1), a1 = (g+8, 2t..), a2 = (g, 2t+8..), a3 = (g+8, 2t+8..)
//   B (16×8, col):  b0 = (k 2t..2t+1, n g), b1 = (k 2t+8.., n g)
//   C (16×8, f32):  c0,c1 = (g, 2t..2t+1), c2,c3 = (g+8, 2t..2t+1)
// So an S tile held as C fragments is already the A fragment of P for the next product.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

namespace fitlm::cuda {

// Shared-memory tiles are [rows][HD + kPad]: 8 halves of padding shift each row by 4 banks, so
// the 8 rows × 4 words a fragment load touches hit 32 different banks.
constexpr int kPad = 8;

// Resident blocks per SM the attention kernels ask registers for: three (12 warps, to hide the
// latency of each warp's dependent ldmatrix → mma chain) up to head_dim 128; at 256 the f32
// accumulators alone take 128+ registers per thread, so one.
constexpr int min_blocks_for(int head_dim) {
  return head_dim <= 128 ? 3 : 1;
}

template <typename T>
__device__ __forceinline__ uint32_t pack2(float lo, float hi);
template <>
__device__ __forceinline__ uint32_t pack2<__nv_bfloat16>(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}
template <>
__device__ __forceinline__ uint32_t pack2<__half>(float lo, float hi) {
  __half2 v = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

template <typename T>
__device__ __forceinline__ void mma16816(float c[4], const uint32_t a[4], const uint32_t b[2]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 750
  // Turing (T4): two m16n8k8 f16 products; no bf16 matrix units, so bf16 traps.
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    __trap();
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5}, {%6}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(b[0]));
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5}, {%6}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[2]), "r"(a[3]), "r"(b[1]));
  }
#else
  (void)c;
  (void)a;
  (void)b;
#endif
}

// Fragment loads use ldmatrix: one instruction moves four 8×8 matrices (lanes 8m..8m+7 give the
// row addresses of matrix m) instead of 4–8 scalar shared loads. Version 1 of these kernels used
// scalar loads and ran the forward at 138 TFLOP/s on an H100 (bench/NOTES.md).
__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}

// A fragment for rows r0..r0+15, columns k0..k0+15 of a padded [.][LD] tile.
// Matrices: (rows r0.., cols k0..), (r0+8.., k0..), (r0.., k0+8..), (r0+8.., k0+8..).
template <typename T, int LD>
__device__ __forceinline__ void load_a(uint32_t a[4], const T* tile, int r0, int k0, int lane) {
  const int m = lane >> 3, i = lane & 7;
  ldmatrix_x4(a, tile + (r0 + i + (m & 1) * 8) * LD + k0 + (m >> 1) * 8);
}
// B fragments of two n-tiles (n0..n0+15) where n runs down the tile's rows and k along its
// columns (k0..k0+15): the X·Yᵀ case. b[j] is the fragment of n-tile n0 + 8j.
template <typename T, int LD>
__device__ __forceinline__ void load_b_rows_x2(uint32_t b[2][2], const T* tile, int n0, int k0,
                                               int lane) {
  const int m = lane >> 3, i = lane & 7;
  uint32_t r[4];
  ldmatrix_x4(r, tile + (n0 + i + (m >> 1) * 8) * LD + k0 + (m & 1) * 8);
  b[0][0] = r[0];
  b[0][1] = r[1];
  b[1][0] = r[2];
  b[1][1] = r[3];
}
// B fragments of two n-tiles (n0..n0+15 along the tile's columns) where k runs down the rows
// (k0..k0+15): the X·Y case, transposed on the fly by ldmatrix.trans.
template <typename T, int LD>
__device__ __forceinline__ void load_b_cols_x2(uint32_t b[2][2], const T* tile, int k0, int n0,
                                               int lane) {
  const int m = lane >> 3, i = lane & 7;
  uint32_t r[4];
  ldmatrix_x4_trans(r, tile + (k0 + i + (m & 1) * 8) * LD + n0 + (m >> 1) * 8);
  b[0][0] = r[0];
  b[0][1] = r[1];
  b[1][0] = r[2];
  b[1][1] = r[3];
}

// Asynchronous global→shared copies (cp.async, sm_80+), so that the next tile streams in while
// the current one is multiplied; a block then needs no second resident block to hide its load
// latency. `valid == false` zero-fills the 16 bytes (src-size 0) without reading `gmem`. Older
// GPUs (T4, V100) copy synchronously; the commit/wait calls are then no-ops.
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(smem)), "l"(gmem),
               "r"(valid ? 16 : 0));
#else
  *reinterpret_cast<uint4*>(smem) =
      valid ? *reinterpret_cast<const uint4*>(gmem) : make_uint4(0, 0, 0, 0);
#endif
}
// 4-byte variant (per-row statistics), zero-filled when invalid.
__device__ __forceinline__ void cp_async4(void* smem, const void* gmem, bool valid) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem_addr(smem)), "l"(gmem),
               "r"(valid ? 4 : 0));
#else
  *reinterpret_cast<uint32_t*>(smem) = valid ? *reinterpret_cast<const uint32_t*>(gmem) : 0u;
#endif
}
__device__ __forceinline__ void cp_async_commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\n" ::);
#endif
}
// Waits until at most N committed groups are still in flight (this thread's copies only: a
// __syncthreads() must follow before other threads read the tile).
template <int N>
__device__ __forceinline__ void cp_async_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
#endif
}

// rows × HD halves from global (row stride `stride` elements, rows ≥ n_rows zero-filled) into a
// padded tile, 16 bytes per cp.async: the caller commits and waits.
template <typename T, int HD, int ROWS, int THREADS>
__device__ __forceinline__ void load_tile_async(T* tile, const T* src, int64_t stride, int row0,
                                                int n_rows) {
  constexpr int kChunks = HD / 8;
  for (int idx = threadIdx.x; idx < ROWS * kChunks; idx += THREADS) {
    const int r = idx / kChunks, c = idx % kChunks;
    const bool ok = row0 + r < n_rows;
    // An invalid row reads nothing, but the address must still be a mapped one: use row 0.
    cp_async16(tile + r * (HD + kPad) + c * 8, src + (ok ? row0 + r : 0) * stride + c * 8, ok);
  }
}

// acc[16 × HD] += S · tile, for a warp whose S [16 × 8·N] is held as f32 C fragments (which
// are the A fragments of the next product, see the top) and a [8·N × HD] shared tile: P·V, Pᵀ·dO,
// dSᵀ·Q, dS·K.
template <typename T, int LD, int HD, int N>
__device__ __forceinline__ void mma_fragments_by_tile(float (&acc)[HD / 8][4],
                                                      const float (&s)[N][4], const T* tile,
                                                      int lane) {
#pragma unroll
  for (int kk = 0; kk < N / 2; ++kk) {
    const uint32_t a[4] = {
        pack2<T>(s[2 * kk][0], s[2 * kk][1]), pack2<T>(s[2 * kk][2], s[2 * kk][3]),
        pack2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]), pack2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
    for (int nt = 0; nt < HD / 8; nt += 2) {
      uint32_t b[2][2];
      load_b_cols_x2<T, LD>(b, tile, kk * 16, nt * 8, lane);
      mma16816<T>(acc[nt], a, b[0]);
      mma16816<T>(acc[nt + 1], a, b[1]);
    }
  }
}

// acc[16 × 8·N] = rows r0..r0+15 of tile a · (first 8·N rows of tile b)ᵀ, both [.][HD] tiles:
// Sᵀ = K·Qᵀ and dPᵀ = V·dOᵀ.
template <typename T, int LD, int HD, int N>
__device__ __forceinline__ void mma_rows_by_rows(float (&acc)[N][4], const T* a_tile, int r0,
                                                 const T* b_tile, int lane) {
#pragma unroll
  for (int kk = 0; kk < HD / 16; ++kk) {
    uint32_t a[4];
    load_a<T, LD>(a, a_tile, r0, kk * 16, lane);
#pragma unroll
    for (int nt = 0; nt < N; nt += 2) {
      uint32_t b[2][2];
      load_b_rows_x2<T, LD>(b, b_tile, nt * 8, kk * 16, lane);
      mma16816<T>(acc[nt], a, b[0]);
      mma16816<T>(acc[nt + 1], a, b[1]);
    }
  }
}

// One step of a double-buffered loop: start step + 1's copies (if any), wait for step's, and make
// them visible to the whole block.
template <typename Issue>
__device__ __forceinline__ void pipeline_advance(int step, int steps, Issue&& issue_step) {
  if (step + 1 < steps) {
    issue_step(step + 1);
    cp_async_wait<1>();
  } else {
    cp_async_wait<0>();
  }
  __syncthreads();
}

// Index of the segment holding token i: the last s with cu[s] <= i (cu has n_seg + 1 entries).
__device__ __forceinline__ int segment_of(const int32_t* cu, int n_seg, int i) {
  int lo = 0, hi = n_seg - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (cu[mid] <= i)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

}  // namespace fitlm::cuda
