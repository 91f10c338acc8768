// Where a mixture-of-experts tensor comes from in a checkpoint. fitlm keeps a sparse layer's
// router and experts as transformers 5 does (WeightKind::kRouter, kExperts: mlp.gate.weight,
// mlp.experts.gate_up_proj [E, 2·I, H], mlp.experts.down_proj [E, H, I]) and writes them so;
// it reads that layout or the per-expert tensors of the checkpoints on the Hub:
//   Mixtral:   block_sparse_moe.gate.weight, block_sparse_moe.experts.<j>.w1|w3|w2.weight
//              (w1 = gate, w3 = up, w2 = down)
//   Qwen3-MoE: mlp.gate.weight, mlp.experts.<j>.gate_proj|up_proj|down_proj.weight
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "fitlm/core/tensor.h"
#include "fitlm/io/safetensors_index.h"
#include "fitlm/model/config.h"

namespace fitlm::io {

// One checkpoint tensor and where it goes: `shape` elements from element `offset` of the fitlm
// tensor on.
struct MoeSource {
  std::string name;
  int64_t offset = 0;
  Shape shape;
};

// nullopt when `name` (a fitlm weight name) is not a router or experts tensor; else its sources:
// the tensor itself when the checkpoint holds it (the fused layout), else the Hub's per-expert
// tensors (which the loader's shape checks then require).
std::optional<std::vector<MoeSource>> moe_tensor_sources(const ModelConfig& config,
                                                         const ShardedSafetensors& st,
                                                         const std::string& name,
                                                         const Shape& shape);

}  // namespace fitlm::io
