// Cross-entropy kernel: one block per row. Pass 1 is an online max/sum-exp (each thread keeps
// its running max m and Σexp(z−m)), merged across the block; pass 2 overwrites the row with the
// gradient. Two reads and one write of the row: no f32 copy of the logits is ever stored.
#include <cfloat>

#include "fitlm/backend/cuda/cuda_common.cuh"
#include "fitlm/backend/cuda/cuda_cross_entropy.cuh"

namespace fitlm::cuda {
namespace {

// Merge two (max, sum) pairs of the online softmax. An empty side has m = −inf and s = 0.
__device__ __forceinline__ void merge(float& m, float& s, float m2, float s2) {
  const float mx = fmaxf(m, m2);
  if (mx == -INFINITY) return;
  s = s * __expf(m - mx) + s2 * __expf(m2 - mx);
  m = mx;
}

template <typename T>
__global__ void cross_entropy_kernel(T* logits, const int32_t* labels, float* losses, int64_t vocab,
                                     float grad_scale, bool compute_grad, int* error_flag) {
  __shared__ float sm[32], ss[32];
  __shared__ float lse_shared;
  T* z = logits + blockIdx.x * vocab;
  const int32_t label = labels[blockIdx.x];
  const bool ignored = label == -100;
  const bool bad = !ignored && (label < 0 || label >= vocab);
  if (ignored || bad) {
    if (threadIdx.x == 0) {
      losses[blockIdx.x] = 0.0f;
      if (bad) atomicExch(error_flag, 1);
    }
    if (compute_grad)
      for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) z[i] = from_f32<T>(0.0f);
    return;
  }
  float m = -INFINITY, s = 0.0f;
  for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) {
    const float v = to_f32(z[i]);
    if (v > m) {
      s = s * __expf(m - v) + 1.0f;
      m = v;
    } else {
      s += __expf(v - m);
    }
  }
  for (int o = 16; o > 0; o >>= 1)
    merge(m, s, __shfl_xor_sync(0xffffffffu, m, o), __shfl_xor_sync(0xffffffffu, s, o));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) {
    sm[warp] = m;
    ss[warp] = s;
  }
  __syncthreads();
  if (warp == 0) {
    const int n_warps = blockDim.x >> 5;
    m = lane < n_warps ? sm[lane] : -INFINITY;
    s = lane < n_warps ? ss[lane] : 0.0f;
    for (int o = 16; o > 0; o >>= 1)
      merge(m, s, __shfl_xor_sync(0xffffffffu, m, o), __shfl_xor_sync(0xffffffffu, s, o));
    if (lane == 0) {
      const float lse = m + logf(s);
      lse_shared = lse;
      losses[blockIdx.x] = lse - to_f32(z[label]);
    }
  }
  __syncthreads();
  if (!compute_grad) return;
  const float lse = lse_shared;
  for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) {
    const float g = __expf(to_f32(z[i]) - lse) * grad_scale;
    z[i] = from_f32<T>(i == label ? g - grad_scale : g);
  }
}

}  // namespace

void launch_cross_entropy(const Tensor& logits, const Tensor& labels, const Tensor& losses,
                          float grad_scale, bool compute_grad, int* error_flag,
                          cudaStream_t stream) {
  const int64_t rows = logits.rows(), vocab = logits.cols();
  if (rows == 0) return;
  dispatch_float(logits.dtype, [&](auto tag) {
    using T = decltype(tag);
    cross_entropy_kernel<<<static_cast<unsigned>(rows), 512, 0, stream>>>(
        logits.as<T>(), labels.as<int32_t>(), losses.as<float>(), vocab, grad_scale, compute_grad,
        error_flag);
  });
  FITLM_CUDA_CHECK_LAUNCH();
}

}  // namespace fitlm::cuda
