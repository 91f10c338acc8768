// LoRA products batched per group of targets that share an input (lora_groups: q, k, v and
// gate, up): one GEMM for the group's uᵀ = A·xᵀ, one for dA += duᵀ·x, one for dx += (duᵀ)ᵀ·A.
// They must give the loss and gradients of running every target on its own
// (RunShape::lora_per_projection) up to float rounding, with and without recompute, with and
// without q/k norm; partially targeted groups and dropout take the per-target path either way.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "fitlm/model/transformer.h"
#include "fitlm/model/transformer_buffers.h"
#include "model_test_util.h"

namespace fitlm {
namespace {

ModelConfig config(const std::string& arch) {
  nlohmann::json j = {{"architectures", {arch}},  {"vocab_size", 211},
                      {"hidden_size", 64},        {"intermediate_size", 96},
                      {"num_hidden_layers", 3},   {"num_attention_heads", 4},
                      {"num_key_value_heads", 2}, {"rms_norm_eps", 1e-5},
                      {"rope_theta", 10000.0},    {"tie_word_embeddings", false}};
  if (arch == "Qwen3ForCausalLM") j["head_dim"] = 16;  // q/k norm, q_dim != hidden
  return ModelConfig::from_json(j, "test");
}

struct Case {
  std::string arch = "LlamaForCausalLM";
  std::vector<std::string> targets = {"all-linear"};
  int recompute_layers = -2;  // -2: save every layer
  float dropout = 0.0f;
};

std::string describe(const Case& k) {
  std::string t;
  for (const auto& s : k.targets) t += s + ",";
  return fmt::format("{} targets={} recompute={} dropout={}", k.arch, t, k.recompute_layers,
                     k.dropout);
}

LoraConfig lora_of(const Case& k) {
  LoraConfig lora;
  lora.r = 4;
  lora.alpha = 8;
  lora.dropout = k.dropout;
  lora.targets = parse_lora_targets(k.targets);
  return lora;
}

RunShape shape_of(const Case& k, bool per_projection) {
  RunShape shape;
  shape.max_tokens = 40;
  shape.logits_chunk = 16;
  shape.lora_per_projection = per_projection;
  if (k.recompute_layers >= -1) {
    shape.recompute = RecomputePolicy::kFull;
    shape.recompute_layers = k.recompute_layers;
  }
  return shape;
}

struct Outputs {
  std::vector<double> losses;
  std::vector<std::string> names;
  std::vector<std::vector<float>> grads;
};

Outputs run(const Case& k, bool per_projection) {
  auto be = make_backend("cpu");
  Transformer m(*be, config(k.arch), TrainMode::kLora, lora_of(k), shape_of(k, per_projection));
  std::mt19937 rng(7);
  model_test::randomize_weights(*be, m, rng);
  // Two micro-batches, the second shorter than max_tokens (views of t < T_max tokens).
  Outputs out;
  m.zero_grads();
  for (const auto& [cu, seed] :
       std::vector<std::pair<std::vector<int32_t>, uint64_t>>{{{0, 13, 40}, 1}, {{0, 29}, 2}}) {
    TokenBatch b;
    b.cu_seqlens = cu;
    for (int i = 0; i < cu.back(); ++i) b.input_ids.push_back(static_cast<int32_t>(rng() % 211));
    b.labels = b.input_ids;
    m.set_dropout_seed(seed);
    out.losses.push_back(m.forward_backward(b, 1.0f / static_cast<float>(cu.back())).loss_sum);
  }
  for (Param& p : m.params()) {
    out.names.push_back(p.name);
    out.grads.emplace_back(static_cast<size_t>(p.grad.numel()));
    be->download(p.grad, out.grads.back().data());
  }
  return out;
}

float max_abs(const std::vector<float>& v) {
  float m = 0.0f;
  for (float x : v) m = std::max(m, std::abs(x));
  return m;
}

TEST(LoraBatching, GroupsGiveThePerProjectionLossAndGradients) {
  const std::vector<Case> cases = {
      {},
      {.recompute_layers = -1},
      {.recompute_layers = 2},
      {.arch = "Qwen3ForCausalLM"},
      {.arch = "Qwen3ForCausalLM", .recompute_layers = -1},
      {.targets = {"q_proj", "k_proj", "v_proj", "gate_proj", "up_proj"}, .recompute_layers = -1},
      {.arch = "Qwen3ForCausalLM", .targets = {"up_proj", "v_proj", "gate_proj", "k_proj"}},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(describe(k));
    const Outputs batched = run(k, false), single = run(k, true);
    ASSERT_EQ(batched.losses.size(), single.losses.size());
    for (size_t i = 0; i < single.losses.size(); ++i)
      EXPECT_NEAR(batched.losses[i], single.losses[i], 1e-5 * std::abs(single.losses[i]));
    ASSERT_EQ(batched.names, single.names);
    for (size_t i = 0; i < single.grads.size(); ++i) {
      const float scale = max_abs(single.grads[i]);
      EXPECT_GT(scale, 0.0f) << single.names[i];
      float diff = 0.0f;
      for (size_t j = 0; j < single.grads[i].size(); ++j)
        diff = std::max(diff, std::abs(batched.grads[i][j] - single.grads[i][j]));
      EXPECT_LE(diff, 1e-5f * scale) << single.names[i];
    }
  }
}

TEST(LoraBatching, PartialGroupsAndDropoutRunPerProjection) {
  // Nothing to batch: q and v without k, o and down alone, or a dropout mask per projection.
  // The switch then changes nothing, to the bit.
  const std::vector<Case> cases = {
      {.targets = {"q_proj", "v_proj"}},
      {.arch = "Qwen3ForCausalLM",
       .targets = {"q_proj", "v_proj", "up_proj"},
       .recompute_layers = -1},
      {.targets = {"o_proj", "down_proj"}, .recompute_layers = 2},
      {.dropout = 0.1f},
      {.arch = "Qwen3ForCausalLM", .recompute_layers = -1, .dropout = 0.1f},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(describe(k));
    const Outputs batched = run(k, false), single = run(k, true);
    EXPECT_EQ(batched.losses, single.losses);
    EXPECT_EQ(batched.grads, single.grads);
    for (double l : batched.losses) EXPECT_TRUE(std::isfinite(l));
  }
}

TEST(LoraBatching, GroupsShareOneTransposedIntermediateAndStackedAs) {
  const ModelConfig c = config("Qwen3ForCausalLM");
  Case all;
  const LoraConfig lora = lora_of(all);
  const int64_t r = lora.r, t = 40;
  const AllocationPlan plan =
      plan_transformer(c, TrainMode::kLora, lora, shape_of(all, false), DType::kF32);
  EXPECT_EQ(plan.at("layers.1.act.lora_u.qkv").shape.str(), Shape({3 * r, t}).str());
  EXPECT_EQ(plan.at("layers.1.act.lora_u.o_proj").shape.str(), Shape({r, t}).str());
  EXPECT_EQ(plan.at("layers.1.act.lora_u.gate_up").shape.str(), Shape({2 * r, t}).str());
  EXPECT_EQ(plan.at("layers.1.act.lora_u.down_proj").shape.str(), Shape({r, t}).str());
  EXPECT_FALSE(plan.contains("layers.1.act.lora_u.q_proj"));
  EXPECT_FALSE(plan.contains("scratch.du"));  // duᵀ overwrites uᵀ
  // Recompute: the shared set has the same buffers.
  EXPECT_EQ(plan_transformer(c, TrainMode::kLora, lora, shape_of({.recompute_layers = -1}, false),
                             DType::kF32)
                .at("act.lora_u.qkv")
                .shape.str(),
            Shape({3 * r, t}).str());
  Case partial{.targets = {"q_proj", "v_proj"}};
  const AllocationPlan qv = plan_transformer(c, TrainMode::kLora, lora_of(partial),
                                             shape_of(partial, false), DType::kF32);
  EXPECT_EQ(qv.at("layers.0.act.lora_u.q_proj").shape.str(), Shape({r, t}).str());
  EXPECT_EQ(qv.at("layers.0.act.lora_u.v_proj").shape.str(), Shape({r, t}).str());
  EXPECT_FALSE(qv.contains("layers.0.act.lora_u.qkv"));

  // The flat layout stacks a group's As; params() keeps the (layer, target, A then B) order.
  auto be = make_backend("cpu");
  Transformer m(*be, c, TrainMode::kLora, lora, shape_of(all, false));
  auto find = [&](int l, Projection p, bool is_b) -> const Param& {
    const std::string name = peft_tensor_name(l, p, is_b);
    const auto& ps = m.params();
    const auto it =
        std::find_if(ps.begin(), ps.end(), [&](const Param& q) { return q.name == name; });
    EXPECT_NE(it, ps.end()) << name;
    return *it;
  };
  size_t i = 0;
  for (int l = 0; l < c.num_layers; ++l)
    for (Projection p : lora.targets)
      for (bool is_b : {false, true}) EXPECT_EQ(m.params()[i++].name, peft_tensor_name(l, p, is_b));
  for (int l = 0; l < c.num_layers; ++l)
    for (const auto& [first, next] :
         std::vector<std::pair<Projection, Projection>>{{Projection::kQ, Projection::kK},
                                                        {Projection::kK, Projection::kV},
                                                        {Projection::kGate, Projection::kUp}})
      for (Tensor Param::*field : {&Param::master, &Param::grad}) {
        const Tensor& a = find(l, first, false).*field;
        EXPECT_EQ(static_cast<char*>(a.data) + a.bytes(), (find(l, next, false).*field).data);
      }
}

}  // namespace
}  // namespace fitlm
