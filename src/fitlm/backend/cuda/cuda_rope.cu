// RoPE kernel: one thread per (token, frequency pair); cos/sin computed once and applied to
// every head of the row. sincosf (not __sincosf): angles reach 1e5 rad at long positions, where
// the fast intrinsic loses every digit.
#include "fitlm/backend/cuda/cuda_common.cuh"
#include "fitlm/backend/cuda/cuda_rope.cuh"

namespace fitlm::cuda {
namespace {

template <typename T>
__global__ void rope_kernel(T* x, int64_t t_count, int n_heads, int head_dim,
                            const int32_t* positions, const float* inv_freq, float sign) {
  const int half = head_dim / 2;
  const int64_t idx = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (idx >= t_count * half) return;
  const int64_t t = idx / half;
  const int j = static_cast<int>(idx % half);
  const float angle = static_cast<float>(positions[t]) * inv_freq[j];
  float s, c;
  sincosf(angle, &s, &c);
  s *= sign;
  T* row = x + t * int64_t{n_heads} * head_dim;
  for (int h = 0; h < n_heads; ++h) {
    T* r = row + int64_t{h} * head_dim;
    const float x1 = to_f32(r[j]), x2 = to_f32(r[j + half]);
    r[j] = from_f32<T>(x1 * c - x2 * s);
    r[j + half] = from_f32<T>(x2 * c + x1 * s);
  }
}

}  // namespace

void launch_rope(const Tensor& x, int n_heads, int head_dim, const Tensor& positions,
                 const Tensor& inv_freq, bool inverse, cudaStream_t stream) {
  const int64_t t_count = x.rows();
  const int64_t n = t_count * (head_dim / 2);
  if (n == 0) return;
  dispatch_float(x.dtype, [&](auto tag) {
    using T = decltype(tag);
    rope_kernel<<<static_cast<unsigned>((n + 255) / 256), 256, 0, stream>>>(
        x.as<T>(), t_count, n_heads, head_dim, positions.as<int32_t>(), inv_freq.as<float>(),
        inverse ? -1.0f : 1.0f);
  });
  FITLM_CUDA_CHECK_LAUNCH();
}

}  // namespace fitlm::cuda
