// Mixture-of-experts family (backend.h, "mixture of experts"): routing softmax + top-k and its
// backward, row gathers, the weighted combine of the expert rows and the routing-weight
// gradient, and the permutation of (token, choice) pairs into rows grouped by expert.
// Every float sum runs in a fixed order (no atomics), so results are bit-reproducible.
#pragma once

#include <cuda_runtime_api.h>

#include "fitlm/core/tensor.h"

namespace fitlm::cuda {

// The most experts moe_route / moe_route_backward take (one row lives in shared memory), and
// the largest k.
inline constexpr int kMoeMaxExperts = 512;
inline constexpr int kMoeMaxTopK = 32;

// logits [T, E] (float dtype) -> probs f32 [T, E], weights f32 [T, k], experts i32 [T, k].
void launch_moe_route(const Tensor& logits, int k, bool renormalize, const Tensor& probs,
                      const Tensor& weights, const Tensor& experts, cudaStream_t stream);
// dlogits [T, E] (float dtype) from dweights f32 [T, k]; extra_dprobs empty or f32 [T, E].
// An expert index outside [0, E) sets *error_flag and is skipped.
void launch_moe_route_backward(const Tensor& probs, const Tensor& weights, const Tensor& experts,
                               const Tensor& dweights, bool renormalize, const Tensor& extra_dprobs,
                               const Tensor& dlogits, int* error_flag, cudaStream_t stream);
// dst [n, H] = src[index[i]] (· scale[i] when scale is not empty). A bad index sets *error_flag
// and writes a zero row.
void launch_gather_rows(const Tensor& src, const Tensor& index, const Tensor& scale,
                        const Tensor& dst, int* error_flag, cudaStream_t stream);
// y [T, H] (+)= Σ_j w[t, j] · rows[row_of[t, j]], j in order, f32. A bad row sets *error_flag
// and is skipped.
void launch_moe_combine(const Tensor& rows, const Tensor& row_of, const Tensor& weights,
                        const Tensor& y, bool accumulate, int* error_flag, cudaStream_t stream);
// dweights f32 [T, k] = per-pair dot product of dy[t] and rows[row_of[t, j]] (one warp per
// pair, lanes strided over H, then a fixed butterfly). A bad row sets *error_flag, writes 0.
void launch_moe_weight_grad(const Tensor& dy, const Tensor& rows, const Tensor& row_of,
                            const Tensor& dweights, int* error_flag, cudaStream_t stream);

// The rows of every expert in turn, each expert's in pair order (backend.h moe_permute), and
// counts i32 [num_experts] (device). An expert outside [0, num_experts) sets *error_flag and
// its pair gets no row. num_experts blocks.
void launch_moe_permute(const Tensor& experts, int num_experts, const Tensor& token_of_row,
                        const Tensor& pair_of_row, const Tensor& row_of, int32_t* counts,
                        int* error_flag, cudaStream_t stream);

}  // namespace fitlm::cuda
