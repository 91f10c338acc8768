// Hugging Face model directories: config.json + safetensors weights (single or sharded) in,
// weights uploaded into a Transformer's arena.
#pragma once

#include <filesystem>
#include <optional>

#include "fitlm/core/quant4.h"
#include "fitlm/model/config.h"
#include "fitlm/model/transformer.h"

namespace fitlm {

// Reads DIR/config.json with a clear error when the directory or file is missing.
ModelConfig read_model_config(const std::filesystem::path& dir);

struct LoadOptions {
  // Quantize the decoder's linear weights on load (QLoRA on a 16-bit base): each is quantized
  // and dequantized as bitsandbytes would, so the model computes with the 4-bit values. A
  // checkpoint that is 4-bit already (bitsandbytes layout) is read as it is, with or without.
  std::optional<quant::QuantType> quantize4;
  bool double_quant = true;
  int64_t blocksize = 64;
};

// Uploads every base weight from DIR's safetensors, converting to the backend's dtype; 4-bit
// bitsandbytes weights are dequantized (f32, then rounded to their quant_state dtype). Missing
// tensors and shape mismatches are errors naming the file and the tensor.
void load_model_weights(Transformer& model, const std::filesystem::path& dir,
                        const LoadOptions& options = {});

}  // namespace fitlm
