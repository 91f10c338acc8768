// 4-bit dequantization kernels (backend.h dequantize4): bitsandbytes NF4/FP4 blockwise layout
// into f32/bf16/f16, bit-identical to CpuBackend::dequantize4 and quant::dequantize4.
//
// Arithmetic, element i of block b: absmax = q.absmax[b] (f32), or with double quantization
// __fadd_rn(__fmul_rn(nested_map[code], nested_absmax[b / 256]), offset), two f32 roundings that
// nvcc may not contract into an FMA (the _rn intrinsics are never contracted); then value =
// __fmul_rn(table[nibble], absmax), rounded to q.round_to (RNE) and converted to out's dtype
// (RNE; no second rounding when round_to is f32 or equals out's dtype). The 16 code values and the
// 256 nested map values sit in shared memory: a warp's lookups hit many different entries, which
// the constant cache would serialize.
//
// Work split of the vector kernel: a unit is 8 consecutive elements starting at a multiple of 8,
// i.e. 4 packed bytes (one 32-bit load) and one 16-byte store for 16-bit outputs (two for f32).
// Blocksizes are powers of two >= 32, so a unit never straddles two blocks: one absmax per unit.
// Each block makes one pass of kThreads · kUnits units over one matrix (a launch covers up to
// kMaxBatch matrices: a layer's seven); each thread takes kUnits units kThreads apart, so each
// warp instruction loads 128 contiguous bytes and stores 512 (16-bit out) contiguous bytes, and
// all its loads are issued before the first store. The < 8 elements after a matrix's last full
// unit (an odd count included) are done one per thread by that matrix's first block. It needs q.packed 4-byte aligned
// and out 16-byte aligned (arena buffers are 256-byte aligned, layer-scratch views 64 elements);
// anything else goes to the scalar kernel (one element per thread, same arithmetic).
#include <cstdint>
#include <type_traits>

#include "fitlm/backend/cuda/cuda_common.cuh"
#include "fitlm/backend/cuda/cuda_dequant4.cuh"
#include "fitlm/core/quant4.h"

namespace fitlm::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kUnits = 4;  // units (8 elements each) per thread: a block does 8 Ki elements

struct Dq4Params {
  const uint8_t* packed;
  const void* absmax;          // f32 [blocks], or u8 [blocks] codes with double quantization
  const float* nested_absmax;  // double quantization only: f32 [ceil(blocks / 256)]
  const float* nested_map;     // double quantization only: f32 [256]
  float offset;                // double quantization only
  int log2_blocksize;
  int64_t n;
  float table[16];  // quant::code_table(q.type)
};

// The two tables into shared memory; ends with a barrier.
template <bool kDQ>
__device__ __forceinline__ void load_tables(const Dq4Params& p, float* s_table, float* s_map) {
  if (threadIdx.x == 0) {
#pragma unroll
    for (int j = 0; j < 16; ++j) s_table[j] = p.table[j];  // constant indices: stays in params
  }
  if constexpr (kDQ) {
    for (int i = threadIdx.x; i < 256; i += blockDim.x) s_map[i] = __ldg(p.nested_map + i);
  }
  __syncthreads();
}

template <bool kDQ>
__device__ __forceinline__ float block_absmax(const Dq4Params& p, const float* s_map, int64_t b) {
  if constexpr (kDQ) {
    const uint8_t code = __ldg(static_cast<const uint8_t*>(p.absmax) + b);
    const float nested = __ldg(p.nested_absmax + (b >> 8));  // quant::kNestedBlocksize
    return __fadd_rn(__fmul_rn(s_map[code], nested), p.offset);
  } else {
    return __ldg(static_cast<const float*>(p.absmax) + b);
  }
}

// v rounded to R, then stored as T (one rounding when R is f32 or T).
template <typename T, typename R>
__device__ __forceinline__ T finish(float v) {
  if constexpr (std::is_same_v<R, float> || std::is_same_v<R, T>) {
    return from_f32<T>(v);
  } else {
    return from_f32<T>(to_f32(from_f32<R>(v)));
  }
}

template <typename T>
__device__ __forceinline__ uint32_t bits16(T x) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __bfloat16_as_ushort(x);
  } else {
    return __half_as_ushort(x);
  }
}

// Two consecutive elements rounded to R and stored as T (16-bit): the paired conversion
// (cvt.rn.{bf16,f16}x2.f32, one instruction for two, the same rounding as two scalar ones); the
// first element in the low half, i.e. at the lower address.
template <typename T, typename R>
__device__ __forceinline__ uint32_t pack2(float a, float b) {
  if constexpr (!(std::is_same_v<R, float> || std::is_same_v<R, T>)) {
    a = to_f32(from_f32<R>(a));
    b = to_f32(from_f32<R>(b));
  }
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    const __nv_bfloat162 p = __floats2bfloat162_rn(a, b);
    return bits16(p.x) | (bits16(p.y) << 16);
  } else {
    const __half2 p = __floats2half2_rn(a, b);
    return bits16(p.x) | (bits16(p.y) << 16);
  }
}

