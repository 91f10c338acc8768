// CudaBackend: the mixture-of-experts ops — argument checks, then the launchers of
// cuda_moe.cuh. moe_permute sorts on the device and brings the counts to the host.
#include <cuda_runtime_api.h>

#include <vector>

#include "fitlm/backend/cuda/cuda_backend_impl.h"
#include "fitlm/backend/cuda/cuda_check.h"
#include "fitlm/backend/cuda/cuda_moe.cuh"
#include "fitlm/backend/moe_op_checks.h"
#include "fitlm/core/error.h"

namespace fitlm {
namespace {

static_assert(CudaBackend::kMoeCountsBytes == cuda::kMoeMaxExperts * sizeof(int32_t));

}  // namespace

void CudaBackend::moe_route(const Tensor& logits, int k, bool renormalize, Tensor probs,
                            Tensor weights, Tensor experts) {
  check_moe_route("cuda", logits, k, probs, weights, experts);
  const int64_t e_count = logits.cols();
  FITLM_CHECK(e_count >= 1 && e_count <= cuda::kMoeMaxExperts, "cuda",
              "moe_route over {} experts: the CUDA kernel takes 1 to {}", e_count,
              cuda::kMoeMaxExperts);
  FITLM_CHECK(k <= cuda::kMoeMaxTopK, "cuda",
              "moe_route top-{} of {} experts (the CUDA kernel takes k <= {})", k, e_count,
              cuda::kMoeMaxTopK);
  cuda::launch_moe_route(logits, k, renormalize, probs, weights, experts, stream_);
}

void CudaBackend::moe_route_backward(const Tensor& probs, const Tensor& weights,
                                     const Tensor& experts, const Tensor& dweights,
                                     bool renormalize, const Tensor& extra_dprobs, Tensor dlogits) {
  check_moe_route_backward("cuda", probs, weights, experts, dweights, extra_dprobs, dlogits);
  const int64_t e_count = probs.cols();
  FITLM_CHECK(e_count >= 1 && e_count <= cuda::kMoeMaxExperts, "cuda",
              "moe_route_backward over {} experts: the CUDA kernel takes 1 to {}", e_count,
              cuda::kMoeMaxExperts);
  cuda::launch_moe_route_backward(probs, weights, experts, dweights, renormalize, extra_dprobs,
                                  dlogits, d_flags_ + kFlagBadMoeIndex, stream_);
}

// Sorts on the device (the same rows as the CPU's counting sort); synchronizes the stream once,
// for the counts, which is where a bad expert index throws.
void CudaBackend::moe_permute(const Tensor& experts, int num_experts, Tensor token_of_row,
                              Tensor pair_of_row, Tensor row_of, std::vector<int64_t>& counts) {
  check_moe_permute("cuda", experts, num_experts, token_of_row, pair_of_row, row_of);
  check_on_device(experts, "moe_permute experts");
  check_on_device(token_of_row, "moe_permute token_of_row");
  check_on_device(pair_of_row, "moe_permute pair_of_row");
  check_on_device(row_of, "moe_permute row_of");
  FITLM_CHECK(num_experts <= cuda::kMoeMaxExperts, "cuda",
              "moe_permute with {} experts: the CUDA kernels take 1 to {}", num_experts,
              cuda::kMoeMaxExperts);
  const int64_t n = experts.numel();
  counts.assign(static_cast<size_t>(num_experts), 0);
  if (n == 0) return;
  cuda::launch_moe_permute(experts, num_experts, token_of_row, pair_of_row, row_of, d_moe_counts_,
                           d_flags_ + kFlagBadMoeIndex, stream_);
  // The one synchronisation of a sparse layer: the host sizes the expert GEMMs by these counts.
  std::vector<int32_t> host(static_cast<size_t>(num_experts));
  FITLM_CUDA_CHECK(cudaMemcpyAsync(host.data(), d_moe_counts_, host.size() * sizeof(int32_t),
                                   cudaMemcpyDefault, stream_));
  FITLM_CUDA_CHECK(
      cudaMemcpyAsync(h_flags_, d_flags_, kNumFlags * sizeof(int), cudaMemcpyDefault, stream_));
  FITLM_CUDA_CHECK(cudaStreamSynchronize(stream_));
  if (h_flags_[kFlagBadMoeIndex] != 0) {
    FITLM_CUDA_CHECK(cudaMemsetAsync(d_flags_ + kFlagBadMoeIndex, 0, sizeof(int), stream_));
    throw_input_error("cuda", "moe_permute: an expert index is outside [0, {})", num_experts);
  }
  for (size_t e = 0; e < host.size(); ++e) counts[e] = host[e];
}

void CudaBackend::gather_rows(const Tensor& src, const Tensor& index, const Tensor& scale,
                              Tensor dst) {
  check_gather_rows("cuda", src, index, scale, dst);
  cuda::launch_gather_rows(src, index, scale, dst, d_flags_ + kFlagBadMoeIndex, stream_);
}

void CudaBackend::moe_combine(const Tensor& rows, const Tensor& row_of, const Tensor& weights,
                              Tensor y, bool accumulate) {
  check_moe_combine("cuda", rows, row_of, weights, y);
  cuda::launch_moe_combine(rows, row_of, weights, y, accumulate, d_flags_ + kFlagBadMoeIndex,
                           stream_);
}

void CudaBackend::moe_weight_grad(const Tensor& dy, const Tensor& rows, const Tensor& row_of,
                                  Tensor dweights) {
  check_moe_weight_grad("cuda", dy, rows, row_of, dweights);
  cuda::launch_moe_weight_grad(dy, rows, row_of, dweights, d_flags_ + kFlagBadMoeIndex, stream_);
}

}  // namespace fitlm
