// fitlm merge for LoRA on a mixture of experts' routers and experts (LoraConfig::moe_targets):
// which base tensors an adapter changes and by how much, in either on-disk layout of the experts
// (transformers 5's fused tensors or the Hub's per-expert ones, io/moe_checkpoint.h).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "fitlm/adapters/lora.h"
#include "fitlm/core/tensor.h"
#include "fitlm/io/safetensors.h"
#include "fitlm/io/safetensors_index.h"
#include "fitlm/model/config.h"

namespace fitlm::io {

// One base tensor an adapter's router or experts target changes: elements [offset, offset +
// numel) of ΔW of (layer, target) in fitlm's layout (the router [E, H]; the experts
// [E, 2·I, H] or [E, H, I]), as the tensor's shape.
struct MoeMergeTarget {
  int layer;
  MoeTarget target;
  int64_t offset;
  Shape shape;
};
// By base tensor name, for every sparse layer and target of `lora`.
std::map<std::string, MoeMergeTarget> moe_merge_targets(const ModelConfig& c,
                                                        const LoraConfig& lora,
                                                        const ShardedSafetensors& base);

// ΔW of (layer, target) from the PEFT adapter file, scale included: the router's s·B·A; an
// expert target's s·B_e·A_e for every expert e, from PEFT's A [r·E, in] and B [out, r·E]
// (expert_b_to_peft's layout). The names the adapter's tensors were read under are added to
// `used`.
std::vector<float> moe_lora_delta(const ModelConfig& c, const LoraConfig& lora,
                                  const SafetensorsFile& adapter, int layer, MoeTarget target,
                                  std::vector<std::string>& used);

}  // namespace fitlm::io
