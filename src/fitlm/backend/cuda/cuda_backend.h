// Factory for the CUDA backend. No CUDA types here: the rest of fitlm includes this header in
// builds without CUDA headers on the include path.
//
// Storage dtype: activations and frozen weights are bf16 by default. fp16 (for T4/V100-class
// GPUs without bf16 matrix units) is chosen either by passing DType::kF16 to make_cuda_backend
// or, for the one-argument form, by the environment variable FITLM_CUDA_DTYPE=f16 (or bf16).
//
// One backend per device: its constructor makes `device_index` current for the calling thread
// and owns the stream, the cuBLASLt handle and a fixed workspace (see fixed_workspace_bytes()).
#pragma once

#include <cstddef>
#include <memory>

#include "fitlm/backend/backend.h"

namespace fitlm {

int cuda_device_count();
std::unique_ptr<Backend> make_cuda_backend(int device_index);
std::unique_ptr<Backend> make_cuda_backend(int device_index, DType compute_dtype);

// Bytes the CUDA backend allocates for itself at construction, outside the Arena: the cuBLASLt
// workspace plus a few bytes of reduction scratch. The planner adds this to its device total.
size_t cuda_fixed_workspace_bytes();

}  // namespace fitlm
