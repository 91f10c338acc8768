#include "fitlm/model/config.h"

#include <gtest/gtest.h>

#include <cmath>

#include "fitlm/core/error.h"

using namespace fitlm;
using nlohmann::json;

namespace {

json llama() {
  return json{{"architectures", {"LlamaForCausalLM"}},
              {"vocab_size", 128},
              {"hidden_size", 64},
              {"intermediate_size", 96},
              {"num_hidden_layers", 2},
              {"num_attention_heads", 8},
              {"num_key_value_heads", 2},
              {"rms_norm_eps", 1e-5},
              {"rope_theta", 500000.0}};
}

void expect_input_error(const json& j, const std::string& fragment) {
  try {
    ModelConfig::from_json(j, "config.json");
    FAIL() << "expected an error containing: " << fragment;
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::kBadInput);
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(ModelConfig, ReadsLlamaWithDefaults) {
  const ModelConfig c = ModelConfig::from_json(llama(), "config.json");
  EXPECT_EQ(c.arch, Architecture::kLlama);
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_EQ(c.num_kv_heads, 2);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_FALSE(c.qkv_bias);
}

TEST(ModelConfig, ArchitectureSpecificFlags) {
  json q2 = llama();
  q2["architectures"] = {"Qwen2ForCausalLM"};
  EXPECT_TRUE(ModelConfig::from_json(q2, "c").qkv_bias);
  EXPECT_FALSE(ModelConfig::from_json(q2, "c").o_bias);
  json q3 = llama();
  q3["architectures"] = {"Qwen3ForCausalLM"};
  q3["head_dim"] = 32;
  const ModelConfig c3 = ModelConfig::from_json(q3, "c");
  EXPECT_TRUE(c3.qk_norm);
  EXPECT_EQ(c3.head_dim, 32);
  EXPECT_EQ(c3.q_dim(), 256);
  json q3_default = llama();
  q3_default["architectures"] = {"Qwen3ForCausalLM"};
  EXPECT_EQ(ModelConfig::from_json(q3_default, "c").head_dim, 128);  // Qwen3Config default
}

TEST(ModelConfig, Llama3RopeScalingMatchesFormula) {
  json j = llama();
  j["rope_scaling"] = {{"factor", 8.0},
                       {"low_freq_factor", 1.0},
                       {"high_freq_factor", 4.0},
                       {"original_max_position_embeddings", 8192},
                       {"rope_type", "llama3"}};
  j["head_dim"] = 128;
  const auto inv = ModelConfig::from_json(j, "c").rope_inv_freq();
  ASSERT_EQ(inv.size(), 64u);
  // Highest frequency unchanged, lowest divided by the factor.
  EXPECT_NEAR(inv[0], 1.0f, 1e-7f);
  const float base_last = 1.0f / std::pow(500000.0f, 126.0f / 128.0f);
  EXPECT_NEAR(inv[63], base_last / 8.0f, base_last * 1e-5f);
}

TEST(ModelConfig, RopeParametersV5Form) {
  json j = llama();
  j.erase("rope_theta");
  j["rope_parameters"] = {{"rope_theta", 1e6}, {"rope_type", "default"}};
  EXPECT_DOUBLE_EQ(ModelConfig::from_json(j, "c").rope_theta, 1e6);
}

TEST(ModelConfig, ClearErrors) {
  json unknown = llama();
  unknown["architectures"] = {"GPT2LMHeadModel"};
  expect_input_error(unknown, "architecture 'GPT2LMHeadModel' is not supported (supported: ");
  json missing = llama();
  missing.erase("hidden_size");
  expect_input_error(missing, "missing required field 'hidden_size'");
  json wrong = llama();
  wrong["num_hidden_layers"] = "two";
  expect_input_error(wrong, "'num_hidden_layers' must be a non-negative integer");
  json gqa = llama();
  gqa["num_key_value_heads"] = 3;
  expect_input_error(gqa, "multiple of num_key_value_heads");
  json rope = llama();
  rope["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  expect_input_error(rope, "rope scaling type 'yarn' is not supported");
  json act = llama();
  act["hidden_act"] = "gelu";
  expect_input_error(act, "hidden_act");
  expect_input_error(json::array(), "expected a JSON object");
}

// Sizes name the field and the value; absurd ones are refused before anything is planned.
TEST(ModelConfig, SizesAreNamedAndBounded) {
  for (const char* key : {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                          "num_attention_heads", "num_key_value_heads"}) {
    json zero = llama();
    zero[key] = 0;
    expect_input_error(zero,
                       std::string("config.json: field '") + key + "' must be positive, found 0");
  }
  json layers = llama();
  layers["num_hidden_layers"] = 1000000000;
  expect_input_error(layers,
                     "config.json: field 'num_hidden_layers' is 1000000000, more than "
                     "fitlm accepts (at most 1024");
  json vocab = llama();
  vocab["vocab_size"] = 1 << 25;
  expect_input_error(vocab, "field 'vocab_size' is 33554432, more than fitlm accepts");
  json hidden = llama();
  hidden["hidden_size"] = 1 << 20;
  expect_input_error(hidden, "field 'hidden_size' is 1048576, more than fitlm accepts");
  json head_dim = llama();
  head_dim["head_dim"] = 4096;
  expect_input_error(head_dim, "field 'head_dim' is 4096, more than fitlm accepts");
  json eos = llama();
  eos["eos_token_id"] = {2, 1ll << 40};
  expect_input_error(eos, "field 'eos_token_id' holds 1099511627776, which is not a token id");
  json big = llama();
  big["rope_theta"] = std::string(100000, '9');
  try {
    ModelConfig::from_json(big, "config.json");
    FAIL();
  } catch (const Error& e) {
    EXPECT_LT(std::string(e.what()).size(), 300u) << "the value is clipped";
  }
  EXPECT_EQ(ModelConfig::from_json(llama(), "c").num_layers, 2);
}

TEST(ModelConfig, MixtralExpertsAreEveryLayerAndAlwaysRenormalised) {
  json j = llama();
  j["architectures"] = {"MixtralForCausalLM"};
  j["num_local_experts"] = 8;
  j["num_experts_per_tok"] = 2;
  const ModelConfig c = ModelConfig::from_json(j, "c");
  EXPECT_EQ(c.arch, Architecture::kMixtral);
  EXPECT_EQ(c.moe.num_experts, 8);
  EXPECT_EQ(c.moe.expert_intermediate_size, 96);  // Mixtral's experts use intermediate_size
  EXPECT_TRUE(c.moe.normalize_top_k);
  EXPECT_TRUE(c.sparse_layer(0) && c.sparse_layer(1));
  EXPECT_FALSE(c.has_dense_layers());
  // Per layer: attention 64·64 + 2·64·16 + 64·64 and 2 norms; 8 experts of 3·64·96 and the
  // 8 × 64 router. Plus embeddings, lm_head and the final norm.
  const int64_t layer = 64 * 64 * 2 + 2 * 64 * 16 + 2 * 64 + 8 * 3 * 64 * 96 + 8 * 64;
  EXPECT_EQ(c.parameter_count(), 2 * layer + 2 * 128 * 64 + 64);
}

TEST(ModelConfig, Qwen3MoeDenseLayersFromSparseStepAndMlpOnlyLayers) {
  json j = llama();
  j["architectures"] = {"Qwen3MoeForCausalLM"};
  j["num_hidden_layers"] = 6;
  j["num_experts"] = 4;
  j["num_experts_per_tok"] = 2;
  j["moe_intermediate_size"] = 32;
  j["decoder_sparse_step"] = 2;
  j["mlp_only_layers"] = {3};
  const ModelConfig c = ModelConfig::from_json(j, "c");
  EXPECT_TRUE(c.qk_norm);
  EXPECT_FALSE(c.moe.normalize_top_k);  // norm_topk_prob defaults to false
  EXPECT_EQ(c.moe.expert_intermediate_size, 32);
  const std::vector<bool> sparse = {false, true, false, false, false, true};  // (l+1) % 2, not 3
  for (int l = 0; l < 6; ++l) EXPECT_EQ(c.sparse_layer(l), sparse[static_cast<size_t>(l)]) << l;
  EXPECT_TRUE(c.has_dense_layers() && c.has_sparse_layers());
}

TEST(ModelConfig, MoeErrorsNameTheField) {
  json j = llama();
  j["architectures"] = {"Qwen3MoeForCausalLM"};
  j["num_experts"] = 4;
  j["num_experts_per_tok"] = 2;
  expect_input_error(j, "missing required field 'moe_intermediate_size'");
  j["moe_intermediate_size"] = 32;
  j["num_experts_per_tok"] = 5;
  expect_input_error(j, "num_experts_per_tok (5) is more than num_experts (4)");
  j["num_experts_per_tok"] = 2;
  j["mlp_only_layers"] = {7};
  expect_input_error(j, "field 'mlp_only_layers' holds 7, which is not a layer index (0 to 1)");
  j.erase("mlp_only_layers");
  j.erase("num_experts");
  expect_input_error(j, "missing required field 'num_experts'");
}
