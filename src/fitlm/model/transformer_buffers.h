// Internal to the model: the named weight and activation buffers of a Transformer.
#pragma once

#include <string>
#include <vector>

#include "fitlm/model/transformer.h"

namespace fitlm {

enum class WeightKind { kEmbed, kNorm, kLinear, kBias, kLmHead };

struct WeightSpec {
  std::string name;  // HF tensor name
  Shape shape;
  int layer;  // −1 for embed / final norm / lm_head
  WeightKind kind;
  Projection projection = Projection::kQ;  // for kLinear / kBias
};

struct ActivationSpec {
  std::string name;
  Shape shape;
  bool f32;  // statistics (rstd, lse) are f32 on every backend
};

std::vector<WeightSpec> weight_specs(const ModelConfig& c);
std::pair<int64_t, int64_t> projection_shape(const ModelConfig& c, Projection p);  // {out, in}
bool projection_has_bias(const ModelConfig& c, Projection p);
std::vector<ActivationSpec> activation_specs(const ModelConfig& c, const LoraConfig& lora,
                                             TrainMode mode, int64_t tokens);
// layer −1: the shared set used with RecomputePolicy::kFull.
std::string activation_buffer_name(int layer, const std::string& name);

}  // namespace fitlm
