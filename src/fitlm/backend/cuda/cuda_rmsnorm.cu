// RMSNorm kernels: one block per row for the row-wise parts; dw is a column reduction with one
// writer per column (deterministic, no f32 scratch buffer needed).
#include "fitlm/backend/cuda/cuda_common.cuh"
#include "fitlm/backend/cuda/cuda_rmsnorm.cuh"

namespace fitlm::cuda {
namespace {

template <typename T>
__global__ void rmsnorm_forward_kernel(const T* x, Dyn w, float eps, T* out, float* rstd,
                                       int64_t h) {
  __shared__ float scratch[32];
  const T* xr = x + blockIdx.x * h;
  float ss = 0.0f;
  for (int64_t i = threadIdx.x; i < h; i += blockDim.x) {
    const float v = to_f32(xr[i]);
    ss += v * v;
  }
  ss = block_sum(ss, scratch);
  const float rs = rsqrtf(ss / static_cast<float>(h) + eps);
  if (threadIdx.x == 0) rstd[blockIdx.x] = rs;
  T* orow = out + blockIdx.x * h;
  for (int64_t i = threadIdx.x; i < h; i += blockDim.x)
    orow[i] = from_f32<T>(w.load(i) * (to_f32(xr[i]) * rs));
}

// dx_i = rs · (w_i g_i − x̂_i · mean_j(w_j g_j x̂_j)), x̂ = x · rs.
template <typename T>
__global__ void rmsnorm_backward_dx_kernel(const T* dout, const T* x, Dyn w, const float* rstd,
                                           T* dx, int64_t h) {
  __shared__ float scratch[32];
  const int64_t base = blockIdx.x * h;
  const float rs = rstd[blockIdx.x];
  float dot = 0.0f;
  for (int64_t i = threadIdx.x; i < h; i += blockDim.x)
    dot += w.load(i) * to_f32(dout[base + i]) * to_f32(x[base + i]);
  const float mean = block_sum(dot, scratch) * rs / static_cast<float>(h);
  for (int64_t i = threadIdx.x; i < h; i += blockDim.x) {
    const float xi = to_f32(x[base + i]);
    dx[base + i] = from_f32<T>(rs * (w.load(i) * to_f32(dout[base + i]) - xi * rs * mean));
  }
}

// dw[c] += Σ_r dout[r,c] · x[r,c] · rstd[r]; a block owns 32 columns, 16 warps split the rows.
template <typename T>
__global__ void rmsnorm_backward_dw_kernel(const T* dout, const T* x, const float* rstd, Dyn dw,
                                           int64_t rows, int64_t h) {
  __shared__ float part[16][33];
  const int64_t c = blockIdx.x * 32 + threadIdx.x;
  float s = 0.0f;
  if (c < h)
    for (int64_t r = threadIdx.y; r < rows; r += 16)
      s += to_f32(dout[r * h + c]) * to_f32(x[r * h + c]) * rstd[r];
  part[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && c < h) {
    for (int k = 1; k < 16; ++k) s += part[k][threadIdx.x];
    dw.store(c, dw.load(c) + s);
  }
}

unsigned threads_for_row(int64_t h) {
  return h >= 2048 ? 512 : (h >= 512 ? 256 : 128);
}

}  // namespace

void launch_rmsnorm_forward(const Tensor& x, const Tensor& w, float eps, const Tensor& out,
                            const Tensor& rstd, cudaStream_t stream) {
  const int64_t rows = x.rows(), h = x.cols();
  if (rows == 0) return;
  dispatch_float(x.dtype, [&](auto tag) {
    using T = decltype(tag);
    rmsnorm_forward_kernel<<<static_cast<unsigned>(rows), threads_for_row(h), 0, stream>>>(
        x.as<T>(), dyn(w), eps, out.as<T>(), rstd.as<float>(), h);
  });
  FITLM_CUDA_CHECK_LAUNCH();
}

void launch_rmsnorm_backward(const Tensor& dout, const Tensor& x, const Tensor& w,
                             const Tensor& rstd, const Tensor& dx, const Tensor& dw,
                             cudaStream_t stream) {
  const int64_t rows = x.rows(), h = x.cols();
  if (rows == 0) return;
  dispatch_float(x.dtype, [&](auto tag) {
    using T = decltype(tag);
    rmsnorm_backward_dx_kernel<<<static_cast<unsigned>(rows), threads_for_row(h), 0, stream>>>(
        dout.as<T>(), x.as<T>(), dyn(w), rstd.as<float>(), dx.as<T>(), h);
    FITLM_CUDA_CHECK_LAUNCH();
    if (!dw.empty()) {
      const dim3 grid(static_cast<unsigned>((h + 31) / 32)), block(32, 16);
      rmsnorm_backward_dw_kernel<<<grid, block, 0, stream>>>(dout.as<T>(), x.as<T>(),
                                                             rstd.as<float>(), dyn(dw), rows, h);
      FITLM_CUDA_CHECK_LAUNCH();
    }
  });
}

}  // namespace fitlm::cuda
