// A 4-bit base (RunShape::base4): the decoder's linear weights live packed in the arena and are
// dequantized per layer into base4.layer. On the f32 CPU backend that must give exactly what a
// 16-bit model computes from the same weights dequantized on the host (quant::dequantize4, then
// rounded to the checkpoint dtype): losses, LoRA gradients, logits and the incremental decoder's
// logits, bit for bit, with every buffer apart and NaN-poisoned outside its lifetime as well as
// in the shared arena.
#include <gtest/gtest.h>

#include <map>
#include <random>

#include "fitlm/backend/quant4_upload.h"
#include "fitlm/core/error.h"
#include "fitlm/infer/decoder.h"
#include "fitlm/model/transformer.h"
#include "fitlm/model/transformer_buffers.h"
#include "model_test_util.h"

namespace fitlm {
namespace {

ModelConfig config(const std::string& arch) {
  nlohmann::json j = {{"architectures", {arch}},  {"vocab_size", 97},
                      {"hidden_size", 48},        {"intermediate_size", 72},
                      {"num_hidden_layers", 3},   {"num_attention_heads", 4},
                      {"num_key_value_heads", 2}, {"rms_norm_eps", 1e-5},
                      {"rope_theta", 10000.0},    {"tie_word_embeddings", false}};
  if (arch == "Qwen3ForCausalLM" || arch == "Qwen3MoeForCausalLM") j["head_dim"] = 16;
  if (arch == "MixtralForCausalLM") {  // every layer sparse, the load-balancing loss on
    j["num_local_experts"] = 4;
    j["num_experts_per_tok"] = 2;
    j["output_router_logits"] = true;
    j["router_aux_loss_coef"] = 0.02;
  }
  if (arch == "Qwen3MoeForCausalLM") {  // layer 1 dense among sparse ones; the expert tensors
    j["num_experts"] = 6;               // (6·2·20·48, 6·48·20 elements) are not multiples of
    j["num_experts_per_tok"] = 2;       // 256 blocks: blocks cross experts
    j["moe_intermediate_size"] = 20;
    j["norm_topk_prob"] = true;
    j["mlp_only_layers"] = {1};
  }
  return ModelConfig::from_json(j, "test");
}

// The weights a 4-bit base keeps packed: decoder linears and a sparse layer's experts.
bool packed_name(const std::string& name) {
  return name.ends_with("_proj.weight") || name.ends_with("mlp.experts.gate_up_proj") ||
         name.ends_with("mlp.experts.down_proj");
}

struct Case {
  std::string arch = "LlamaForCausalLM";
  Base4Layout layout{};
  int recompute_layers = -1;  // -2: save every layer
  TrainMode mode = TrainMode::kLora;
};

struct Outputs {
  std::vector<double> losses;
  std::vector<std::vector<float>> grads;
  std::vector<float> logits, decoded;
};

void fill_normal(Backend& be, const Tensor& t, std::mt19937& rng) {
  std::normal_distribution<float> n(0.0f, 0.1f);
  std::vector<float> h(static_cast<size_t>(t.numel()));
  for (float& v : h) v = n(rng);
  be.upload(t, h.data(), DType::kF32);
}

// Random weights for both models: the 4-bit one gets each linear quantized on the host, the
// 16-bit one that quantization's dequantized values rounded to bf16 (the quant_state dtype).
void load_weights(Backend& be, Transformer& m, bool quantized, const Base4Layout& layout) {
  std::mt19937 rng(5);
  std::normal_distribution<float> n(0.0f, 0.1f);
  // The embedding (in host memory with a 4-bit base, embedding_on_host) from its own stream,
  // then norms and lm_head, then LoRA: the same draws in both models.
  std::mt19937 embed_rng(6);
  for (auto& [name, t] : m.named_weights())
    if (name == "model.embed_tokens.weight") fill_normal(be, t, embed_rng);
  for (auto& [name, t] : m.host_weights()) fill_normal(be, t, embed_rng);  // host = CPU memory
  model_test::randomize_weights(be, m, rng, [](const std::string& name) {
    return packed_name(name) || name == "model.embed_tokens.weight";
  });
  // The packed weights in weight_specs order (layer by layer; a sparse layer's experts, each
  // fused tensor quantized as one flat array, before its attention projections).
  std::map<std::string, Quant4Tensor*> packed;
  for (auto& [name, q] : m.quantized_weights()) packed[name] = q;
  std::map<std::string, Tensor> named;
  for (auto& [name, t] : m.named_weights()) named[name] = t;
  for (const WeightSpec& spec : weight_specs(m.config())) {
    if (!packed_name(spec.name)) continue;
    std::vector<float> w(static_cast<size_t>(spec.shape.numel()));
    for (float& v : w) v = n(rng);
    const quant::Quantized4 q =
        quant::quantize4(w, layout.type, layout.blocksize, layout.double_quant);
    if (quantized) {
      Quant4Tensor& dst = *packed.at(spec.name);
      upload_quant4(be, q, dst, "test", "test");
      dst.round_to = DType::kBF16;
      continue;
    }
    quant::dequantize4(q, w);
    round_to_storage(w, DType::kBF16);
    be.upload(named.at(spec.name), w.data(), DType::kF32);
  }
}

TokenBatch batch(std::mt19937& rng, std::vector<int32_t> cu) {
  TokenBatch b;
  b.cu_seqlens = cu;
  for (int i = 0; i < cu.back(); ++i) b.input_ids.push_back(static_cast<int32_t>(rng() % 97));
  b.labels = b.input_ids;
  return b;
}

Outputs run(const Case& k, bool quantized, bool check_lifetimes) {
  auto be = make_backend("cpu");
  LoraConfig lora;
  lora.r = 4;
  lora.alpha = 8;
  RunShape shape;
  shape.max_tokens = 24;
  shape.logits_chunk = 8;
  shape.with_optimizer = true;
  shape.check_lifetimes = check_lifetimes;
  shape.cast_lora_per_layer_on_f32 = true;  // as 16-bit backends run LoRA
  if (k.recompute_layers >= -1) {
    shape.recompute = RecomputePolicy::kFull;
    shape.recompute_layers = k.recompute_layers;
  }
  if (quantized) shape.base4 = k.layout;
  Transformer m(*be, config(k.arch), k.mode, lora, shape);
  load_weights(*be, m, quantized, k.layout);
  std::mt19937 rng(9);
  const TokenBatch b1 = batch(rng, {0, 11, 24}), b2 = batch(rng, {0, 17});
  Outputs out;
  if (k.mode == TrainMode::kLora) {
    out.losses.push_back(m.forward_backward(b1, 1.0f / 24).loss_sum);
    out.losses.push_back(m.forward_backward(b2, 1.0f / 17).loss_sum);
    for (Param& p : m.params()) {
      out.grads.emplace_back(static_cast<size_t>(p.grad.numel()));
      be->download(p.grad, out.grads.back().data());
    }
  }
  out.losses.push_back(m.forward_loss(b1).loss_sum);
  out.logits = m.logits(b2);
  // The decoder reads the model's (dequantized) weights, experts included.
  if (k.mode == TrainMode::kFrozen) {
    Decoder d(m, {}, DecoderShape{1, 16});
    out.decoded = d.prefill({{3, 1, 4, 1, 5}});
    const std::vector<float> next = d.step(std::vector<int32_t>{9});
    out.decoded.insert(out.decoded.end(), next.begin(), next.end());
  }
  return out;
}

TEST(Base4, PackedWeightsComputeExactlyAsTheirDequantizedValues) {
  using Q = quant::QuantType;
  const std::vector<Case> cases = {
      {},
      {.recompute_layers = -2},
      {.recompute_layers = 1},
      {.layout = {Q::kFP4, 32, false}},
      {.layout = {Q::kNF4, 128, false}, .recompute_layers = -2},
      {.arch = "Qwen2ForCausalLM", .layout = {Q::kFP4, 64, true}},
      {.arch = "Qwen3ForCausalLM"},
      {.mode = TrainMode::kFrozen},
      {.arch = "Qwen3ForCausalLM", .layout = {Q::kFP4, 256, true}, .mode = TrainMode::kFrozen},
      // Mixture of experts: the experts packed too (the routers 16-bit), dequantized with the
      // layer's attention; a dense layer among the sparse ones stays a dense 4-bit layer.
      {.arch = "Qwen3MoeForCausalLM"},
      {.arch = "Qwen3MoeForCausalLM", .recompute_layers = -2},
      {.arch = "Qwen3MoeForCausalLM", .layout = {Q::kFP4, 32, false}, .recompute_layers = 1},
      {.arch = "Qwen3MoeForCausalLM", .mode = TrainMode::kFrozen},
      {.arch = "MixtralForCausalLM"},
      {.arch = "MixtralForCausalLM", .layout = {Q::kNF4, 128, true}, .recompute_layers = -2},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(fmt::format("{} {} bs={} dq={} recompute={} mode={}", k.arch,
                             quant::quant_type_name(k.layout.type), k.layout.blocksize,
                             k.layout.double_quant, k.recompute_layers, static_cast<int>(k.mode)));
    const Outputs dense = run(k, /*quantized=*/false, false);
    for (bool check : {true, false}) {
      const Outputs q = run(k, /*quantized=*/true, check);
      EXPECT_EQ(q.losses, dense.losses) << check;
      ASSERT_EQ(q.grads.size(), dense.grads.size());
      for (size_t i = 0; i < q.grads.size(); ++i) EXPECT_EQ(q.grads[i], dense.grads[i]) << check;
      EXPECT_EQ(q.logits, dense.logits) << check;
      EXPECT_EQ(q.decoded, dense.decoded) << check;
    }
    for (double l : dense.losses) EXPECT_TRUE(std::isfinite(l));
    for (const auto& g : dense.grads)
      EXPECT_TRUE(std::any_of(g.begin(), g.end(), [](float v) { return v != 0.0f; }));
  }
}

TEST(Base4, PlanHoldsPackedWeightsAndOneDequantizedLayer) {
  const ModelConfig c = config("LlamaForCausalLM");
  LoraConfig lora;
  RunShape shape;
  shape.max_tokens = 512;
  shape.recompute = RecomputePolicy::kFull;
  shape.with_optimizer = true;
  shape.base4 = Base4Layout{};
  const AllocationPlan plan = plan_transformer(c, TrainMode::kLora, lora, shape, DType::kBF16);
  const std::string q = "model.layers.1.mlp.down_proj.weight";
  const int64_t n = c.hidden_size * c.intermediate_size, blocks = (n + 63) / 64;
  EXPECT_EQ(plan.at(q).dtype, DType::kU8);
  EXPECT_EQ(plan.at(q).shape.numel(), (n + 1) / 2);
  EXPECT_EQ(plan.at(q + ".absmax").dtype, DType::kU8);
  EXPECT_EQ(plan.at(q + ".absmax").shape.numel(), blocks);
  EXPECT_EQ(plan.at(q + ".nested_absmax").shape.numel(), (blocks + 255) / 256);
  EXPECT_EQ(plan.at(q + ".nested_map").shape.numel(), 256);
  // One layer of the seven projections, 64-element aligned, in the compute dtype.
  const BufferSpec& layer = plan.at(kBase4Layer);
  EXPECT_EQ(layer.dtype, DType::kBF16);
  EXPECT_EQ(layer.shape.numel(), base4_layer_layout(c).total);
  int64_t sum = 0;
  for (Projection p : kAllProjections) {
    const auto [out, in] = projection_shape(c, p);
    sum += (out * in + 63) / 64 * 64;
  }
  EXPECT_EQ(layer.shape.numel(), sum);
  // Norms and lm_head stay 16-bit; the frozen embedding stays in host memory, but not when it
  // is also the LM head.
  EXPECT_EQ(plan.at("lm_head.weight").dtype, DType::kBF16);
  EXPECT_FALSE(plan.contains("model.embed_tokens.weight"));
  ModelConfig tied = c;
  tied.tie_word_embeddings = true;
  EXPECT_TRUE(plan_transformer(tied, TrainMode::kLora, lora, shape, DType::kBF16)
                  .contains("model.embed_tokens.weight"));
  EXPECT_EQ(plan.at("model.layers.0.input_layernorm.weight").dtype, DType::kBF16);
  // The dequantized layer and the logits chunk never live together: they may share bytes.
  EXPECT_FALSE(layer.lifetime.overlaps(plan.at("loss.logits").lifetime));
  // Without double quantization the absmax is one f32 per block.
  shape.base4->double_quant = false;
  const AllocationPlan single = plan_transformer(c, TrainMode::kLora, lora, shape, DType::kBF16);
  EXPECT_EQ(single.at(q + ".absmax").dtype, DType::kF32);
  EXPECT_FALSE(single.contains(q + ".nested_absmax"));
  // The packed base is far smaller than the 16-bit one.
  RunShape dense = shape;
  dense.base4.reset();
  EXPECT_LT(plan.total_bytes(),
            plan_transformer(c, TrainMode::kLora, lora, dense, DType::kBF16).total_bytes());
}

// prepare_layer(l) dequantizes a sparse layer's experts into base4.layer: gate_up and down (the
// tensors the expert GEMMs read) hold exactly the host reference's round trip of the flat fused
// tensor (quant::quantize4, quant::dequantize4, rounded to the checkpoint dtype), for every
// layout; the router is 16-bit, untouched; a dense layer's MLP projections are dequantized too.
TEST(Base4, ExpertsDequantizeToTheHostReferenceRoundTrip) {
  using Q = quant::QuantType;
  for (const Base4Layout layout :
       {Base4Layout{}, Base4Layout{Q::kNF4, 64, false}, Base4Layout{Q::kFP4, 128, true}}) {
    SCOPED_TRACE(fmt::format("{} bs={} dq={}", quant::quant_type_name(layout.type),
                             layout.blocksize, layout.double_quant));
    auto be = make_backend("cpu");
    RunShape shape;
    shape.max_tokens = 8;
    shape.base4 = layout;
    const ModelConfig c = config("Qwen3MoeForCausalLM");
    Transformer m(*be, c, TrainMode::kFrozen, LoraConfig{}, shape);
    std::mt19937 rng(11);
    std::normal_distribution<float> n(0.0f, 0.1f);
    std::map<std::string, std::vector<float>> want;  // by name: the reference round trip
    for (auto& [name, q] : m.quantized_weights()) {
      std::vector<float> w(static_cast<size_t>(q->numel()));
      for (float& v : w) v = n(rng);
      const quant::Quantized4 h =
          quant::quantize4(w, layout.type, layout.blocksize, layout.double_quant);
      upload_quant4(*be, h, *q, name, "test");
      q->round_to = DType::kBF16;
      quant::dequantize4(h, w);
      round_to_storage(w, DType::kBF16);
      want[name] = w;
    }
    const int64_t e = c.moe.num_experts, ie = c.moe.expert_intermediate_size, h = c.hidden_size;
    auto download = [&](const Tensor& t) {
      std::vector<float> out(static_cast<size_t>(t.numel()));
      be->download(t, out.data());
      return out;
    };
    for (int l = 0; l < c.num_layers; ++l) {
      m.prepare_layer(l);
      const LayerWeights& L = m.layer(l);
      const std::string p = fmt::format("model.layers.{}.", l);
      if (c.sparse_layer(l)) {
        EXPECT_EQ(L.moe.gate_up.shape, (Shape{e, 2 * ie, h}));
        EXPECT_EQ(L.moe.down.shape, (Shape{e, h, ie}));
        EXPECT_EQ(download(L.moe.gate_up), want.at(p + "mlp.experts.gate_up_proj")) << l;
        EXPECT_EQ(download(L.moe.down), want.at(p + "mlp.experts.down_proj")) << l;
        EXPECT_EQ(L.moe.router.dtype, DType::kF32);  // the compute dtype, not packed
        EXPECT_FALSE(want.count(p + "mlp.gate.weight"));
      } else {
        EXPECT_TRUE(L.moe.gate_up.empty());
        for (Projection pr : {Projection::kGate, Projection::kUp, Projection::kDown})
          EXPECT_EQ(download(L[pr].w), want.at(p + projection_module(pr) + ".weight")) << l;
      }
      EXPECT_EQ(download(L[Projection::kQ].w), want.at(p + "self_attn.q_proj.weight")) << l;
      EXPECT_EQ(download(L[Projection::kO].w), want.at(p + "self_attn.o_proj.weight")) << l;
    }
    EXPECT_EQ(want.size(), 2u * 2 + 4u * 3 + 3u);  // experts of 2 sparse layers, 3 attentions,
                                                   // one dense MLP
  }
}

// A mixture of experts with a 4-bit base: every expert tensor is packed (nibbles, absmax codes,
// nested absmax of the flat fused tensor), the router stays in the compute dtype, and base4.layer
// holds the attention plus the larger of the model's MLPs (experts, or a dense layer's).
TEST(Base4, PlanPacksTheExpertsAndHoldsOneDequantizedLayer) {
  for (const std::string arch : {"Qwen3MoeForCausalLM", "MixtralForCausalLM"}) {
    SCOPED_TRACE(arch);
    const ModelConfig c = config(arch);
    RunShape shape;
    shape.max_tokens = 64;
    shape.recompute = RecomputePolicy::kFull;
    shape.with_optimizer = true;
    shape.base4 = Base4Layout{};
    const AllocationPlan plan =
        plan_transformer(c, TrainMode::kLora, LoraConfig{}, shape, DType::kBF16);
    const int64_t e = c.moe.num_experts, ie = c.moe.expert_intermediate_size, h = c.hidden_size;
    auto align = [](int64_t x) { return (x + 63) / 64 * 64; };
    int64_t packed_bytes = 0, attention = 0;
    for (Projection p : {Projection::kQ, Projection::kK, Projection::kV, Projection::kO}) {
      const auto [out, in] = projection_shape(c, p);
      attention += align(out * in);
    }
    auto expect_packed = [&](const std::string& name, int64_t n) {
      const int64_t blocks = (n + 63) / 64, nested = (blocks + 255) / 256;
      EXPECT_EQ(plan.at(name).dtype, DType::kU8) << name;
      EXPECT_EQ(plan.at(name).shape.numel(), (n + 1) / 2) << name;
      EXPECT_EQ(plan.at(name + ".absmax").shape.numel(), blocks) << name;
      EXPECT_EQ(plan.at(name + ".nested_absmax").shape.numel(), nested) << name;
      packed_bytes += (n + 1) / 2 + blocks + 4 * nested + 4 * 256;
    };
    int64_t dense_mlp = 0;
    for (int l = 0; l < c.num_layers; ++l) {
      const std::string p = fmt::format("model.layers.{}.", l);
      for (Projection pr : kAllProjections) {
        if (c.sparse_layer(l) && projection_in_mlp(pr)) continue;
        const auto [out, in] = projection_shape(c, pr);
        expect_packed(p + projection_module(pr) + ".weight", out * in);
      }
      if (!c.sparse_layer(l)) {
        dense_mlp = 3 * align(c.intermediate_size * h);
        continue;
      }
      expect_packed(p + "mlp.experts.gate_up_proj", e * 2 * ie * h);
      expect_packed(p + "mlp.experts.down_proj", e * h * ie);
      EXPECT_EQ(plan.at(p + "mlp.gate.weight").dtype, DType::kBF16);
      EXPECT_EQ(plan.at(p + "mlp.gate.weight").group, "weights");
    }
    int64_t grouped = 0;
    for (const auto& [group, bytes] : plan.group_totals())
      if (group == "weights.4bit") grouped = static_cast<int64_t>(bytes);
    EXPECT_EQ(grouped, packed_bytes);  // every packed byte, nothing else (the plan's alignment
                                       // padding is not in the group totals)
    const BufferSpec& layer = plan.at(kBase4Layer);
    const int64_t experts = align(e * 2 * ie * h) + align(e * h * ie);
    EXPECT_EQ(layer.shape.numel(), attention + std::max(experts, dense_mlp));
    EXPECT_EQ(layer.dtype, DType::kBF16);
    const Base4LayerLayout bl = base4_layer_layout(c);
    EXPECT_EQ(bl.gate_up, attention);
    EXPECT_EQ(bl.down, attention + align(e * 2 * ie * h));
    EXPECT_FALSE(layer.lifetime.overlaps(plan.at("loss.logits").lifetime));
    // The 4-bit base is far smaller than the 16-bit one.
    RunShape dense = shape;
    dense.base4.reset();
    EXPECT_LT(
        plan.total_bytes(),
        plan_transformer(c, TrainMode::kLora, LoraConfig{}, dense, DType::kBF16).total_bytes());
  }
}

TEST(Base4, FullFineTuningOfA4BitBaseIsRefused) {
  RunShape shape;
  shape.max_tokens = 16;
  shape.base4 = Base4Layout{};
  try {
    plan_transformer(config("LlamaForCausalLM"), TrainMode::kFull, LoraConfig{}, shape,
                     DType::kBF16);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::kBadInput);
    EXPECT_NE(std::string(e.what()).find("full fine-tuning of a 4-bit base"), std::string::npos);
  }
}

}  // namespace
}  // namespace fitlm
