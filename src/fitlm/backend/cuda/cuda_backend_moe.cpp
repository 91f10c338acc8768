// CudaBackend: the mixture-of-experts ops — argument checks, then the launchers of
// cuda_moe.cuh. moe_permute sorts on the device and brings the counts to the host.
#include <cuda_runtime_api.h>

#include <vector>

#include "fitlm/backend/cuda/cuda_backend_impl.h"
#include "fitlm/backend/cuda/cuda_check.h"
#include "fitlm/backend/cuda/cuda_moe.cuh"
#include "fitlm/core/error.h"

namespace fitlm {
namespace {

static_assert(CudaBackend::kMoeCountsBytes == cuda::kMoeMaxExperts * sizeof(int32_t));

bool is_float_dtype(DType t) {
  return t == DType::kF32 || t == DType::kBF16 || t == DType::kF16;
}

void check_float(const Tensor& t, const char* what) {
  FITLM_CHECK(is_float_dtype(t.dtype), "cuda", "{} must be f32, bf16 or f16, got {}", what,
              dtype_name(t.dtype));
}

void check_dtype(const Tensor& t, DType want, const char* what) {
  FITLM_CHECK(t.dtype == want, "cuda", "{} must be {}, got {}", what, dtype_name(want),
              dtype_name(t.dtype));
}

void check_matrix(const Tensor& t, int64_t rows, int64_t cols, const char* what) {
  FITLM_CHECK(t.rows() == rows && t.cols() == cols, "cuda", "{} is {}, expected [{}, {}]", what,
              t.shape.str(), rows, cols);
}

}  // namespace

void CudaBackend::moe_route(const Tensor& logits, int k, bool renormalize, Tensor probs,
                            Tensor weights, Tensor experts) {
  check_float(logits, "moe_route logits");
  check_dtype(probs, DType::kF32, "moe_route probs");
  check_dtype(weights, DType::kF32, "moe_route weights");
  check_dtype(experts, DType::kI32, "moe_route experts");
  const int64_t t_count = logits.rows(), e_count = logits.cols();
  FITLM_CHECK(e_count >= 1 && e_count <= cuda::kMoeMaxExperts, "cuda",
              "moe_route over {} experts: the CUDA kernel takes 1 to {}", e_count,
              cuda::kMoeMaxExperts);
  FITLM_CHECK(k >= 1 && k <= e_count && k <= cuda::kMoeMaxTopK, "cuda",
              "moe_route top-{} of {} experts (the CUDA kernel takes k <= {})", k, e_count,
              cuda::kMoeMaxTopK);
  check_matrix(probs, t_count, e_count, "moe_route probs");
  check_matrix(weights, t_count, k, "moe_route weights");
  check_matrix(experts, t_count, k, "moe_route experts");
  cuda::launch_moe_route(logits, k, renormalize, probs, weights, experts, stream_);
}

void CudaBackend::moe_route_backward(const Tensor& probs, const Tensor& weights,
                                     const Tensor& experts, const Tensor& dweights,
                                     bool renormalize, const Tensor& extra_dprobs, Tensor dlogits) {
  check_dtype(probs, DType::kF32, "moe_route_backward probs");
  check_dtype(weights, DType::kF32, "moe_route_backward weights");
  check_dtype(experts, DType::kI32, "moe_route_backward experts");
  check_dtype(dweights, DType::kF32, "moe_route_backward dweights");
  check_float(dlogits, "moe_route_backward dlogits");
  const int64_t t_count = probs.rows(), e_count = probs.cols(), k = experts.cols();
  FITLM_CHECK(e_count >= 1 && e_count <= cuda::kMoeMaxExperts, "cuda",
              "moe_route_backward over {} experts: the CUDA kernel takes 1 to {}", e_count,
              cuda::kMoeMaxExperts);
  FITLM_CHECK(k >= 1 && k <= e_count, "cuda", "moe_route_backward top-{} of {} experts", k,
              e_count);
  check_matrix(experts, t_count, k, "moe_route_backward experts");
  check_matrix(weights, t_count, k, "moe_route_backward weights");
  check_matrix(dweights, t_count, k, "moe_route_backward dweights");
  check_matrix(dlogits, t_count, e_count, "moe_route_backward dlogits");
  if (!extra_dprobs.empty()) {
    check_dtype(extra_dprobs, DType::kF32, "moe_route_backward extra_dprobs");
    check_matrix(extra_dprobs, t_count, e_count, "moe_route_backward extra_dprobs");
  }
  cuda::launch_moe_route_backward(probs, weights, experts, dweights, renormalize, extra_dprobs,
                                  dlogits, d_flags_ + kFlagBadMoeIndex, stream_);
}

// Synchronizes the stream: the experts are copied to the host (after every op queued so far),
// sorted there by the CPU backend's counting sort (so both backends give the same rows, and a
// bad expert index throws here), and the indices are copied back before returning.
void CudaBackend::moe_permute(const Tensor& experts, int num_experts, Tensor token_of_row,
                              Tensor pair_of_row, Tensor row_of, std::vector<int64_t>& counts) {
  check_dtype(experts, DType::kI32, "moe_permute experts");
  check_dtype(token_of_row, DType::kI32, "moe_permute token_of_row");
  check_dtype(pair_of_row, DType::kI32, "moe_permute pair_of_row");
  check_dtype(row_of, DType::kI32, "moe_permute row_of");
  check_on_device(experts, "moe_permute experts");
  check_on_device(token_of_row, "moe_permute token_of_row");
  check_on_device(pair_of_row, "moe_permute pair_of_row");
  check_on_device(row_of, "moe_permute row_of");
  const int64_t t_count = experts.rows(), k = experts.cols(), n = t_count * k;
  FITLM_CHECK(token_of_row.numel() == n && pair_of_row.numel() == n, "cuda",
              "moe_permute token_of_row {} pair_of_row {} for experts {}", token_of_row.shape.str(),
              pair_of_row.shape.str(), experts.shape.str());
  check_matrix(row_of, t_count, k, "moe_permute row_of");
  FITLM_CHECK(num_experts > 0 && num_experts <= cuda::kMoeMaxExperts && k > 0, "cuda",
              "moe_permute with {} experts (the CUDA kernels take 1 to {}), k = {}", num_experts,
              cuda::kMoeMaxExperts, k);
  FITLM_CHECK(n < (int64_t{1} << 31), "cuda", "moe_permute of {} rows: i32 indices overflow", n);
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
  check_float(src, "gather_rows src");
  check_float(dst, "gather_rows dst");
  check_dtype(index, DType::kI32, "gather_rows index");
  const int64_t n = index.numel();
  check_matrix(dst, n, src.cols(), "gather_rows dst");
  if (!scale.empty()) {
    check_dtype(scale, DType::kF32, "gather_rows scale");
    FITLM_CHECK(scale.numel() == n, "cuda", "gather_rows scale {} for {} rows", scale.shape.str(),
                n);
  }
  cuda::launch_gather_rows(src, index, scale, dst, d_flags_ + kFlagBadMoeIndex, stream_);
}

void CudaBackend::moe_combine(const Tensor& rows, const Tensor& row_of, const Tensor& weights,
                              Tensor y, bool accumulate) {
  check_float(rows, "moe_combine rows");
  check_float(y, "moe_combine y");
  check_dtype(row_of, DType::kI32, "moe_combine row_of");
  const int64_t t_count = row_of.rows(), k = row_of.cols();
  check_matrix(y, t_count, rows.cols(), "moe_combine y");
  if (!weights.empty()) {
    check_dtype(weights, DType::kF32, "moe_combine weights");
    check_matrix(weights, t_count, k, "moe_combine weights");
  }
  cuda::launch_moe_combine(rows, row_of, weights, y, accumulate, d_flags_ + kFlagBadMoeIndex,
                           stream_);
}

void CudaBackend::moe_weight_grad(const Tensor& dy, const Tensor& rows, const Tensor& row_of,
                                  Tensor dweights) {
  check_float(dy, "moe_weight_grad dy");
  check_float(rows, "moe_weight_grad rows");
  check_dtype(row_of, DType::kI32, "moe_weight_grad row_of");
  check_dtype(dweights, DType::kF32, "moe_weight_grad dweights");
  const int64_t t_count = row_of.rows(), k = row_of.cols();
  check_matrix(dy, t_count, rows.cols(), "moe_weight_grad dy");
  check_matrix(dweights, t_count, k, "moe_weight_grad dweights");
  cuda::launch_moe_weight_grad(dy, rows, row_of, dweights, d_flags_ + kFlagBadMoeIndex, stream_);
}

}  // namespace fitlm
