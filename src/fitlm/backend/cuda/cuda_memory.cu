// Memory family kernels: fill and casts between f32, bf16 and f16.
#include "fitlm/backend/cuda/cuda_common.cuh"
#include "fitlm/backend/cuda/cuda_memory.cuh"

namespace fitlm::cuda {
namespace {

template <typename O>
__global__ void fill_kernel(O out, float value, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x)
    out.store(i, value);
}

__global__ void fill_i32_kernel(int32_t* out, int32_t value, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x)
    out[i] = value;
}

template <typename I, typename O>
__global__ void cast_kernel(I in, O out, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x)
    out.store(i, in.load(i));
}

}  // namespace

void launch_fill(const Tensor& x, float value, cudaStream_t stream) {
  const int64_t n = x.numel();
  if (n == 0) return;
  if (x.dtype == DType::kI32) {
    fill_i32_kernel<<<grid_for(n, 256), 256, 0, stream>>>(x.as<int32_t>(),
                                                          static_cast<int32_t>(value), n);
  } else {
    dispatch_float(x.dtype, [&](auto tag) {
      using T = decltype(tag);
      fill_kernel<<<grid_for(n, 256), 256, 0, stream>>>(Typed<T>{x.as<T>()}, value, n);
    });
  }
  FITLM_CUDA_CHECK_LAUNCH();
}

void launch_cast(const Tensor& src, const Tensor& dst, cudaStream_t stream) {
  const int64_t n = src.numel();
  if (n == 0) return;
  FITLM_CUDA_ARG(is_float_dtype(src.dtype) && is_float_dtype(dst.dtype),
                 "casts are between f32, bf16 and f16");
  // The common casts get typed kernels; the rest go through the run-time accessor.
  if (src.dtype == DType::kF32 && dst.dtype != DType::kF32) {
    dispatch_half(dst.dtype, [&](auto tag) {
      using T = decltype(tag);
      cast_kernel<<<grid_for(n, 256), 256, 0, stream>>>(Typed<float>{src.as<float>()},
                                                        Typed<T>{dst.as<T>()}, n);
    });
  } else if (dst.dtype == DType::kF32 && src.dtype != DType::kF32) {
    dispatch_half(src.dtype, [&](auto tag) {
      using T = decltype(tag);
      cast_kernel<<<grid_for(n, 256), 256, 0, stream>>>(Typed<T>{src.as<T>()},
                                                        Typed<float>{dst.as<float>()}, n);
    });
  } else {
    cast_kernel<<<grid_for(n, 256), 256, 0, stream>>>(dyn(src), dyn(dst), n);
  }
  FITLM_CUDA_CHECK_LAUNCH();
}

}  // namespace fitlm::cuda
