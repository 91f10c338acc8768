// LoRA adapters as the decoder applies them: per layer and projection an (A, B) pair and one
// scale. A decoder may apply several (summed), and an ensemble runs one decoder per adapter,
// all over the same base weights, so adapters live apart from the Transformer's own arena.
#pragma once

#include <array>
#include <filesystem>
#include <memory>
#include <vector>

#include "fitlm/adapters/lora.h"
#include "fitlm/backend/arena.h"
#include "fitlm/model/transformer.h"

namespace fitlm {

struct LoraPair {
  Tensor a, b;  // A [r, in], B [out, r]; both empty when the projection is not a target
};

struct AdapterWeights {
  float scale = 1.0f;
  int r = 0;
  std::vector<std::array<LoraPair, 7>> layers;  // [layer][Projection]

  // Views of the adapter a kLora Transformer holds (tests, a model loaded with --adapter). Not
  // for adapters cast per layer (16-bit LoRA, lora_cast_per_layer): throws.
  static AdapterWeights from_model(const Transformer& model);
};

// A PEFT adapter directory loaded into its own arena on the backend.
class LoadedAdapter {
 public:
  LoadedAdapter(Backend& backend, const ModelConfig& config, const std::filesystem::path& dir);
  const AdapterWeights& weights() const { return weights_; }
  const LoraConfig& config() const { return lora_; }

 private:
  LoraConfig lora_;
  std::unique_ptr<Arena> arena_;
  AdapterWeights weights_;
};

}  // namespace fitlm
