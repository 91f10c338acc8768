// `fitlm merge`: folds a PEFT LoRA adapter into its base model, W' = W + scale·B·A for every
// target, and writes a Hugging Face model directory (safetensors shards + index, config.json,
// tokenizer and generation config files copied) that transformers loads without PEFT.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <vector>

#include "fitlm/core/dtype.h"

namespace fitlm {

struct MergeOptions {
  std::optional<DType> dtype;                   // default: config torch_dtype, else the base's
  uint64_t max_shard_bytes = 5'000'000'000ull;  // HF's default "5GB"
};

struct MergeReport {
  int merged = 0;                              // weight matrices that received a LoRA delta
  DType dtype = DType::kF32;                   // what the merged weights are stored as
  std::vector<std::filesystem::path> written;  // safetensors files
  std::vector<std::string> copied;             // side files copied from the base directory
};

MergeReport merge_lora(const std::filesystem::path& model_dir,
                       const std::filesystem::path& adapter_dir,
                       const std::filesystem::path& out_dir, const MergeOptions& options);

}  // namespace fitlm
