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
// A sparse (mixture-of-experts) layer's LoRA targets, which PEFT adapts as parameters
// (ParamWrapper) rather than Linear modules: the router's weight mlp.gate.weight [E, H], and the
// fused experts mlp.experts.gate_up_proj [E, 2·I, H] and down_proj [E, H, I], each expert e with
// its own pair (A_e [r, in], B_e [out, r]; ΔW_e = s·B_e·A_e). One gate_up adapter spans an
// expert's gate and up rows, as the fused tensor does.
enum class MoeTarget { kRouter, kExpertsGateUp, kExpertsDown };
inline constexpr std::array<MoeTarget, 3> kAllMoeTargets = {
    MoeTarget::kRouter, MoeTarget::kExpertsGateUp, MoeTarget::kExpertsDown};
// PEFT's target parameter: "gate.weight" (what PEFT writes for target_modules ["gate"]),
// "mlp.experts.gate_up_proj", "mlp.experts.down_proj".
const char* moe_target_parameter(MoeTarget t);

// Parses "q_proj" (or "all-linear"/"all" meaning all seven) into projections; error names the
// unknown entry and lists the valid ones. The mixture-of-experts names (parse_moe_lora_targets)
// are accepted and left out.
std::vector<Projection> parse_lora_targets(const std::vector<std::string>& names);
// The mixture-of-experts targets among `names`: "router" (alias "gate", PEFT's module name),
// "experts" (both expert tensors), "experts.gate_up_proj", "experts.down_proj"; in
// kAllMoeTargets order. "all-linear" does not include them (PEFT's does not either: they are not
// Linear modules).
std::vector<MoeTarget> parse_moe_lora_targets(const std::vector<std::string>& names);

struct LoraConfig {
  int r = 16;
  float alpha = 32.0f;
  float dropout = 0.0f;
  bool use_rslora = false;
  std::vector<Projection> targets = {Projection::kQ,   Projection::kK,    Projection::kV,
                                     Projection::kO,   Projection::kGate, Projection::kUp,
                                     Projection::kDown};
  // Sparse layers' targets, in kAllMoeTargets order (none by default).
  std::vector<MoeTarget> moe_targets;
  float scale() const;
  bool targets_projection(Projection p) const;
  bool targets_moe(MoeTarget t) const;
};

// PEFT's tensor name for a LoRA matrix:
// base_model.model.model.layers.L.self_attn.q_proj.lora_A.weight
std::string peft_tensor_name(int layer, Projection p, bool is_b);
// PEFT's name for a sparse layer's LoRA matrix, as PEFT 0.21 saves it (bench/NOTES.md, "What PEFT
// 0.21 writes for LoRA on MoE routers and experts"): the router
// base_model.model.model.layers.L.mlp.gate.lora_A.weight; the experts under mlp.experts, where
// PEFT nests one ParamWrapper per target parameter of the same module: with both expert tensors
// targeted the first listed (gate_up_proj, as fitlm always lists them) wraps the module itself
// and so sits one level down, mlp.experts.base_layer.lora_A.weight, and down_proj's wrapper,
// around it, is mlp.experts.lora_A.weight. With one of them targeted there is one wrapper and no
// base_layer (the same nesting rule, applied to a single wrapper).
std::string peft_moe_tensor_name(int layer, MoeTarget t, bool is_b, const LoraConfig& lora);

// PEFT's layout of an expert target's matrices: A [r·E, in] with row e·r + j (expert-major, each
// expert's A_e a contiguous [r, in] block, as fitlm keeps it), B [out, r·E] with column j·E + e
// (rank-major): ΔW = einsum("o r e, e r i -> e o i", B.reshape(out, r, E), A.reshape(E, r, in))·s.
// fitlm keeps B as [E, out, r] (each B_e contiguous, for the grouped GEMMs); these convert.
void expert_b_to_peft(const float* fitlm, float* peft, int64_t experts, int64_t out, int64_t r);
void expert_b_from_peft(const float* peft, float* fitlm, int64_t experts, int64_t out, int64_t r);

}  // namespace fitlm
