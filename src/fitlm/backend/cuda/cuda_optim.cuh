// Optimizer family: Σx² for global-norm clipping and the fused AdamW step (f32 master state).
#pragma once

#include <cuda_runtime_api.h>

#include "fitlm/core/tensor.h"

namespace fitlm::cuda {

// AdamWParams without backend.h (which pulls in fmt, which nvcc cannot compile).
struct AdamWArgs {
  float lr, beta1, beta2, eps, weight_decay;
  int64_t step;
};

// *accum (device f64) += Σ x²; the caller zeroes and reads it.
void launch_sum_squares(const Tensor& x, double* accum, cudaStream_t stream);
void launch_adamw(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v,
                  const AdamWArgs& p, float grad_scale, cudaStream_t stream);

}  // namespace fitlm::cuda
