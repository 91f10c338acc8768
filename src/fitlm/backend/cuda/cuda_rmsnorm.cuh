// RMSNorm family: forward (saves rstd f32 [rows]) and backward (dx overwrite, dw +=).
#pragma once

#include <cuda_runtime_api.h>

#include "fitlm/core/tensor.h"

namespace fitlm::cuda {

void launch_rmsnorm_forward(const Tensor& x, const Tensor& w, float eps, const Tensor& out,
                            const Tensor& rstd, cudaStream_t stream);
// dw may be empty (frozen norm weight).
void launch_rmsnorm_backward(const Tensor& dout, const Tensor& x, const Tensor& w,
                             const Tensor& rstd, const Tensor& dx, const Tensor& dw,
                             cudaStream_t stream);

}  // namespace fitlm::cuda
