#include "fitlm/io/moe_checkpoint.h"

#include <fmt/format.h>

#include <cstdio>

namespace fitlm::io {
namespace {

// The Hub's per-expert tensor names of layer `prefix` ("model.layers.<l>.").
struct HubNames {
  std::string router, gate, up, down;  // gate, up, down: with {} for the expert index
};
HubNames hub_names(const ModelConfig& c, const std::string& prefix) {
  if (c.arch == Architecture::kMixtral) {
    const std::string e = prefix + "block_sparse_moe.experts.{}.";
    return {prefix + "block_sparse_moe.gate.weight", e + "w1.weight", e + "w3.weight",
            e + "w2.weight"};
  }
  const std::string e = prefix + "mlp.experts.{}.";
  return {prefix + "mlp.gate.weight", e + "gate_proj.weight", e + "up_proj.weight",
          e + "down_proj.weight"};
}

}  // namespace

std::optional<std::vector<MoeSource>> moe_tensor_sources(const ModelConfig& c,
                                                         const ShardedSafetensors& st,
                                                         const std::string& name,
                                                         const Shape& shape) {
  int layer = -1, consumed = 0;
  if (std::sscanf(name.c_str(), "model.layers.%d.%n", &layer, &consumed) != 1 || consumed == 0 ||
      !c.sparse_layer(layer))
    return std::nullopt;
  const std::string prefix = name.substr(0, static_cast<size_t>(consumed));
  const std::string rest = name.substr(static_cast<size_t>(consumed));
  const bool router = rest == "mlp.gate.weight";
  const bool gate_up = rest == "mlp.experts.gate_up_proj", down = rest == "mlp.experts.down_proj";
  if (!router && !gate_up && !down) return std::nullopt;
  if (st.contains(name)) return std::vector<MoeSource>{{name, 0, shape}};
  const HubNames hub = hub_names(c, prefix);
  if (router) return std::vector<MoeSource>{{hub.router, 0, shape}};
  const int64_t e = c.moe.num_experts, i = c.moe.expert_intermediate_size, h = c.hidden_size;
  std::vector<MoeSource> out;
  for (int64_t j = 0; j < e; ++j) {
    if (gate_up) {
      out.push_back({fmt::format(fmt::runtime(hub.gate), j), j * 2 * i * h, Shape{i, h}});
      out.push_back({fmt::format(fmt::runtime(hub.up), j), (2 * j + 1) * i * h, Shape{i, h}});
    } else {
      out.push_back({fmt::format(fmt::runtime(hub.down), j), j * h * i, Shape{h, i}});
    }
  }
  return out;
}

}  // namespace fitlm::io
