// LoRA adapters as PEFT defines them: y = base(x) + B(A(dropout(x))) · scale, A [r, in] with
// Kaiming-uniform init (a = √5, i.e. U(−1/√in, 1/√in)), B [out, r] zeros, scale = alpha / r or
// alpha / √r with rsLoRA.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace fitlm {

// The seven projections of a decoder layer that LoRA can target, in HF module names.
enum class Projection { kQ, kK, kV, kO, kGate, kUp, kDown };
inline constexpr std::array<Projection, 7> kAllProjections = {
    Projection::kQ,    Projection::kK,  Projection::kV,   Projection::kO,
    Projection::kGate, Projection::kUp, Projection::kDown};

const char* projection_name(Projection p);    // "q_proj", ...
const char* projection_module(Projection p);  // "self_attn.q_proj", "mlp.gate_proj", ...
// Parses "q_proj" (or "all-linear"/"all" meaning all seven) into projections; error names the
// unknown entry and lists the valid ones.
std::vector<Projection> parse_lora_targets(const std::vector<std::string>& names);

struct LoraConfig {
  int r = 16;
  float alpha = 32.0f;
  float dropout = 0.0f;
  bool use_rslora = false;
  std::vector<Projection> targets = {Projection::kQ, Projection::kK, Projection::kV,
                                     Projection::kO, Projection::kGate, Projection::kUp,
                                     Projection::kDown};
  float scale() const;
  bool targets_projection(Projection p) const;
};

// PEFT's tensor name for a LoRA matrix: base_model.model.model.layers.L.self_attn.q_proj.lora_A.weight
std::string peft_tensor_name(int layer, Projection p, bool is_b);

}  // namespace fitlm
