// Memory family: fill and dtype casts on the device (transfers are cudaMemcpy in the backend).
#pragma once

#include <cuda_runtime_api.h>

#include "fitlm/core/tensor.h"

namespace fitlm::cuda {

void launch_fill(const Tensor& x, float value, cudaStream_t stream);  // float dtypes and i32
// dst = src element-wise between floating dtypes (numel equal, dtypes may differ).
void launch_cast(const Tensor& src, const Tensor& dst, cudaStream_t stream);

}  // namespace fitlm::cuda
