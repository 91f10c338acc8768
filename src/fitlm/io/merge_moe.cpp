#include "fitlm/io/merge_moe.h"

#include <fmt/format.h>

#include "fitlm/backend/cpu/cpu_backend.h"
#include "fitlm/core/error.h"
#include "fitlm/io/moe_checkpoint.h"
#include "fitlm/model/transformer_buffers.h"

namespace fitlm::io {
namespace {

// fitlm's name of (layer, target)'s base tensor.
std::string fused_name(int layer, MoeTarget t) {
  switch (t) {
    case MoeTarget::kRouter: return fmt::format("model.layers.{}.mlp.gate.weight", layer);
    case MoeTarget::kExpertsGateUp:
      return fmt::format("model.layers.{}.mlp.experts.gate_up_proj", layer);
    case MoeTarget::kExpertsDown:
      return fmt::format("model.layers.{}.mlp.experts.down_proj", layer);
  }
  return "?";
}

Shape fused_shape(const ModelConfig& c, MoeTarget t) {
  const int64_t e = c.moe.num_experts, i = c.moe.expert_intermediate_size, h = c.hidden_size;
  switch (t) {
    case MoeTarget::kRouter: return Shape{e, h};
    case MoeTarget::kExpertsGateUp: return Shape{e, 2 * i, h};
    case MoeTarget::kExpertsDown: return Shape{e, h, i};
  }
  return {};
}

// An adapter tensor of the expected shape, in f32 (older PEFT files keep the adapter name in
// it: "lora_A.default.weight").
std::vector<float> read_adapter(const SafetensorsFile& adapter, const std::string& want,
                                const Shape& shape, std::vector<std::string>& used) {
  std::string name = want;
  if (!adapter.contains(name)) {
    std::string alt = name;
    alt.replace(alt.rfind(".weight"), 7, ".default.weight");
    if (adapter.contains(alt)) name = alt;
  }
  if (!adapter.contains(name)) throw_input_error("merge", "adapter tensor '{}' is missing", want);
  const auto& info = adapter.info(name);
  if (!(Shape(info.shape) == shape))
    throw_input_error("merge", "adapter tensor '{}' has shape {}, the model implies {}", name,
                      Shape(info.shape).str(), shape.str());
  std::vector<float> v(static_cast<size_t>(info.numel()));
  adapter.read_f32(name, v.data());
  used.push_back(name);
  return v;
}

}  // namespace

std::map<std::string, MoeMergeTarget> moe_merge_targets(const ModelConfig& c,
                                                        const LoraConfig& lora,
                                                        const ShardedSafetensors& base) {
  std::map<std::string, MoeMergeTarget> out;
  for (int l = 0; l < c.num_layers; ++l) {
    if (!c.sparse_layer(l)) continue;
    for (MoeTarget m : lora.moe_targets) {
      const auto sources = moe_tensor_sources(c, base, fused_name(l, m), fused_shape(c, m));
      FITLM_CHECK(sources.has_value(), "merge", "no sources for {}", fused_name(l, m));
      for (const MoeSource& s : *sources) out[s.name] = {l, m, s.offset, s.shape};
    }
  }
  return out;
}

std::vector<float> moe_lora_delta(const ModelConfig& c, const LoraConfig& lora,
                                  const SafetensorsFile& adapter, int layer, MoeTarget target,
                                  std::vector<std::string>& used) {
  const MoeLoraShape s = moe_lora_shape(c, target, lora.r);
  std::vector<float> a =
      read_adapter(adapter, peft_moe_tensor_name(layer, target, false, lora), s.a, used);
  std::vector<float> b_file =
      read_adapter(adapter, peft_moe_tensor_name(layer, target, true, lora), s.peft_b, used);
  const Shape shape = fused_shape(c, target);
  std::vector<float> delta(static_cast<size_t>(shape.numel()), 0.0f);
  CpuBackend cpu;
  if (s.experts == 0) {  // the router: ΔW = s·B·A
    cpu.gemm(Tensor(b_file.data(), DType::kF32, s.b), false, Tensor(a.data(), DType::kF32, s.a),
             false, Tensor(delta.data(), DType::kF32, shape), lora.scale(), 0.0f);
    return delta;
  }
  std::vector<float> b(b_file.size());  // [E, out, r]: each B_e contiguous
  expert_b_from_peft(b_file.data(), b.data(), s.experts, s.out, lora.r);
  const int64_t in = s.a.dims[1], r = lora.r;
  for (int64_t e = 0; e < s.experts; ++e)  // ΔW_e = s·B_e·A_e
    cpu.gemm(Tensor(b.data() + e * s.out * r, DType::kF32, Shape{s.out, r}), false,
             Tensor(a.data() + e * r * in, DType::kF32, Shape{r, in}), false,
             Tensor(delta.data() + e * s.out * in, DType::kF32, Shape{s.out, in}), lora.scale(),
             0.0f);
  return delta;
}

}  // namespace fitlm::io
