// Element-wise family kernels. Grid-stride loops, f32 arithmetic.
#include "fitlm/backend/cuda/cuda_common.cuh"
#include "fitlm/backend/cuda/cuda_elementwise.cuh"

namespace fitlm::cuda {
namespace {

#define FITLM_GRID_STRIDE(i, n)                                             \
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < (n); \
       i += int64_t{gridDim.x} * blockDim.x)

template <typename A, typename B, typename O>
__global__ void add_kernel(A a, B b, O out, int64_t n) {
  FITLM_GRID_STRIDE(i, n) out.store(i, a.load(i) + b.load(i));
}

template <typename X, typename Y>
__global__ void axpy_kernel(float alpha, X x, Y y, int64_t n) {
  FITLM_GRID_STRIDE(i, n) y.store(i, y.load(i) + alpha * x.load(i));
}

template <typename X>
__global__ void scale_kernel(X x, float alpha, int64_t n) {
  FITLM_GRID_STRIDE(i, n) x.store(i, x.load(i) * alpha);
}

template <typename X>
__global__ void add_bias_kernel(X x, Dyn bias, int64_t n, int64_t cols) {
  FITLM_GRID_STRIDE(i, n) x.store(i, x.load(i) + bias.load(i % cols));
}

// dbias[c] += Σ_r dout[r, c]: a block owns 32 columns, its 16 warps split the rows, then a
// shared-memory reduction; one writer per column keeps it deterministic.
template <typename D>
__global__ void bias_backward_kernel(D dout, Dyn dbias, int64_t rows, int64_t cols) {
  __shared__ float part[16][33];
  const int64_t c = blockIdx.x * 32 + threadIdx.x;
  float s = 0.0f;
  if (c < cols)
    for (int64_t r = threadIdx.y; r < rows; r += 16) s += dout.load(r * cols + c);
  part[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    for (int k = 1; k < 16; ++k) s += part[k][threadIdx.x];
    dbias.store(c, dbias.load(c) + s);
  }
}

// Bit-for-bit the same as dropout_uniform() in cpu_backend.h (splitmix64 of seed and index).
__device__ __forceinline__ float dropout_uniform_device(uint64_t seed, uint64_t index) {
  uint64_t z = seed + 0x9e3779b97f4a7c15ull * (index + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return static_cast<float>(z >> 40) * (1.0f / 16777216.0f);
}

template <typename X, typename O>
__global__ void dropout_kernel(X x, O out, float p, float keep_scale, uint64_t seed, int64_t n) {
  FITLM_GRID_STRIDE(i, n) {
    const bool keep = dropout_uniform_device(seed, static_cast<uint64_t>(i)) >= p;
    out.store(i, keep ? x.load(i) * keep_scale : 0.0f);
  }
}

// Typed accessors when every tensor shares one dtype, run-time accessors otherwise.
template <typename F>
void with_accessors(const Tensor& a, const Tensor& b, F&& f) {
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

void launch_add(const Tensor& a, const Tensor& b, const Tensor& out, cudaStream_t stream) {
  const int64_t n = out.numel();
  if (n == 0) return;
  if (a.dtype == b.dtype && a.dtype == out.dtype) {
    dispatch_float(a.dtype, [&](auto tag) {
      using T = decltype(tag);
      add_kernel<<<grid_for(n, 256), 256, 0, stream>>>(Typed<T>{a.as<T>()}, Typed<T>{b.as<T>()},
                                                       Typed<T>{out.as<T>()}, n);
    });
  } else {
    add_kernel<<<grid_for(n, 256), 256, 0, stream>>>(dyn(a), dyn(b), dyn(out), n);
  }
  FITLM_CUDA_CHECK_LAUNCH();
}

void launch_axpy(float alpha, const Tensor& x, const Tensor& y, cudaStream_t stream) {
  const int64_t n = y.numel();
  if (n == 0) return;
  with_accessors(x, y, [&](auto xa, auto ya) {
    axpy_kernel<<<grid_for(n, 256), 256, 0, stream>>>(alpha, xa, ya, n);
  });
  FITLM_CUDA_CHECK_LAUNCH();
}

void launch_scale(const Tensor& x, float alpha, cudaStream_t stream) {
  const int64_t n = x.numel();
  if (n == 0) return;
  dispatch_float(x.dtype, [&](auto tag) {
    using T = decltype(tag);
    scale_kernel<<<grid_for(n, 256), 256, 0, stream>>>(Typed<T>{x.as<T>()}, alpha, n);
  });
  FITLM_CUDA_CHECK_LAUNCH();
}

void launch_add_bias(const Tensor& x, const Tensor& bias, cudaStream_t stream) {
  const int64_t n = x.numel();
  if (n == 0) return;
  dispatch_float(x.dtype, [&](auto tag) {
    using T = decltype(tag);
    add_bias_kernel<<<grid_for(n, 256), 256, 0, stream>>>(Typed<T>{x.as<T>()}, dyn(bias), n,
                                                          x.cols());
  });
  FITLM_CUDA_CHECK_LAUNCH();
}

void launch_bias_backward(const Tensor& dout, const Tensor& dbias, cudaStream_t stream) {
  const int64_t rows = dout.rows(), cols = dout.cols();
  if (cols == 0) return;
  const dim3 grid(static_cast<unsigned>((cols + 31) / 32)), block(32, 16);
  dispatch_float(dout.dtype, [&](auto tag) {
    using T = decltype(tag);
    bias_backward_kernel<<<grid, block, 0, stream>>>(Typed<T>{dout.as<T>()}, dyn(dbias), rows,
                                                     cols);
  });
  FITLM_CUDA_CHECK_LAUNCH();
}

void launch_dropout(const Tensor& x, const Tensor& out, float p, uint64_t seed,
                    cudaStream_t stream) {
  const int64_t n = x.numel();
  if (n == 0) return;
  const float keep_scale = 1.0f / (1.0f - p);
  with_accessors(x, out, [&](auto xa, auto oa) {
    dropout_kernel<<<grid_for(n, 256), 256, 0, stream>>>(xa, oa, p, keep_scale, seed, n);
  });
  FITLM_CUDA_CHECK_LAUNCH();
}

}  // namespace fitlm::cuda
