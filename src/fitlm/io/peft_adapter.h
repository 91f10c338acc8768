// PEFT LoRA adapters: adapter_config.json + adapter_model.safetensors, in the layout HF PEFT
// writes and loads (FORMATS.md §4).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "fitlm/adapters/lora.h"
#include "fitlm/model/transformer.h"

namespace fitlm {

// A trainable tensor as the PEFT file holds it: its shape there, and host values converted to
// that layout (an expert LoRA B, Param::peft_experts, is permuted: expert_b_to_peft) or from it.
Shape peft_shape(const Param& p);
std::vector<float> to_peft_layout(const Param& p, std::vector<float> values);
std::vector<float> from_peft_layout(const Param& p, std::vector<float> values);

// Reads DIR/adapter_config.json. The router and experts come from target_parameters as PEFT
// writes them ("gate.weight" or "mlp.gate.weight", "mlp.experts.gate_up_proj",
// "mlp.experts.down_proj") or from target_modules' "gate" / "router" / "experts" names. Unsupported
// PEFT features (DoRA, rank/alpha patterns, modules_to_save, bias training, layers_to_transform)
// are errors naming the key.
LoraConfig read_peft_config(const std::filesystem::path& dir);
// Loads lora_A/lora_B of every targeted layer into the model (built with the same LoraConfig).
void load_peft_weights(Transformer& model, const std::filesystem::path& dir);
// Writes adapter_config.json and adapter_model.safetensors (f32) atomically into DIR.
void save_peft_adapter(Transformer& model, const std::filesystem::path& dir,
                       const std::string& base_model_name_or_path);
// Its two halves, for a model whose ranks each hold part of the adapter (pipeline stages): the
// model's lora_A/lora_B tensors into one file, and adapter_config.json into DIR.
void write_peft_tensors(Transformer& model, const std::filesystem::path& file);
void write_peft_config(const LoraConfig& lora, const std::filesystem::path& dir,
                       const std::string& base_model_name_or_path);

}  // namespace fitlm
