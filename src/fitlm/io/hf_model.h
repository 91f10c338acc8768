// Hugging Face model directories: config.json + safetensors weights (single or sharded) in,
// weights uploaded into a Transformer's arena.
#pragma once

#include <filesystem>

#include "fitlm/model/config.h"
#include "fitlm/model/transformer.h"

namespace fitlm {

// Reads DIR/config.json with a clear error when the directory or file is missing.
ModelConfig read_model_config(const std::filesystem::path& dir);
// Uploads every base weight from DIR's safetensors, converting to the backend's dtype. Missing
// tensors and shape mismatches are errors naming the file and the tensor.
void load_model_weights(Transformer& model, const std::filesystem::path& dir);

}  // namespace fitlm
