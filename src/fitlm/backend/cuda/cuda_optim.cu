// Optimizer kernels. Σx² accumulates in f64 per thread and per block (gradients of billions of
// elements lose digits in f32); each block writes its partial and one block sums them in block
// order. (One f64 atomic per block, version 1, made the norm — and through clipping the update —
// depend on which block finished first.)
#include <cmath>

#include "fitlm/backend/cuda/cuda_common.cuh"
#include "fitlm/backend/cuda/cuda_optim.cuh"

namespace fitlm::cuda {
namespace {

// Σ of one value per thread over the block, in a fixed order; thread 0 gets the total.
__device__ double block_sum(double s) {
  __shared__ double part[32];
  for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) part[warp] = s;
  __syncthreads();
  s = 0.0;
  if (warp == 0) {
    s = lane < static_cast<int>(blockDim.x >> 5) ? part[lane] : 0.0;
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
  }
  return s;
}

template <typename X>
__global__ void sum_squares_kernel(X x, int64_t n, double* partials) {
  double s = 0.0;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const double v = x.load(i);
    s += v * v;
  }
  s = block_sum(s);
  if (threadIdx.x == 0) partials[blockIdx.x] = s;
}

__global__ void sum_partials_kernel(const double* partials, int count, double* result) {
  double s = 0.0;
  for (int i = threadIdx.x; i < count; i += blockDim.x) s += partials[i];
  s = block_sum(s);
  if (threadIdx.x == 0) *result = s;
}

// torch.optim.AdamW order (as the CPU twin): decay, moments, bias-corrected step.
template <typename G>
__global__ void adamw_kernel(float* p, G grad, float* m, float* v, int64_t n, float grad_scale,
                             float beta1, float beta2, float eps, float step_size, float bc2_sqrt,
                             float decay) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const float g = grad.load(i) * grad_scale;
    float pi = p[i] * decay;
    const float mi = beta1 * m[i] + (1.0f - beta1) * g;
    const float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
    pi -= step_size * mi / (sqrtf(vi) / bc2_sqrt + eps);
    p[i] = pi;
    m[i] = mi;
    v[i] = vi;
  }
}

}  // namespace

void launch_sum_squares(const Tensor& x, double* partials, double* result, cudaStream_t stream) {
  const int64_t n = x.numel();
  const unsigned blocks = grid_for(n, 256, kSumSquaresBlocks);
  if (n > 0) {
    dispatch_float(x.dtype, [&](auto tag) {
      using T = decltype(tag);
      sum_squares_kernel<<<blocks, 256, 0, stream>>>(Typed<T>{x.as<T>()}, n, partials);
    });
    FITLM_CUDA_CHECK_LAUNCH();
  }
  sum_partials_kernel<<<1, 256, 0, stream>>>(partials, n > 0 ? static_cast<int>(blocks) : 0,
                                             result);
  FITLM_CUDA_CHECK_LAUNCH();
}

void launch_adamw(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v,
                  const AdamWArgs& hp, float grad_scale, cudaStream_t stream) {
  const int64_t n = param.numel();
  if (n == 0) return;
  const double bc1 = 1.0 - std::pow(static_cast<double>(hp.beta1), static_cast<double>(hp.step));
  const double bc2 = 1.0 - std::pow(static_cast<double>(hp.beta2), static_cast<double>(hp.step));
  const float step_size = static_cast<float>(hp.lr / bc1);
  const float bc2_sqrt = static_cast<float>(std::sqrt(bc2));
  const float decay = 1.0f - hp.lr * hp.weight_decay;
  dispatch_float(grad.dtype, [&](auto tag) {
    using T = decltype(tag);
    adamw_kernel<<<grid_for(n, 256), 256, 0, stream>>>(
        param.as<float>(), Typed<T>{grad.as<T>()}, m.as<float>(), v.as<float>(), n, grad_scale,
        hp.beta1, hp.beta2, hp.eps, step_size, bc2_sqrt, decay);
  });
  FITLM_CUDA_CHECK_LAUNCH();
}

}  // namespace fitlm::cuda
