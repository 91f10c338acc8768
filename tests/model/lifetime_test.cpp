// Buffer lifetimes (plan_transformer): buffers whose phase sets are disjoint share bytes, so a set
// declared too short would let one buffer clobber another. RunShape::check_lifetimes gives every
// buffer its own bytes and fills each buffer with NaN while it is dead (and throws when a dead
// buffer is written): a too-short lifetime then shows up wherever the buffers happen to sit.
// Every configuration below must give bit-identical losses, gradients and logits with the
// checker and with the shared arena the runtime uses.
#include <gtest/gtest.h>

#include <random>

#include "fitlm/model/transformer.h"
#include "fitlm/model/transformer_buffers.h"
#include "model_test_util.h"

namespace fitlm {
namespace {

nlohmann::json config_json(const std::string& arch, bool tied) {
  nlohmann::json j = {{"architectures", {arch}},  {"vocab_size", 211},
                      {"hidden_size", 64},        {"intermediate_size", 96},
                      {"num_hidden_layers", 4},   {"num_attention_heads", 4},
                      {"num_key_value_heads", 2}, {"rms_norm_eps", 1e-5},
                      {"rope_theta", 10000.0},    {"tie_word_embeddings", tied}};
  if (arch == "Qwen3ForCausalLM" || arch == "Qwen3MoeForCausalLM") j["head_dim"] = 16;
  if (arch == "MixtralForCausalLM") {  // every layer sparse, the load-balancing loss on
    j["num_local_experts"] = 4;
    j["num_experts_per_tok"] = 2;
    j["output_router_logits"] = true;
    j["router_aux_loss_coef"] = 0.02;
  }
  if (arch == "Qwen3MoeForCausalLM") {  // layers 1 and 3 sparse, 0 and 2 dense
    j["num_experts"] = 8;
    j["num_experts_per_tok"] = 3;
    j["moe_intermediate_size"] = 48;
    j["decoder_sparse_step"] = 2;
  }
  return j;
}

struct Case {
  std::string arch = "LlamaForCausalLM";
  bool tied = false;
  TrainMode mode = TrainMode::kLora;
  int recompute_layers = -1;  // -2: save every layer
  float dropout = 0.0f;
  bool base4 = false;                       // a 4-bit (NF4, double quantization) base: QLoRA
  std::vector<MoeTarget> moe_targets = {};  // LoRA on the router and experts
};

std::string describe(const Case& c) {
  return fmt::format("{} tied={} mode={} recompute={} dropout={} base4={} moe_targets={}", c.arch,
                     c.tied, static_cast<int>(c.mode), c.recompute_layers, c.dropout, c.base4,
                     c.moe_targets.size());
}

struct Outputs {
  std::vector<double> losses;
  std::vector<std::vector<float>> grads;
  std::vector<float> logits;
};

TokenBatch make_batch(std::mt19937& rng, std::vector<int32_t> cu) {
  TokenBatch b;
  b.cu_seqlens = cu;
  for (int i = 0; i < cu.back(); ++i) b.input_ids.push_back(static_cast<int32_t>(rng() % 211));
  b.labels = b.input_ids;
  // Rows 16..31 score nothing: the loss skips that logits chunk.
  for (int i = 17; i <= 32 && i < cu.back(); ++i) b.labels[i] = -100;
  return b;
}

Outputs run(const Case& k, bool check, bool cast_lora_per_layer = false) {
  auto be = make_backend("cpu");
  LoraConfig lora;
  lora.r = 4;
  lora.alpha = 8;
  lora.dropout = k.dropout;
  lora.moe_targets = k.moe_targets;
  RunShape shape;
  shape.max_tokens = 40;
  shape.logits_chunk = 16;
  shape.with_optimizer = k.mode != TrainMode::kFrozen;
  shape.check_lifetimes = check;
  shape.cast_lora_per_layer_on_f32 = cast_lora_per_layer;
  if (k.recompute_layers >= -1) {
    shape.recompute = RecomputePolicy::kFull;
    shape.recompute_layers = k.recompute_layers;
  }
  if (k.base4) shape.base4 = Base4Layout{};
  Transformer m(*be, ModelConfig::from_json(config_json(k.arch, k.tied), "test"), k.mode, lora,
                shape);
  std::mt19937 rng(3);
  model_test::randomize_weights(*be, m, rng);
  if (k.base4) model_test::randomize_base4_weights(*be, m, rng);
  const TokenBatch b1 = make_batch(rng, {0, 13, 40}), b2 = make_batch(rng, {0, 29});
  Outputs out;
  if (k.mode != TrainMode::kFrozen) {
    m.zero_grads();
    m.set_dropout_seed(1);
    out.losses.push_back(m.forward_backward(b1, 1.0f / 40).loss_sum);
    m.set_dropout_seed(2);
    out.losses.push_back(m.forward_backward(b2, 0.5f / 29).loss_sum);
    for (Param& p : m.params()) {
      out.grads.emplace_back(static_cast<size_t>(p.grad.numel()));
      be->download(p.grad, out.grads.back().data());
    }
  }
  out.losses.push_back(m.forward_loss(b1).loss_sum);
  out.logits = m.logits(b2);
  return out;
}

TEST(Lifetimes, SharedArenaIsBitIdenticalToCheckedLifetimes) {
  const std::vector<MoeTarget> all_moe(kAllMoeTargets.begin(), kAllMoeTargets.end());
  const std::vector<Case> cases = {
      {.recompute_layers = -2},
      {.recompute_layers = -1},
      {.recompute_layers = 2},
      {.recompute_layers = -1, .dropout = 0.1f},
      {.recompute_layers = -2, .dropout = 0.1f},
      {.mode = TrainMode::kFull, .recompute_layers = -2},
      {.mode = TrainMode::kFull, .recompute_layers = -1},
      {.arch = "Qwen2ForCausalLM", .tied = true, .mode = TrainMode::kFull},
      {.arch = "Qwen2ForCausalLM", .tied = true, .recompute_layers = 3},
      {.arch = "Qwen3ForCausalLM", .recompute_layers = -1},
      {.arch = "Qwen3ForCausalLM", .recompute_layers = -2, .dropout = 0.1f},
      {.arch = "Qwen3ForCausalLM", .mode = TrainMode::kFull, .recompute_layers = 2},
      {.mode = TrainMode::kFrozen},
      {.arch = "Qwen3ForCausalLM", .mode = TrainMode::kFrozen},
      {.arch = "MixtralForCausalLM", .recompute_layers = -2},
      {.arch = "MixtralForCausalLM", .mode = TrainMode::kFull, .recompute_layers = 2},
      {.arch = "Qwen3MoeForCausalLM", .recompute_layers = -1, .dropout = 0.1f},
      {.arch = "Qwen3MoeForCausalLM", .mode = TrainMode::kFull, .recompute_layers = -1},
      {.arch = "Qwen3MoeForCausalLM", .mode = TrainMode::kFrozen},
      // QLoRA on mixtures of experts: the dequantized layer (attention and experts, or a dense
      // layer's MLP) lives only where layers run.
      {.arch = "MixtralForCausalLM", .recompute_layers = -1, .base4 = true},
      {.arch = "MixtralForCausalLM", .recompute_layers = -2, .base4 = true},
      {.arch = "Qwen3MoeForCausalLM", .recompute_layers = 2, .dropout = 0.1f, .base4 = true},
      {.arch = "Qwen3MoeForCausalLM", .recompute_layers = -1, .base4 = true},
      {.arch = "Qwen3MoeForCausalLM", .mode = TrainMode::kFrozen, .base4 = true},
      {.recompute_layers = -1, .base4 = true},
      // LoRA on the router and experts: their intermediates (moe_lora_u.*) live from the forward
      // (or recompute) to the MLP backward; with a 4-bit base beside dequantized experts.
      {.arch = "MixtralForCausalLM", .recompute_layers = -2, .moe_targets = all_moe},
      {.arch = "MixtralForCausalLM", .recompute_layers = -1, .moe_targets = all_moe},
      {.arch = "Qwen3MoeForCausalLM",
       .recompute_layers = 2,
       .moe_targets = {MoeTarget::kRouter, MoeTarget::kExpertsDown}},
      {.arch = "Qwen3MoeForCausalLM",
       .recompute_layers = -1,
       .base4 = true,
       .moe_targets = all_moe},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(describe(k));
    const Outputs checked = run(k, /*check=*/true);
    const Outputs shared = run(k, /*check=*/false);
    EXPECT_EQ(shared.losses, checked.losses);
    ASSERT_EQ(shared.grads.size(), checked.grads.size());
    for (size_t i = 0; i < checked.grads.size(); ++i) EXPECT_EQ(shared.grads[i], checked.grads[i]);
    EXPECT_EQ(shared.logits, checked.logits);
    for (double l : checked.losses) EXPECT_TRUE(std::isfinite(l));
    if (k.mode != TrainMode::kLora) continue;
    // LoRA adapters cast per layer (what 16-bit backends do) give the same bits on f32.
    for (bool check : {true, false}) {
      const Outputs per_layer = run(k, check, /*cast_lora_per_layer=*/true);
      EXPECT_EQ(per_layer.losses, checked.losses) << check;
      ASSERT_EQ(per_layer.grads.size(), checked.grads.size());
      for (size_t i = 0; i < checked.grads.size(); ++i)
        EXPECT_EQ(per_layer.grads[i], checked.grads[i]) << check;
      EXPECT_EQ(per_layer.logits, checked.logits) << check;
    }
  }
}

TEST(Lifetimes, LoraOn16BitKeepsOneLayerOfValues) {
  const ModelConfig c = ModelConfig::from_json(config_json("LlamaForCausalLM", false), "test");
  LoraConfig lora;
  RunShape shape;
  shape.max_tokens = 64;
  shape.with_optimizer = true;
  const int64_t total = lora_layout(c, lora).total;
  const AllocationPlan bf16 = plan_transformer(c, TrainMode::kLora, lora, shape, DType::kBF16);
  EXPECT_FALSE(bf16.contains(kLoraFlat));
  EXPECT_EQ(bf16.at(std::string(kLoraFlat) + ".master").shape.numel(), total);
  EXPECT_EQ(bf16.at(kLoraLayer).shape.numel() * c.num_layers, total);
  EXPECT_EQ(bf16.at(kLoraLayer).dtype, DType::kBF16);
  // f32 keeps its one copy (value = master) unless told otherwise.
  const AllocationPlan f32 = plan_transformer(c, TrainMode::kLora, lora, shape, DType::kF32);
  EXPECT_TRUE(f32.contains(kLoraFlat));
  EXPECT_FALSE(f32.contains(kLoraLayer));
  shape.cast_lora_per_layer_on_f32 = true;
  EXPECT_TRUE(plan_transformer(c, TrainMode::kLora, lora, shape, DType::kF32).contains(kLoraLayer));
  // Full fine-tuning and eval are unaffected.
  EXPECT_FALSE(
      plan_transformer(c, TrainMode::kFull, lora, shape, DType::kBF16).contains(kLoraLayer));
}

TEST(Lifetimes, RecomputeSetAndBackwardScratchShareTheLogitsBytes) {
  const ModelConfig c = ModelConfig::from_json(config_json("LlamaForCausalLM", false), "test");
  LoraConfig lora;
  RunShape shape;
  shape.max_tokens = 512;
  shape.recompute = RecomputePolicy::kFull;
  const AllocationPlan plan = plan_transformer(c, TrainMode::kLora, lora, shape, DType::kF32);
  auto overlap = [&](const char* a, const char* b) {
    const BufferSpec &x = plan.at(a), &y = plan.at(b);
    return x.offset < y.offset + y.bytes && y.offset < x.offset + x.bytes;
  };
  // The logits chunk overlaps the per-layer buffers it never lives with.
  EXPECT_TRUE(overlap("loss.logits", "act.gate") || overlap("loss.logits", "scratch.dgate") ||
              overlap("loss.logits", "scratch.datt"));
  // What the loss head needs it keeps apart.
  for (const char* live : {"final.xn", "scratch.dxn", "final.x_in", "loss.losses", "final.rstd"})
    EXPECT_FALSE(overlap("loss.logits", live)) << live;
  RunShape apart = shape;
  apart.check_lifetimes = true;
  EXPECT_LT(plan.total_bytes(),
            plan_transformer(c, TrainMode::kLora, lora, apart, DType::kF32).total_bytes());
}

}  // namespace
}  // namespace fitlm
