// Embedding kernels: one block per token row.
#include "fitlm/backend/cuda/cuda_common.cuh"
#include "fitlm/backend/cuda/cuda_embedding.cuh"

namespace fitlm::cuda {
namespace {

template <typename O>
__global__ void embedding_forward_kernel(const int32_t* ids, Dyn table, O out, int64_t vocab,
                                         int64_t h, int* error_flag) {
  const int64_t t = blockIdx.x;
  const int32_t id = ids[t];
  const bool ok = id >= 0 && id < vocab;
  if (!ok && threadIdx.x == 0) atomicExch(error_flag, 1);
  for (int64_t i = threadIdx.x; i < h; i += blockDim.x)
    out.store(t * h + i, ok ? table.load(int64_t{id} * h + i) : 0.0f);
}

// Repeated ids add into the same row. One thread owns each column and walks the tokens in
// order, so every element of dtable has one writer and a fixed summation order (version 1 used
// one block per token and atomics, whose order — and so the last bits — changed run to run).
// Only full fine-tuning trains the embedding, once per micro-batch: h threads suffice.
template <typename D>
__global__ void embedding_backward_kernel(const int32_t* ids, int64_t t_count, D dout,
                                          float* dtable, int64_t vocab, int64_t h) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i >= h) return;
  for (int64_t t = 0; t < t_count; ++t) {
    const int32_t id = ids[t];
    if (id < 0 || id >= vocab) continue;
    dtable[int64_t{id} * h + i] += dout.load(t * h + i);
  }
}

}  // namespace

void launch_embedding_forward(const Tensor& ids, const Tensor& table, const Tensor& out,
                              int* error_flag, cudaStream_t stream) {
  const int64_t t_count = ids.numel();
  if (t_count == 0) return;
  dispatch_float(out.dtype, [&](auto tag) {
    using T = decltype(tag);
    embedding_forward_kernel<<<static_cast<unsigned>(t_count), 256, 0, stream>>>(
        ids.as<int32_t>(), dyn(table), Typed<T>{out.as<T>()}, table.rows(), table.cols(),
        error_flag);
  });
  FITLM_CUDA_CHECK_LAUNCH();
}

void launch_embedding_backward(const Tensor& ids, const Tensor& dout, const Tensor& dtable,
                               cudaStream_t stream) {
  const int64_t t_count = ids.numel();
  if (t_count == 0) return;
  dispatch_float(dout.dtype, [&](auto tag) {
    using T = decltype(tag);
    const int64_t h = dtable.cols();
    embedding_backward_kernel<<<static_cast<unsigned>((h + 127) / 128), 128, 0, stream>>>(
        ids.as<int32_t>(), t_count, Typed<T>{dout.as<T>()}, dtable.as<float>(), dtable.rows(), h);
  });
  FITLM_CUDA_CHECK_LAUNCH();
}

}  // namespace fitlm::cuda
