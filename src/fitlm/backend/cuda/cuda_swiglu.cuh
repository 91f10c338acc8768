// SwiGLU family: out = silu(gate) · up and its backward, element-wise over [T, I].
#pragma once

#include <cuda_runtime_api.h>

#include "fitlm/core/tensor.h"

namespace fitlm::cuda {

void launch_swiglu_forward(const Tensor& gate, const Tensor& up, const Tensor& out,
                           cudaStream_t stream);
void launch_swiglu_backward(const Tensor& dout, const Tensor& gate, const Tensor& up,
                            const Tensor& dgate, const Tensor& dup, cudaStream_t stream);

}  // namespace fitlm::cuda