// Element i (scalar paths): element 2k is the high nibble of byte k.
template <bool kDQ>
__device__ __forceinline__ float element(const Dq4Params& p, const float* s_table,
                                         const float* s_map, int64_t i) {
  const uint32_t byte = __ldg(p.packed + (i >> 1));
  const uint32_t code = (i & 1) ? (byte & 0xfu) : (byte >> 4);
  return __fmul_rn(s_table[code], block_absmax<kDQ>(p, s_map, i >> p.log2_blocksize));
}

// The 8 elements of one unit: packed word w (byte k = elements 2k, 2k+1), one absmax.
template <typename T, typename R>
__device__ __forceinline__ void store_unit(T* dst, uint32_t w, float absmax, const float* s_table) {
  float v[8];
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    const uint32_t byte = (w >> (8 * k)) & 0xffu;
    v[2 * k] = __fmul_rn(s_table[byte >> 4], absmax);
    v[2 * k + 1] = __fmul_rn(s_table[byte & 0xfu], absmax);
  }
  if constexpr (sizeof(T) == 2) {
    uint32_t h[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) h[k] = pack2<T, R>(v[2 * k], v[2 * k + 1]);
    *reinterpret_cast<uint4*>(dst) = make_uint4(h[0], h[1], h[2], h[3]);
  } else {
    float4* d = reinterpret_cast<float4*>(dst);
    d[0] =
        make_float4(finish<T, R>(v[0]), finish<T, R>(v[1]), finish<T, R>(v[2]), finish<T, R>(v[3]));
    d[1] =
        make_float4(finish<T, R>(v[4]), finish<T, R>(v[5]), finish<T, R>(v[6]), finish<T, R>(v[7]));
  }
}

// Up to kMaxBatch matrices in one launch (a layer's seven projections): matrix k owns the
// blocks [first_block[k], first_block[k + 1]), each block one pass of kThreads · kUnits units.
constexpr int kMaxBatch = 8;
template <typename T>
struct Dq4Batch {
  Dq4Params m[kMaxBatch];
  T* out[kMaxBatch];
  int64_t first_block[kMaxBatch + 1];
  int count;
};

template <typename T, typename R, bool kDQ>
__global__ void __launch_bounds__(kThreads)
    dequant4_vec_kernel(const __grid_constant__ Dq4Batch<T> batch) {
  int k = 0;
  while (k + 1 < batch.count && blockIdx.x >= batch.first_block[k + 1]) ++k;
  const Dq4Params& p = batch.m[k];
  T* __restrict__ out = batch.out[k];
  const int64_t block = int64_t{blockIdx.x} - batch.first_block[k];
  __shared__ float s_table[16];
  __shared__ float s_map[kDQ ? 256 : 1];
  load_tables<kDQ>(p, s_table, s_map);
  const uint32_t* packed = reinterpret_cast<const uint32_t*>(p.packed);
  const int64_t n8 = p.n >> 3;
  const int log2_units_per_block = p.log2_blocksize - 3;
  const int64_t base = block * (kThreads * kUnits) + threadIdx.x;
  uint32_t w[kUnits];
  float a[kUnits];
#pragma unroll
  for (int j = 0; j < kUnits; ++j) {
    const int64_t u = base + j * kThreads;
    w[j] = 0;
    a[j] = 0.0f;
    if (u < n8) {
      w[j] = __ldg(packed + u);
      a[j] = block_absmax<kDQ>(p, s_map, u >> log2_units_per_block);
    }
  }
#pragma unroll
  for (int j = 0; j < kUnits; ++j) {
    const int64_t u = base + j * kThreads;
    if (u < n8) store_unit<T, R>(out + u * 8, w[j], a[j], s_table);
  }
  const int64_t tail = p.n - n8 * 8;
  if (block == 0 && threadIdx.x < tail) {
    const int64_t i = n8 * 8 + threadIdx.x;
    out[i] = finish<T, R>(element<kDQ>(p, s_table, s_map, i));
  }
}

template <typename T, typename R, bool kDQ>
__global__ void __launch_bounds__(kThreads)
    dequant4_scalar_kernel(Dq4Params p, T* __restrict__ out) {
  __shared__ float s_table[16];
  __shared__ float s_map[kDQ ? 256 : 1];
  load_tables<kDQ>(p, s_table, s_map);
  for (int64_t i = blockIdx.x * int64_t{kThreads} + threadIdx.x; i < p.n;
       i += int64_t{gridDim.x} * kThreads)
    out[i] = finish<T, R>(element<kDQ>(p, s_table, s_map, i));
}

