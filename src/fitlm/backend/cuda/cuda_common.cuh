// Device-side helpers shared by the CUDA kernels: element conversions, typed and dtype-erased
// element accessors, block reductions and the one dtype dispatch. Included by .cu files only.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "fitlm/backend/cuda/cuda_check.h"
#include "fitlm/core/tensor.h"

namespace fitlm::cuda {

__device__ __forceinline__ float to_f32(float x) {
  return x;
}
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) {
  return __bfloat162float(x);
}
__device__ __forceinline__ float to_f32(__half x) {
  return __half2float(x);
}

template <typename T>
__device__ __forceinline__ T from_f32(float x);
template <>
__device__ __forceinline__ float from_f32<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}
template <>
__device__ __forceinline__ __half from_f32<__half>(float x) {
  return __float2half_rn(x);
}

// Element accessor with the dtype known at compile time (the hot tensors of an op).
template <typename T>
struct Typed {
  T* p;
  __device__ __forceinline__ float load(int64_t i) const { return to_f32(p[i]); }
  __device__ __forceinline__ void store(int64_t i, float v) const { p[i] = from_f32<T>(v); }
};

// Element accessor with the dtype read at run time: for the secondary tensors of an op (a norm
// weight, a gradient that may be f32 or bf16). The switch is uniform across a warp.
struct Dyn {
  void* p;
  DType t;
  __device__ __forceinline__ float load(int64_t i) const {
    switch (t) {
      case DType::kBF16: return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
      case DType::kF16: return __half2float(static_cast<const __half*>(p)[i]);
      default: return static_cast<const float*>(p)[i];
    }
  }
  __device__ __forceinline__ void store(int64_t i, float v) const {
    switch (t) {
      case DType::kBF16: static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v); break;
      case DType::kF16: static_cast<__half*>(p)[i] = __float2half_rn(v); break;
      default: static_cast<float*>(p)[i] = v; break;
    }
  }
};

inline Dyn dyn(const Tensor& t) {
  return Dyn{t.data, t.dtype};
}

inline bool is_float_dtype(DType t) {
  return t == DType::kF32 || t == DType::kBF16 || t == DType::kF16;
}

// Calls f(T{}) with T the C++ type of a floating dtype: the one dispatch point of the backend.
template <typename F>
void dispatch_float(DType t, F&& f) {
  switch (t) {
    case DType::kF32: f(float{}); return;
    case DType::kBF16: f(__nv_bfloat16{}); return;
    case DType::kF16: f(__half{}); return;
    default: throw_arg_error("expected a floating dtype (f32, bf16, f16)", __FILE__, __LINE__);
  }
}

// Same, for the 16-bit storage dtypes only (ops built on the matrix units).
template <typename F>
void dispatch_half(DType t, F&& f) {
  switch (t) {
    case DType::kBF16: f(__nv_bfloat16{}); return;
    case DType::kF16: f(__half{}); return;
    default: throw_arg_error("expected a 16-bit dtype (bf16, f16)", __FILE__, __LINE__);
  }
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the whole block, returned to every thread. `scratch` holds 32 floats; the block size
// is a multiple of 32. Ends with a barrier so scratch can be reused right after.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
  v = warp_sum(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < n_warps ? scratch[lane] : 0.0f;
  v = warp_sum(v);
  __syncthreads();
  return v;
}

inline unsigned grid_for(int64_t n, int threads, int64_t max_blocks = 132 * 16) {
  int64_t b = (n + threads - 1) / threads;
  if (b > max_blocks) b = max_blocks;
  return static_cast<unsigned>(b < 1 ? 1 : b);
}

}  // namespace fitlm::cuda
