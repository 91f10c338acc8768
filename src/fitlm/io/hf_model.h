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

// What `--quantize` / the training config ask for: quantize a 16/32-bit base on load.
struct QuantizeRequest {
  quant::QuantType type = quant::QuantType::kNF4;
  bool double_quant = true;
  int64_t blocksize = 64;
};

// The 4-bit layout the model is planned with (RunShape::base4): a bitsandbytes checkpoint's own
// (quantization_config in config.json, type and blocksize from the quant_states; every decoder
// linear must be 4-bit, with one type, blocksize and double-quantization choice), else the
// request's, else nullopt (a 16-bit model). A request of another type than the checkpoint's is an
// input error; `dir` names the checkpoint in errors.
std::optional<Base4Layout> base4_layout(const ModelConfig& config, const std::filesystem::path& dir,
                                        const std::optional<QuantizeRequest>& request);

// Uploads every base weight from DIR's safetensors, converting to the backend's dtype. With a
// 4-bit model (RunShape::base4) the decoder's linear weights are uploaded packed: a bitsandbytes
// checkpoint's as they are, a 16/32-bit checkpoint's quantized tensor by tensor as they are read
// (a few MiB of f32 at a time, from the mapped file), as bitsandbytes quantizes on load. A
// 16-bit model on a 4-bit checkpoint gets the weights dequantized on the host as bitsandbytes
// dequantizes them. Missing tensors and shape mismatches are errors naming the file and tensor.
void load_model_weights(Transformer& model, const std::filesystem::path& dir);

}  // namespace fitlm
