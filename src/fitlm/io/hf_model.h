// Hugging Face model directories: config.json + safetensors weights (single or sharded) in,
// weights uploaded into a Transformer's arena.
#pragma once

#include <filesystem>
#include <optional>

#include "fitlm/core/quant4.h"
#include "fitlm/model/config.h"
#include "fitlm/model/transformer.h"
#include "fitlm/text/tokenizer.h"

namespace fitlm {

// Reads DIR/config.json with a clear error when the directory or file is missing.
ModelConfig read_model_config(const std::filesystem::path& dir);

// Checks that DIR's safetensors hold every base weight `config` implies, with its shape and a
// loadable dtype, without reading any data: callers run it before planning and allocating, so
// a config that does not match its checkpoint (1000 layers declared, 3 present) fails at once.
void check_model_weights(const ModelConfig& config, const std::filesystem::path& dir);
// Checks that every id of `tokenizer` (its largest id + 1, added tokens included) has a row in
// the model's embedding (config.json vocab_size; an embedding larger than the tokenizer, as
// Qwen's padded one, is fine). `dir` names the model directory in the error.
void check_tokenizer_fits(const Tokenizer& tokenizer, const ModelConfig& config,
                          const std::filesystem::path& dir);

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
