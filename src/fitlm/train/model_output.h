// Final outputs of a run: a PEFT adapter for LoRA, a Hugging Face model directory for full
// fine-tuning (model.safetensors + config.json + the base model's tokenizer files).
//
// A job whose ranks each hold part of the model (pipeline stages, dist::Strategy::splits_model)
// writes in parts: every rank the tensors it holds, then the lead rank joins them. The adapter's
// parts merge into the one adapter_model.safetensors PEFT loads; a full model stays one HF
// shard per rank plus model.safetensors.index.json, which transformers and fitlm load as any
// sharded checkpoint. No rank holds more than one tensor of its part in host memory at a time.
#pragma once

#include <filesystem>
#include <string>

#include "fitlm/model/transformer.h"

namespace fitlm::train {

// Writes every base weight (trained masters where the weight is trainable) as f32 safetensors,
// config.json from the model config, and copies tokenizer/generation files from `base_dir`.
void save_hf_model(Transformer& model, const std::filesystem::path& dir,
                   const std::filesystem::path& base_dir);
// Rank `rank` of `world`: the weights it holds, as shard `rank` of `world` in `dir`; then, once
// every rank has written its shard, the lead the index, config.json and the tokenizer files.
void write_hf_model_part(Transformer& model, const std::filesystem::path& dir, int rank, int world);
void join_hf_model_parts(Transformer& model, const std::filesystem::path& dir,
                         const std::filesystem::path& base_dir, int world);

// The same for a LoRA adapter: each rank's adapter tensors into a part file in `dir`; then the
// lead merges the parts into adapter_model.safetensors (removing them) and writes
// adapter_config.json.
void write_adapter_part(Transformer& model, const std::filesystem::path& dir, int rank, int world);
void join_adapter_parts(Transformer& model, const std::filesystem::path& dir,
                        const std::string& base_model, int world);

// Copies tokenizer.json, tokenizer_config.json, special_tokens_map.json, generation_config.json
// (those that exist) from `from` to `to`.
void copy_tokenizer_files(const std::filesystem::path& from, const std::filesystem::path& to);

}  // namespace fitlm::train
