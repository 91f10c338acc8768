// Element-wise family: add, axpy, scale, bias forward/backward and counter-based dropout.
// Tensors of one dtype get typed kernels; mixed dtypes (e.g. a bf16 x into an f32 y) use the
// run-time accessor. Arithmetic is f32.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "fitlm/core/tensor.h"

namespace fitlm::cuda {

void launch_add(const Tensor& a, const Tensor& b, const Tensor& out, cudaStream_t stream);
void launch_axpy(float alpha, const Tensor& x, const Tensor& y, cudaStream_t stream);
void launch_scale(const Tensor& x, float alpha, cudaStream_t stream);
void launch_add_bias(const Tensor& x, const Tensor& bias, cudaStream_t stream);
void launch_bias_backward(const Tensor& dout, const Tensor& dbias, cudaStream_t stream);
void launch_dropout(const Tensor& x, const Tensor& out, float p, uint64_t seed,
                    cudaStream_t stream);

}  // namespace fitlm::cuda
