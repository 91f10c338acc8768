// What commands that write a new Hugging Face model directory from an old one share (merge,
// quantize): the side files to carry over, the checkpoint's dtype, torch's dtype names.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "fitlm/core/dtype.h"
#include "fitlm/model/config.h"

namespace fitlm::io {

class ShardedSafetensors;

// Copies tokenizer, chat-template and generation-config files from `from` to `to` when present;
// returns their names.
std::vector<std::string> copy_side_files(const std::filesystem::path& from,
                                         const std::filesystem::path& to);

// config.json's torch_dtype (or transformers 5's dtype), else the embedding's stored dtype.
DType checkpoint_dtype(const ModelConfig& c, const ShardedSafetensors& st);

// "bfloat16", "float16", "float32" (str(torch.dtype) without "torch.").
const char* torch_dtype_name(DType t);
std::optional<DType> dtype_from_torch_name(const std::string& s);

}  // namespace fitlm::io
