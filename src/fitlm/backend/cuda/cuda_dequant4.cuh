// 4-bit weights family: dequantize4 (backend.h), bitsandbytes NF4/FP4 blockwise layout into an
// f32/bf16/f16 matrix, bit-identical to CpuBackend::dequantize4.
#pragma once

#include <cuda_runtime_api.h>

#include <utility>
#include <vector>

#include "fitlm/core/quant4_tensor.h"
#include "fitlm/core/tensor.h"

namespace fitlm::cuda {

// Each out = its q dequantized. Arguments already checked (check_dequantize4_args, device
// placement). Vector path when q.packed is 4-byte aligned and out 16-byte aligned, else a scalar
// kernel; consecutive matrices on the vector path with one out dtype, round_to and
// double-quantization choice share one launch.
void launch_dequantize4(const std::vector<std::pair<const Quant4Tensor*, Tensor>>& work,
                        cudaStream_t stream);

}  // namespace fitlm::cuda
