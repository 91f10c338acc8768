// RoPE family: in-place rotate-half rotation of q or k rows (inverse = the backward).
#pragma once

#include <cuda_runtime_api.h>

#include "fitlm/core/tensor.h"

namespace fitlm::cuda {

void launch_rope(const Tensor& x, int n_heads, int head_dim, const Tensor& positions,
                 const Tensor& inv_freq, bool inverse, cudaStream_t stream);

}  // namespace fitlm::cuda
