// SwiGLU kernels: one pass, f32 math, no intermediate buffers (silu and sigmoid recomputed in
// the backward from gate, which the layer keeps anyway). The backward may run in place (dgate =
// gate, dup = up, backend.h): each thread loads dout, gate and up at its indices before storing
// dgate and dup at the same indices, and no thread touches another's indices.
#include <initializer_list>

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

// 16-bit storage, 8 elements (16 bytes) per load: the scalar kernels above reach about half of
// the memory bandwidth on [T, 14336] tensors, these close to all of it (bench/NOTES.md).
template <typename T>
struct Vec8 {
  static_assert(sizeof(T) == 2);
  uint4 raw;
  __device__ __forceinline__ float get(int j) const {
    return to_f32(reinterpret_cast<const T*>(&raw)[j]);
  }
  __device__ __forceinline__ void set(int j, float v) {
    reinterpret_cast<T*>(&raw)[j] = from_f32<T>(v);
  }
};

template <typename T>
__global__ void swiglu_forward_vec8_kernel(const uint4* gate, const uint4* up, uint4* out,
                                           int64_t n8) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n8;
       i += int64_t{gridDim.x} * blockDim.x) {
    Vec8<T> g{gate[i]}, u{up[i]}, o{};
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const float x = g.get(j);
      o.set(j, x / (1.0f + __expf(-x)) * u.get(j));
    }
    out[i] = o.raw;
  }
}

template <typename T>
__global__ void swiglu_backward_vec8_kernel(const uint4* dout, const uint4* gate, const uint4* up,
                                            uint4* dgate, uint4* dup, int64_t n8) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n8;
       i += int64_t{gridDim.x} * blockDim.x) {
    Vec8<T> d{dout[i]}, g{gate[i]}, u{up[i]}, dg{}, du{};
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const float x = g.get(j), dj = d.get(j);
      const float sig = 1.0f / (1.0f + __expf(-x));
      du.set(j, dj * x * sig);
      dg.set(j, dj * u.get(j) * sig * (1.0f + x * (1.0f - sig)));
    }
    dgate[i] = dg.raw;
    dup[i] = du.raw;
  }
}

bool vec8_ok(std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts)
    if (t->numel() % 8 != 0 || reinterpret_cast<uintptr_t>(t->data) % 16 != 0 ||
        (t->dtype != DType::kBF16 && t->dtype != DType::kF16) || t->dtype != (*ts.begin())->dtype)
      return false;
  return true;
}

}  // namespace

void launch_swiglu_forward(const Tensor& gate, const Tensor& up, const Tensor& out,
                           cudaStream_t stream) {
  const int64_t n = out.numel();
  if (n == 0) return;
  if (vec8_ok({&gate, &up, &out})) {
    dispatch_half(out.dtype, [&](auto tag) {
      using T = decltype(tag);
      swiglu_forward_vec8_kernel<T><<<grid_for(n / 8, 256), 256, 0, stream>>>(
          gate.as<uint4>(), up.as<uint4>(), out.as<uint4>(), n / 8);
    });
  } else if (gate.dtype == up.dtype && up.dtype == out.dtype) {
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
  if (vec8_ok({&gate, &dout, &up, &dgate, &dup})) {
    dispatch_half(t, [&](auto tag) {
      using T = decltype(tag);
      swiglu_backward_vec8_kernel<T><<<grid_for(n / 8, 256), 256, 0, stream>>>(
          dout.as<uint4>(), gate.as<uint4>(), up.as<uint4>(), dgate.as<uint4>(), dup.as<uint4>(),
          n / 8);
    });
  } else if (dout.dtype == t && up.dtype == t && dgate.dtype == t && dup.dtype == t) {
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
