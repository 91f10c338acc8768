// Tiny random models for the decoder tests: a kLora Transformer on the CPU backend with random
// base and adapter weights (the Transformer itself is checked against PyTorch elsewhere).
#pragma once

#include <memory>
#include <random>

#include "fitlm/backend/backend.h"
#include "fitlm/model/transformer.h"

namespace fitlm::testing {

inline nlohmann::json tiny_config(const std::string& arch) {
  nlohmann::json j = {{"architectures", {arch}},     {"vocab_size", 61},
                      {"hidden_size", 32},           {"intermediate_size", 48},
                      {"num_hidden_layers", 2},      {"num_attention_heads", 4},
                      {"num_key_value_heads", 2},    {"rms_norm_eps", 1e-6},
                      {"rope_theta", 10000.0},       {"max_position_embeddings", 128},
                      {"tie_word_embeddings", false}};
  if (arch == "Qwen3ForCausalLM" || arch == "Qwen3MoeForCausalLM")
    j["head_dim"] = 16, j["num_key_value_heads"] = 1;
  if (arch == "MixtralForCausalLM") j["num_local_experts"] = 4, j["num_experts_per_tok"] = 2;
  if (arch == "Qwen3MoeForCausalLM") {  // layer 0 dense, layer 1 sparse
    j["num_experts"] = 8, j["num_experts_per_tok"] = 3, j["moe_intermediate_size"] = 24;
    j["decoder_sparse_step"] = 2, j["norm_topk_prob"] = true;
  }
  return j;
}

struct TinyModel {
  std::unique_ptr<Backend> backend;
  std::unique_ptr<Transformer> model;
};

inline void fill_random(Backend& be, Tensor t, std::mt19937& gen, float mean, float stddev) {
  std::normal_distribution<float> d(mean, stddev);
  std::vector<float> v(static_cast<size_t>(t.numel()));
  for (float& x : v) x = d(gen);
  be.upload(t, v.data(), DType::kF32);
}

inline TinyModel tiny_model(const std::string& arch, int64_t max_tokens, uint32_t seed = 1) {
  TinyModel m;
  m.backend = make_backend("cpu");
  LoraConfig lora;
  lora.r = 4;
  lora.alpha = 8;
  RunShape shape;
  shape.max_tokens = max_tokens;
  m.model = std::make_unique<Transformer>(
      *m.backend, ModelConfig::from_json(tiny_config(arch), "tiny"), TrainMode::kLora, lora, shape);
  std::mt19937 gen(seed);
  for (auto& [name, t] : m.model->named_weights()) {
    const bool norm = name.find("norm") != std::string::npos;
    fill_random(*m.backend, t, gen, norm ? 1.0f : 0.0f, norm ? 0.1f : 0.2f);
  }
  for (Param& p : m.model->params()) fill_random(*m.backend, p.value, gen, 0.0f, 0.1f);
  return m;
}

}  // namespace fitlm::testing
