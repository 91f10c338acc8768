// Final outputs of a run: a PEFT adapter for LoRA, a Hugging Face model directory for full
// fine-tuning (model.safetensors + config.json + the base model's tokenizer files).
#pragma once

#include <filesystem>

#include "fitlm/model/transformer.h"

namespace fitlm::train {

// Writes every base weight (trained masters where the weight is trainable) as f32 safetensors,
// config.json from the model config, and copies tokenizer/generation files from `base_dir`.
void save_hf_model(Transformer& model, const std::filesystem::path& dir,
                   const std::filesystem::path& base_dir);

// Copies tokenizer.json, tokenizer_config.json, special_tokens_map.json, generation_config.json
// (those that exist) from `from` to `to`.
void copy_tokenizer_files(const std::filesystem::path& from, const std::filesystem::path& to);

}  // namespace fitlm::train
