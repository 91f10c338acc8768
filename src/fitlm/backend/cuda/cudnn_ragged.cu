// The per-call metadata of cuDNN's variable-length ("ragged", THD) SDPA, computed on the device
// from the model's cu_seqlens so that no host copy or synchronization is needed
// (cudnn_attention.h).
#include "fitlm/backend/cuda/cuda_check.h"
#include "fitlm/backend/cuda/cudnn_attention.h"

namespace fitlm::cuda {
namespace {

__global__ void sdpa_ragged_meta_kernel(const int32_t* __restrict__ cu, int n_seg, int batch,
                                        int64_t q_mul, int64_t kv_mul, int64_t stats_mul,
                                        int32_t* __restrict__ seq_len, int64_t* __restrict__ off_q,
                                        int64_t* __restrict__ off_kv,
                                        int64_t* __restrict__ off_stats) {
  const int b = blockIdx.x * blockDim.x + threadIdx.x;
  if (b > batch) return;
  // Unused batch entries (b >= n_seg) are empty segments that start and end at the last token.
  const int64_t start = cu[b < n_seg ? b : n_seg];
  off_q[b] = start * q_mul;
  off_kv[b] = start * kv_mul;
  off_stats[b] = start * stats_mul;
  if (b < batch) seq_len[b] = b < n_seg ? cu[b + 1] - cu[b] : 0;
}

}  // namespace

void launch_sdpa_ragged_meta(const int32_t* cu_seqlens, int n_seg, const SdpaRaggedMeta& meta,
                             int batch, int64_t q_mul, int64_t kv_mul, int64_t stats_mul,
                             cudaStream_t stream) {
  const int threads = 128, blocks = (batch + 1 + threads - 1) / threads;
  sdpa_ragged_meta_kernel<<<blocks, threads, 0, stream>>>(cu_seqlens, n_seg, batch, q_mul, kv_mul,
                                                          stats_mul, meta.seq_len, meta.off_q,
                                                          meta.off_kv, meta.off_stats);
  FITLM_CUDA_CHECK_LAUNCH();
}

}  // namespace fitlm::cuda
