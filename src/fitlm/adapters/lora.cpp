#include "fitlm/adapters/lora.h"

#include <algorithm>
#include <cmath>

#include "fitlm/core/error.h"

namespace fitlm {

const char* projection_name(Projection p) {
  switch (p) {
    case Projection::kQ: return "q_proj";
    case Projection::kK: return "k_proj";
    case Projection::kV: return "v_proj";
    case Projection::kO: return "o_proj";
    case Projection::kGate: return "gate_proj";
    case Projection::kUp: return "up_proj";
    case Projection::kDown: return "down_proj";
  }
  return "?";
}

const char* projection_module(Projection p) {
  switch (p) {
    case Projection::kQ: return "self_attn.q_proj";
    case Projection::kK: return "self_attn.k_proj";
    case Projection::kV: return "self_attn.v_proj";
    case Projection::kO: return "self_attn.o_proj";
    case Projection::kGate: return "mlp.gate_proj";
    case Projection::kUp: return "mlp.up_proj";
    case Projection::kDown: return "mlp.down_proj";
  }
  return "?";
}

const char* moe_target_parameter(MoeTarget t) {
  switch (t) {
    case MoeTarget::kRouter: return "gate.weight";
    case MoeTarget::kExpertsGateUp: return "mlp.experts.gate_up_proj";
    case MoeTarget::kExpertsDown: return "mlp.experts.down_proj";
  }
  return "?";
}

namespace {
// The MoE targets a name stands for (none: not a MoE target name).
std::vector<MoeTarget> moe_targets_of(const std::string& n) {
  if (n == "router" || n == "gate") return {MoeTarget::kRouter};
  if (n == "experts") return {MoeTarget::kExpertsGateUp, MoeTarget::kExpertsDown};
  if (n == "experts.gate_up_proj") return {MoeTarget::kExpertsGateUp};
  if (n == "experts.down_proj") return {MoeTarget::kExpertsDown};
  return {};
}
}  // namespace

std::vector<MoeTarget> parse_moe_lora_targets(const std::vector<std::string>& names) {
  std::vector<MoeTarget> out;
  for (MoeTarget t : kAllMoeTargets)
    for (const auto& n : names) {
      const std::vector<MoeTarget> of = moe_targets_of(n);
      if (std::find(of.begin(), of.end(), t) != of.end()) {
        out.push_back(t);
        break;
      }
    }
  return out;
}

std::vector<Projection> parse_lora_targets(const std::vector<std::string>& names) {
  std::vector<Projection> out;
  for (const auto& n : names) {
    if (n == "all-linear" || n == "all") return {kAllProjections.begin(), kAllProjections.end()};
    if (!moe_targets_of(n).empty()) continue;
    bool found = false;
    for (Projection p : kAllProjections)
      if (n == projection_name(p)) {
        if (std::find(out.begin(), out.end(), p) == out.end()) out.push_back(p);
        found = true;
      }
    if (!found)
      throw_input_error("lora",
                        "unknown target module '{}' (valid: q_proj, k_proj, v_proj, o_proj, "
                        "gate_proj, up_proj, down_proj, all-linear; on mixture-of-experts "
                        "models also router (alias gate), experts, experts.gate_up_proj, "
                        "experts.down_proj)",
                        clip(n));
  }
  if (names.empty()) throw_input_error("lora", "lora_target_modules is empty");
  return out;
}

float LoraConfig::scale() const {
  return use_rslora ? alpha / std::sqrt(static_cast<float>(r)) : alpha / static_cast<float>(r);
}

bool LoraConfig::targets_projection(Projection p) const {
  return std::find(targets.begin(), targets.end(), p) != targets.end();
}

bool LoraConfig::targets_moe(MoeTarget t) const {
  return std::find(moe_targets.begin(), moe_targets.end(), t) != moe_targets.end();
}

std::string peft_tensor_name(int layer, Projection p, bool is_b) {
  return fmt::format("base_model.model.model.layers.{}.{}.lora_{}.weight", layer,
                     projection_module(p), is_b ? "B" : "A");
}

std::string peft_moe_tensor_name(int layer, MoeTarget t, bool is_b, const LoraConfig& lora) {
  const bool nested = t == MoeTarget::kExpertsGateUp && lora.targets_moe(MoeTarget::kExpertsDown);
  const char* module = t == MoeTarget::kRouter ? "mlp.gate"
                       : nested                ? "mlp.experts.base_layer"
                                               : "mlp.experts";
  return fmt::format("base_model.model.model.layers.{}.{}.lora_{}.weight", layer, module,
                     is_b ? "B" : "A");
}

void expert_b_to_peft(const float* fitlm, float* peft, int64_t experts, int64_t out, int64_t r) {
  for (int64_t e = 0; e < experts; ++e)
    for (int64_t o = 0; o < out; ++o)
      for (int64_t j = 0; j < r; ++j)
        peft[o * r * experts + j * experts + e] = fitlm[(e * out + o) * r + j];
}

void expert_b_from_peft(const float* peft, float* fitlm, int64_t experts, int64_t out, int64_t r) {
  for (int64_t e = 0; e < experts; ++e)
    for (int64_t o = 0; o < out; ++o)
      for (int64_t j = 0; j < r; ++j)
        fitlm[(e * out + o) * r + j] = peft[o * r * experts + j * experts + e];
}

}  // namespace fitlm
