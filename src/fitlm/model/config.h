// Model hyper-parameters read from a Hugging Face config.json, for the decoder families fitlm
// supports: LlamaForCausalLM (Llama 2/3/3.1/3.2), MistralForCausalLM, Qwen2ForCausalLM,
// Qwen3ForCausalLM, and the mixture-of-experts MixtralForCausalLM and Qwen3MoeForCausalLM.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace fitlm {

enum class Architecture { kLlama, kMistral, kQwen2, kQwen3, kMixtral, kQwen3Moe };

struct RopeScaling {
  std::string type = "default";  // default | linear | llama3
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int original_max_position_embeddings = 8192;
};

// Mixture of experts (model/transformer_moe.cpp): a sparse layer's MLP is a router choosing
// `experts_per_token` of `num_experts` SwiGLU experts of width `expert_intermediate_size` per
// token.
struct MoeConfig {
  int num_experts = 0;  // 0: a dense model
  int experts_per_token = 0;
  int expert_intermediate_size = 0;
  bool normalize_top_k = false;      // renormalise the chosen probabilities (Mixtral: always)
  int sparse_step = 1;               // Qwen3-MoE decoder_sparse_step
  std::vector<int> mlp_only_layers;  // Qwen3-MoE: layers kept dense
  bool aux_loss = false;             // output_router_logits: the load-balancing loss in training
  double aux_loss_coef = 0.001;      // router_aux_loss_coef
  double router_jitter = 0.0;        // Mixtral router_jitter_noise (training only; refused > 0)
};

struct ModelConfig {
  Architecture arch = Architecture::kLlama;
  std::string architecture_name;  // as in config.json, e.g. "LlamaForCausalLM"
  std::string model_type;         // "llama", "mistral", "qwen2", "qwen3"
  int vocab_size = 0;
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool qkv_bias = false;   // bias on q/k/v projections (Qwen2 always; Llama/Qwen3 attention_bias)
  bool o_bias = false;     // bias on o_proj (Llama/Qwen3 attention_bias)
  bool mlp_bias = false;   // bias on gate/up/down (Llama mlp_bias)
  bool qk_norm = false;    // Qwen3: RMSNorm over head_dim on q and k before RoPE
  int sliding_window = 0;  // 0 = none; attention over longer spans is refused, not approximated
  MoeConfig moe;
  std::vector<int> eos_token_ids;
  int bos_token_id = -1;
  nlohmann::json raw;  // the file as read, kept so that merged models keep every key

  // `source` names the file in error messages. Sizes are bounded (at most 1024 layers, hidden
  // size 65536, vocabulary 2^24, ...): a config beyond them is an input error.
  static ModelConfig from_json(const nlohmann::json& j, const std::string& source);
  static ModelConfig from_file(const std::filesystem::path& path);
  // A config.json that transformers loads for this model (raw keys kept, ours updated).
  nlohmann::json to_json() const;

  int q_dim() const { return num_heads * head_dim; }
  // Whether decoder layer l's MLP is a mixture of experts (else the dense SwiGLU MLP).
  bool sparse_layer(int l) const;
  bool has_sparse_layers() const;
  bool has_dense_layers() const;
  int kv_dim() const { return num_kv_heads * head_dim; }
  // RoPE inverse frequencies [head_dim/2] with rope_scaling applied, computed as HF does.
  std::vector<float> rope_inv_freq() const;
  // Number of parameters (all weights, LM head counted once when tied).
  int64_t parameter_count() const;
  // The parameters one token computes with: a sparse layer's k chosen experts, not all E.
  int64_t active_parameter_count() const;
};

std::string supported_architectures();  // for error messages

}  // namespace fitlm
