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

std::vector<Projection> parse_lora_targets(const std::vector<std::string>& names) {
  std::vector<Projection> out;
  for (const auto& n : names) {
    if (n == "all-linear" || n == "all") return {kAllProjections.begin(), kAllProjections.end()};
    bool found = false;
    for (Projection p : kAllProjections)
      if (n == projection_name(p)) {
        if (std::find(out.begin(), out.end(), p) == out.end()) out.push_back(p);
        found = true;
      }
    if (!found)
      throw_input_error("lora",
                        "unknown target module '{}' (valid: q_proj, k_proj, v_proj, o_proj, "
                        "gate_proj, up_proj, down_proj, all-linear)",
                        clip(n));
  }
  if (out.empty()) throw_input_error("lora", "lora_target_modules is empty");
  return out;
}

float LoraConfig::scale() const {
  return use_rslora ? alpha / std::sqrt(static_cast<float>(r)) : alpha / static_cast<float>(r);
}

bool LoraConfig::targets_projection(Projection p) const {
  return std::find(targets.begin(), targets.end(), p) != targets.end();
}

std::string peft_tensor_name(int layer, Projection p, bool is_b) {
  return fmt::format("base_model.model.model.layers.{}.{}.lora_{}.weight", layer,
                     projection_module(p), is_b ? "B" : "A");
}

}  // namespace fitlm
