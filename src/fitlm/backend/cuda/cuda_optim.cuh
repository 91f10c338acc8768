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

// Blocks of the Σx² pass: each writes one f64 partial, so `partials` needs this many slots.
inline constexpr int kSumSquaresBlocks = 132 * 8;
// *result (device f64) = Σ x², bitwise the same on every run (partials summed in block order).
void launch_sum_squares(const Tensor& x, double* partials, double* result, cudaStream_t stream);
void launch_adamw(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v,
                  const AdamWArgs& p, float grad_scale, cudaStream_t stream);

}  // namespace fitlm::cuda
