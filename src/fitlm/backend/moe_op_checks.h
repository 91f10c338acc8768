// Argument checks of the mixture-of-experts ops (backend.h), shared by every backend: dtypes
// and shapes as backend.h documents them. `component` names the backend in the error. Index
// ranges are not checked here: a CPU backend reads them, a GPU flags them from its kernels.
#pragma once

#include "fitlm/core/tensor.h"

namespace fitlm {

void check_moe_route(const char* component, const Tensor& logits, int k, const Tensor& probs,
                     const Tensor& weights, const Tensor& experts);
void check_moe_route_backward(const char* component, const Tensor& probs, const Tensor& weights,
                              const Tensor& experts, const Tensor& dweights,
                              const Tensor& extra_dprobs, const Tensor& dlogits);
// Also num_experts and k positive and T·k rows within i32 indices.
void check_moe_permute(const char* component, const Tensor& experts, int num_experts,
                       const Tensor& token_of_row, const Tensor& pair_of_row, const Tensor& row_of);
void check_gather_rows(const char* component, const Tensor& src, const Tensor& index,
                       const Tensor& scale, const Tensor& dst);
void check_moe_combine(const char* component, const Tensor& rows, const Tensor& row_of,
                       const Tensor& weights, const Tensor& y);
void check_moe_weight_grad(const char* component, const Tensor& dy, const Tensor& rows,
                           const Tensor& row_of, const Tensor& dweights);

}  // namespace fitlm