// Vector path: every matrix of the batch in one launch, one pass per block (no grid-stride
// loop: blocks that run one pass more than others would idle the GPU at the end of each matrix).
template <typename T, typename R, bool kDQ>
void launch_vec(const Dq4Params* ps, T* const* outs, int count, cudaStream_t stream) {
  Dq4Batch<T> b{};
  b.count = count;
  int64_t blocks = 0;
  for (int k = 0; k < count; ++k) {
    b.m[k] = ps[k];
    b.out[k] = outs[k];
    b.first_block[k] = blocks;
    const int64_t n8 = ps[k].n / 8;
    blocks += std::max<int64_t>(1, (n8 + kThreads * kUnits - 1) / (kThreads * kUnits));
  }
  b.first_block[count] = blocks;
  dequant4_vec_kernel<T, R, kDQ><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(b);
}

template <typename T, typename R, bool kDQ>
void launch_scalar(const Dq4Params& p, T* out, cudaStream_t stream) {
  dequant4_scalar_kernel<T, R, kDQ><<<grid_for(p.n, kThreads), kThreads, 0, stream>>>(p, out);
}

bool aligned(const void* ptr, uintptr_t bytes) {
  return reinterpret_cast<uintptr_t>(ptr) % bytes == 0;
}

Dq4Params params_of(const Quant4Tensor& q) {
  Dq4Params p{};
  p.packed = q.packed.as<const uint8_t>();
  p.absmax = q.absmax.data;
  if (q.double_quant()) {
    p.nested_absmax = q.nested_absmax.as<const float>();
    p.nested_map = q.nested_map.as<const float>();
    p.offset = q.offset;
  }
  FITLM_CUDA_ARG(quant::valid_blocksize(q.blocksize), "dequantize4: blocksize");
  int log2 = 0;
  while ((int64_t{1} << log2) < q.blocksize) ++log2;
  p.log2_blocksize = log2;
  p.n = q.numel();
  const auto& table = quant::code_table(q.type);
  for (int j = 0; j < 16; ++j) p.table[j] = table[j];
  return p;
}

bool vector_ok(const Quant4Tensor& q, const Tensor& out) {
  return aligned(q.packed.data, 4) && aligned(out.data, 16);
}

// The matrices [begin, end) of `work`, which share out dtype, round_to and double quantization.
void launch_group(const std::vector<std::pair<const Quant4Tensor*, Tensor>>& work, size_t begin,
                  size_t end, bool vec, cudaStream_t stream) {
  const Quant4Tensor& q0 = *work[begin].first;
  const bool dq = q0.double_quant();
  dispatch_float(work[begin].second.dtype, [&](auto out_tag) {
    using T = decltype(out_tag);
    dispatch_float(q0.round_to, [&](auto round_tag) {
      using R = decltype(round_tag);
      Dq4Params ps[kMaxBatch];
      T* outs[kMaxBatch];
      const int count = static_cast<int>(end - begin);
      for (int k = 0; k < count; ++k) {
        ps[k] = params_of(*work[begin + k].first);
        outs[k] = work[begin + k].second.as<T>();
        if (!vec) {
          if (dq)
            launch_scalar<T, R, true>(ps[k], outs[k], stream);
          else
            launch_scalar<T, R, false>(ps[k], outs[k], stream);
        }
      }
      if (!vec) return;
      if (dq)
        launch_vec<T, R, true>(ps, outs, count, stream);
      else
        launch_vec<T, R, false>(ps, outs, count, stream);
    });
  });
}

}  // namespace

void launch_dequantize4(const std::vector<std::pair<const Quant4Tensor*, Tensor>>& work,
                        cudaStream_t stream) {
  // Consecutive matrices that can share a launch run as one (at most kMaxBatch); an empty
  // matrix launches nothing.
  size_t begin = 0;
  while (begin < work.size()) {
    const Quant4Tensor& q0 = *work[begin].first;
    const Tensor& o0 = work[begin].second;
    if (q0.numel() == 0) {
      ++begin;
      continue;
    }
    const bool vec = vector_ok(q0, o0);
    size_t end = begin + 1;
    while (vec && end < work.size() && end - begin < kMaxBatch) {
      const Quant4Tensor& q = *work[end].first;
      const Tensor& o = work[end].second;
      if (q.numel() == 0 || !vector_ok(q, o) || o.dtype != o0.dtype || q.round_to != q0.round_to ||
          q.double_quant() != q0.double_quant())
        break;
      ++end;
    }
    launch_group(work, begin, end, vec, stream);
    FITLM_CUDA_CHECK_LAUNCH();
    begin = end;
  }
}

}  // namespace fitlm::cuda
