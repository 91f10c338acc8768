// Cross-entropy family: per-row loss over a logits chunk [T, V] (V up to ~152k) with the
// gradient written in place over the logits.
#pragma once

#include <cuda_runtime_api.h>

#include "fitlm/core/tensor.h"

namespace fitlm::cuda {

// Labels outside [0, V) other than −100 give loss 0 and raise error_flag[0].
void launch_cross_entropy(const Tensor& logits, const Tensor& labels, const Tensor& losses,
                          float grad_scale, bool compute_grad, int* error_flag,
                          cudaStream_t stream);

}  // namespace fitlm::cuda
