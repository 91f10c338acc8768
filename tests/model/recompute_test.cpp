// Recompute policies on the CPU reference: keeping every layer, recomputing every layer and
// recomputing only some must give bit-identical losses and gradients (recompute replays the
// same ops on the same inputs), while the plans shrink as more layers are recomputed.
#include <gtest/gtest.h>

#include <random>

#include "fitlm/model/transformer.h"
#include "model_test_util.h"

namespace fitlm {
namespace {

ModelConfig tiny_llama() {
  nlohmann::json j = {{"architectures", {"LlamaForCausalLM"}},
                      {"vocab_size", 211},
                      {"hidden_size", 64},
                      {"intermediate_size", 96},
                      {"num_hidden_layers", 4},
                      {"num_attention_heads", 4},
                      {"num_key_value_heads", 2},
                      {"rms_norm_eps", 1e-5},
                      {"rope_theta", 10000.0},
                      {"tie_word_embeddings", false}};
  return ModelConfig::from_json(j, "test");
}

std::vector<std::vector<float>> grads_of(Backend& be, const RunShape& shape, TrainMode mode,
                                         double* loss) {
  const ModelConfig c = tiny_llama();
  LoraConfig lora;
  lora.r = 4;
  lora.alpha = 8;
  Transformer m(be, c, mode, lora, shape);
  std::mt19937 rng(3);
  model_test::randomize_weights(be, m, rng);
  TokenBatch b;
  b.cu_seqlens = {0, 13, 40};
  for (int i = 0; i < 40; ++i) b.input_ids.push_back(static_cast<int32_t>(rng() % 211));
  b.labels = b.input_ids;
  m.zero_grads();
  *loss = m.forward_backward(b, 1.0f / 40).loss_sum;
  std::vector<std::vector<float>> out;
  for (Param& p : m.params()) {
    out.emplace_back(static_cast<size_t>(p.grad.numel()));
    be.download(p.grad, out.back().data());
  }
  return out;
}

TEST(Recompute, PartialAndFullAreBitIdenticalToSaving) {
  auto be = make_backend("cpu");
  for (TrainMode mode : {TrainMode::kLora, TrainMode::kFull}) {
    RunShape shape;
    shape.max_tokens = 40;
    shape.logits_chunk = 16;
    double ref_loss = 0;
    const auto ref = grads_of(*be, shape, mode, &ref_loss);
    for (int n : {-1, 0, 1, 3}) {
      shape.recompute = RecomputePolicy::kFull;
      shape.recompute_layers = n;
      double loss = 0;
      const auto got = grads_of(*be, shape, mode, &loss);
      EXPECT_EQ(loss, ref_loss) << n;
      ASSERT_EQ(got.size(), ref.size());
      for (size_t i = 0; i < ref.size(); ++i)
        EXPECT_EQ(got[i], ref[i]) << "layers " << n << " param " << i;
    }
  }
}

TEST(Recompute, FitPicksTheFewestRecomputedLayersUnderTheCap) {
  const ModelConfig c = tiny_llama();
  LoraConfig lora;
  lora.r = 4;
  RunShape shape;
  shape.max_tokens = 512;
  shape.with_optimizer = true;
  std::vector<size_t> bytes;
  for (int n = 0; n <= c.num_layers; ++n) {
    RunShape s = shape;
    s.recompute = RecomputePolicy::kFull;
    s.recompute_layers = n;
    bytes.push_back(plan_transformer(c, TrainMode::kLora, lora, s, DType::kF32).total_bytes());
    // Recomputing one layer saves little (it needs the shared set, as big as its own, which
    // only shares bytes with the loss head and backward scratch); every further recomputed
    // layer saves one set.
    if (n == 1) {
      EXPECT_LE(bytes[n], bytes[n - 1]);
    }
    if (n > 1) {
      EXPECT_LT(bytes[n], bytes[n - 1]) << n;
    }
  }
  // A cap between the plans for 2 and 1 recomputed layers → 2.
  const auto fit =
      fit_recompute(c, TrainMode::kLora, lora, shape, DType::kF32, (bytes[1] + bytes[2]) / 2);
  ASSERT_TRUE(fit.has_value());
  EXPECT_EQ(fit->recompute_layers, 2);
  EXPECT_FALSE(fit_recompute(c, TrainMode::kLora, lora, shape, DType::kF32, bytes.back() - 1));
  EXPECT_EQ(
      fit_recompute(c, TrainMode::kLora, lora, shape, DType::kF32, bytes[0])->recompute_layers, 0);
}

}  // namespace
}  // namespace fitlm
