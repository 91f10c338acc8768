// Host-side 4-bit weights (core/quant4.h) into a model's packed device buffers.
#pragma once

#include <string>

#include "fitlm/backend/backend.h"
#include "fitlm/core/quant4.h"

namespace fitlm {

// Uploads h into q's buffers and sets q.offset. h's layout (type, blocksize, double
// quantization, element count) must be the one q was planned with: otherwise an input error
// naming `name` in `file`.
void upload_quant4(Backend& be, const quant::Quantized4& h, Quant4Tensor& q,
                   const std::string& name, const std::string& file);
// That layout check alone, for loaders that copy the parts themselves (a ZeRO-3 shard).
void check_quant4_layout(const quant::Quantized4& h, const Quant4Tensor& q, const std::string& name,
                         const std::string& file);

}  // namespace fitlm
