#include "fitlm/model/presets.h"

#include "fitlm/core/error.h"

namespace fitlm {
namespace {

using nlohmann::json;

json llama3_rope(double factor) {
  return {{"factor", factor},
          {"low_freq_factor", 1.0},
          {"high_freq_factor", 4.0},
          {"original_max_position_embeddings", 8192},
          {"rope_type", "llama3"}};
}

json config(const char* arch, int vocab, int hidden, int inter, int layers, int heads, int kv,
            double theta, double eps, bool tied) {
  return {{"architectures", {arch}},     {"vocab_size", vocab},
          {"hidden_size", hidden},       {"intermediate_size", inter},
          {"num_hidden_layers", layers}, {"num_attention_heads", heads},
          {"num_key_value_heads", kv},   {"rope_theta", theta},
          {"rms_norm_eps", eps},         {"tie_word_embeddings", tied},
          {"hidden_act", "silu"},        {"max_position_embeddings", 131072}};
}

std::vector<std::pair<std::string, json>> presets() {
  json l1b = config("LlamaForCausalLM", 128256, 2048, 8192, 16, 32, 8, 500000.0, 1e-5, true);
  l1b["rope_scaling"] = llama3_rope(32.0);
  // Llama-3.2-3B (meta-llama/Llama-3.2-3B config.json): tied embeddings like the 1B.
  json l3b = config("LlamaForCausalLM", 128256, 3072, 8192, 28, 24, 8, 500000.0, 1e-5, true);
  l3b["rope_scaling"] = llama3_rope(32.0);
  json l8b = config("LlamaForCausalLM", 128256, 4096, 14336, 32, 32, 8, 500000.0, 1e-5, false);
  l8b["rope_scaling"] = llama3_rope(8.0);
  json q3 = config("Qwen3ForCausalLM", 151936, 4096, 12288, 36, 32, 8, 1000000.0, 1e-6, false);
  q3["head_dim"] = 128;
  json l70b = config("LlamaForCausalLM", 128256, 8192, 28672, 80, 64, 8, 500000.0, 1e-5, false);
  l70b["rope_scaling"] = llama3_rope(8.0);
  json tiny = config("LlamaForCausalLM", 256, 64, 128, 2, 4, 2, 10000.0, 1e-5, false);
  // Mixture of experts (FORMATS.md section 9).
  json mixtral = config("MixtralForCausalLM", 32000, 4096, 14336, 32, 32, 8, 1e6, 1e-5, false);
  mixtral["num_local_experts"] = 8;
  mixtral["num_experts_per_tok"] = 2;
  mixtral["router_aux_loss_coef"] = 0.02;
  mixtral["max_position_embeddings"] = 32768;
  json q3moe = config("Qwen3MoeForCausalLM", 151936, 2048, 6144, 48, 32, 4, 1e6, 1e-6, false);
  q3moe["head_dim"] = 128;
  q3moe["num_experts"] = 128;
  q3moe["num_experts_per_tok"] = 8;
  q3moe["moe_intermediate_size"] = 768;
  q3moe["norm_topk_prob"] = true;
  q3moe["decoder_sparse_step"] = 1;
  q3moe["mlp_only_layers"] = json::array();
  q3moe["max_position_embeddings"] = 40960;
  return {
      {"llama-3.2-1b", l1b},
      {"llama-3.2-3b", l3b},
      {"llama-3.1-8b", l8b},
      {"llama-3.1-70b", l70b},
      {"qwen2.5-7b",
       config("Qwen2ForCausalLM", 152064, 3584, 18944, 28, 28, 4, 1000000.0, 1e-6, false)},
      {"qwen2.5-14b",
       config("Qwen2ForCausalLM", 152064, 5120, 13824, 48, 40, 8, 1000000.0, 1e-5, false)},
      {"qwen2.5-32b",
       config("Qwen2ForCausalLM", 152064, 5120, 27648, 64, 40, 8, 1000000.0, 1e-5, false)},
      {"qwen3-8b", q3},
      {"mistral-7b",
       config("MistralForCausalLM", 32768, 4096, 14336, 32, 32, 8, 1000000.0, 1e-5, false)},
      {"mixtral-8x7b", mixtral},
      {"qwen3-30b-a3b", q3moe},
      {"tiny", tiny},
  };
}

}  // namespace

std::vector<std::string> preset_names() {
  std::vector<std::string> out;
  for (const auto& [name, _] : presets()) out.push_back(name);
  return out;
}

ModelConfig preset_config(const std::string& name) {
  for (const auto& [n, j] : presets())
    if (n == name) return ModelConfig::from_json(j, "preset " + n);
  std::string names;
  for (const auto& n : preset_names()) names += (names.empty() ? "" : ", ") + n;
  throw_input_error("bench", "unknown architecture preset '{}' (known: {})", name, names);
}

}  // namespace fitlm
