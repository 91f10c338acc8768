// SwiGLU kernels: one pass, f32 math, no intermediate buffers (silu and sigmoid recomputed in
// the backward from gate, which the layer keeps anyway).
#include "fitlm/backend/cuda/cuda_common.cuh"
#include "fitlm/backend/cuda/cuda_swiglu.cuh"

namespace fitlm::cuda {
namespace {

template <typename A>
__global__ void swiglu_forward_kernel(A gate, A up, A out, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const float g = gate.load(i);
    out.store(i, g / (1.0f + expf(-g)) * up.load(i));
  }
}

template <typename A>
__global__ void swiglu_backward_kernel(A dout, A gate, A up, A dgate, A dup, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const float d = dout.load(i), g = gate.load(i), u = up.load(i);
    const float sig = 1.0f / (1.0f + expf(-g));
    dup.store(i, d * g * sig);
    dgate.store(i, d * u * sig * (1.0f + g * (1.0f - sig)));
  }
}

}  // namespace

void launch_swiglu_forward(const Tensor& gate, const Tensor& up, const Tensor& out,
                           cudaStream_t stream) {
  const int64_t n = out.numel();
  if (n == 0) return;
  if (gate.dtype == up.dtype && up.dtype == out.dtype) {
    dispatch_float(out.dtype, [&](auto tag) {
      using T = decltype(tag);
      swiglu_forward_kernel<<<grid_for(n, 256), 256, 0, stream>>>(
          Typed<T>{gate.as<T>()}, Typed<T>{up.as<T>()}, Typed<T>{out.as<T>()}, n);
    });
  } else {
    swiglu_forward_kernel<<<grid_for(n, 256), 256, 0, stream>>>(dyn(gate), dyn(up), dyn(out), n);
  }
  FITLM_CUDA_CHECK_LAUNCH();
}

void launch_swiglu_backward(const Tensor& dout, const Tensor& gate, const Tensor& up,
                            const Tensor& dgate, const Tensor& dup, cudaStream_t stream) {
  const int64_t n = gate.numel();
  if (n == 0) return;
  const DType t = gate.dtype;
  if (dout.dtype == t && up.dtype == t && dgate.dtype == t && dup.dtype == t) {
    dispatch_float(t, [&](auto tag) {
      using T = decltype(tag);
      swiglu_backward_kernel<<<grid_for(n, 256), 256, 0, stream>>>(
          Typed<T>{dout.as<T>()}, Typed<T>{gate.as<T>()}, Typed<T>{up.as<T>()},
          Typed<T>{dgate.as<T>()}, Typed<T>{dup.as<T>()}, n);
    });
  } else {
    swiglu_backward_kernel<<<grid_for(n, 256), 256, 0, stream>>>(dyn(dout), dyn(gate), dyn(up),
                                                                 dyn(dgate), dyn(dup), n);
  }
  FITLM_CUDA_CHECK_LAUNCH();
}

}  // namespace fitlm::cuda
