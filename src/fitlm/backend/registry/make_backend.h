// Backends by name with an explicit storage dtype: what the trainer's `bf16: true` /
// `fp16: true` select. The one-argument make_backend (backend.h) keeps the CUDA default (bf16,
// or FITLM_CUDA_DTYPE); this overload overrides it. Defined in make_backend.cpp.
#pragma once

#include <memory>
#include <string>

#include "fitlm/backend/backend.h"

namespace fitlm {

// "cuda"/"cuda:N": a CUDA backend storing activations and frozen weights in `compute_dtype`
// (kBF16 or kF16; anything else is an input error). "cpu": the CPU backend, which always
// computes and stores f32 whatever `compute_dtype` says (callers note that to the user).
std::unique_ptr<Backend> make_backend(const std::string& name, DType compute_dtype);

}  // namespace fitlm
