// Embedding family: row gather forward, scatter-add backward (f32 dtable, atomics).
#pragma once

#include <cuda_runtime_api.h>

#include "fitlm/core/tensor.h"

namespace fitlm::cuda {

// Out-of-range ids write a zero row and raise error_flag[0] (reported by synchronize()).
void launch_embedding_forward(const Tensor& ids, const Tensor& table, const Tensor& out,
                              int* error_flag, cudaStream_t stream);
void launch_embedding_backward(const Tensor& ids, const Tensor& dout, const Tensor& dtable,
                               cudaStream_t stream);

}  // namespace fitlm::cuda
