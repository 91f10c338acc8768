// Pipeline stages (RunShape::stage): a model split into stages — each keeping only its layers,
// the first the embedding, the last the final norm, LM head and loss — run in a 1F1B schedule,
// must compute exactly what the whole model computes. Here the stages live in one process and
// hand each other their hidden states and gradients through host copies (what send/recv does
// between ranks); on the f32 CPU backend every loss and every gradient must equal the whole
// model's bit for bit: LoRA (with dropout), QLoRA, full fine-tuning, Qwen3's q/k norms, recompute
// of all, some or no layers, offloaded activations, lifetimes checked. Each stage plans only its
// share of the weights, and never holds more micro-batches than its slots.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>

#include "../text/test_temp_dir.h"
#include "fitlm/backend/registry/make_backend.h"
#include "fitlm/core/error.h"
#include "fitlm/dist/pipeline_schedule.h"
#include "fitlm/io/hf_model.h"
#include "fitlm/io/safetensors.h"
#include "fitlm/model/transformer.h"
#include "fitlm/model/transformer_buffers.h"
#include "random_checkpoint.h"

namespace fitlm {
namespace {

namespace fs = std::filesystem;

struct Case {
  std::string arch = "LlamaForCausalLM";
  TrainMode mode = TrainMode::kLora;
  std::optional<Base4Layout> base4;
  int recompute_layers = -2;  // -2: save every layer; -1: recompute all; n: the first n
  float dropout = 0.0f;
  bool offload_activations = false;
  bool check_lifetimes = false;
  bool tied = false;
};

std::string describe(const Case& k) {
  return fmt::format("{} mode={} base4={} recompute={} dropout={} offload={} check={} tied={}",
                     k.arch, static_cast<int>(k.mode), k.base4.has_value(), k.recompute_layers,
                     k.dropout, k.offload_activations, k.check_lifetimes, k.tied);
}

constexpr int kLayers = 4;
constexpr int64_t kMaxTokens = 24;

fs::path write_checkpoint(const fs::path& dir, const Case& k) {
  nlohmann::json cfg = {{"architectures", {k.arch}},
                        {"vocab_size", 97},
                        {"hidden_size", 48},
                        {"intermediate_size", 72},
                        {"num_hidden_layers", kLayers},
                        {"num_attention_heads", 4},
                        {"num_key_value_heads", 2},
                        {"rms_norm_eps", 1e-5},
                        {"rope_theta", 10000.0},
                        {"tie_word_embeddings", k.tied}};
  if (k.arch == "Qwen3ForCausalLM") cfg["head_dim"] = 16;
  test::write_random_checkpoint(dir, cfg, io::StDType::kBF16);
  return dir;
}

std::unique_ptr<Transformer> make_model(Backend& be, const fs::path& dir, const Case& k,
                                        std::optional<RunShape::Stage> stage) {
  RunShape shape;
  shape.max_tokens = kMaxTokens;
  shape.logits_chunk = 8;
  shape.with_optimizer = true;
  shape.check_lifetimes = k.check_lifetimes;
  shape.cast_lora_per_layer_on_f32 = true;
  shape.base4 = k.base4;
  if (k.recompute_layers >= -1) {
    shape.recompute = RecomputePolicy::kFull;
    shape.recompute_layers = k.recompute_layers;
  }
  shape.offload_activations = k.offload_activations;
  shape.stage = stage;
  LoraConfig lora;
  lora.r = 4;
  lora.alpha = 8;
  lora.dropout = k.dropout;
  auto m = std::make_unique<Transformer>(be, read_model_config(dir), k.mode, lora, shape);
  load_model_weights(*m, dir);
  // Trainable values drawn per tensor name, so a stage gets the whole model's values of its
  // tensors.
  test::randomize_params_by_name(be, *m, 0.1f);
  return m;
}

std::vector<TokenBatch> micro_batches() {
  std::mt19937 rng(9);
  std::vector<TokenBatch> out;
  for (const std::vector<int32_t>& cu :
       {std::vector<int32_t>{0, 11, 24}, {0, 17}, {0, 5, 9, 20}, {0, 24}}) {
    TokenBatch b;
    b.cu_seqlens = cu;
    for (int i = 0; i < cu.back(); ++i) b.input_ids.push_back(static_cast<int32_t>(rng() % 97));
    b.labels = b.input_ids;
    b.labels[3] = -100;  // an unscored position
    out.push_back(b);
  }
  return out;
}

uint64_t seed_of(size_t m) {
  return 1000 + m;
}

struct Outputs {
  std::vector<double> losses, eval_losses;
  std::map<std::string, std::vector<float>> grads;
};

void collect_grads(Backend& be, Transformer& m, Outputs& out) {
  for (Param& p : m.params()) {
    std::vector<float>& g = out.grads[p.name];
    g.resize(static_cast<size_t>(p.grad.numel()));
    be.download(p.grad, g.data());
  }
}

Outputs run_whole(Backend& be, Transformer& m, const std::vector<TokenBatch>& micro) {
  Outputs out;
  for (size_t i = 0; i < micro.size(); ++i) {
    m.set_dropout_seed(seed_of(i));
    out.losses.push_back(m.forward_backward(micro[i], 1.0f / 24).loss_sum);
  }
  collect_grads(be, m, out);
  m.set_dropout_seed(0);
  for (const TokenBatch& b : micro) out.eval_losses.push_back(m.forward_loss(b).loss_sum);
  return out;
}

std::vector<float> download(Backend& be, const Tensor& t) {
  std::vector<float> h(static_cast<size_t>(t.numel()));
  be.download(t, h.data());
  return h;
}

// Runs the stages' schedules to completion, each op as soon as what it receives exists (a
// stage's op list is its program; the loop plays the network). Checks that no stage ever holds
// more micro-batches between forward and backward than its slots.
Outputs run_pipeline(Backend& be, std::vector<std::unique_ptr<Transformer>>& stages,
                     const std::vector<TokenBatch>& micro) {
  const int n = static_cast<int>(stages.size());
  std::vector<std::vector<dist::PipelineOp>> program;
  for (int s = 0; s < n; ++s)
    program.push_back(dist::one_f_one_b(s, n, static_cast<int>(micro.size())));
  std::vector<size_t> pc(static_cast<size_t>(n), 0);
  std::vector<int> in_flight(static_cast<size_t>(n), 0);
  // hidden[s][m]: the hidden state stage s sent stage s+1; grad[s][m]: ∂L/∂ stage s's input.
  std::vector<std::map<int, std::vector<float>>> hidden(n), grad(n);
  Outputs out;
  out.losses.assign(micro.size(), 0.0);
  for (bool progress = true; progress;) {
    progress = false;
    for (int s = 0; s < n; ++s) {
      if (pc[s] == program[s].size()) continue;
      const dist::PipelineOp op = program[s][pc[s]];
      const TokenBatch& b = micro[static_cast<size_t>(op.micro)];
      const int64_t t = static_cast<int64_t>(b.input_ids.size());
      Transformer& m = *stages[s];
      const int slot = op.slot;
      const bool last = s + 1 == n;
      if (op.forward && s > 0 && !hidden[s - 1].count(op.micro)) continue;  // not received yet
      if (!op.forward && !grad[s + 1].count(op.micro)) continue;
      m.set_dropout_seed(seed_of(static_cast<size_t>(op.micro)));
      if (op.forward) {
        if (s > 0) be.upload(m.stage_input(slot, t), hidden[s - 1][op.micro].data(), DType::kF32);
        if (last) {
          out.losses[static_cast<size_t>(op.micro)] = m.forward_backward(b, 1.0f / 24).loss_sum;
          grad[s][op.micro] = download(be, m.stage_gradient(t));
        } else {
          m.stage_forward(b, slot, /*keep_for_backward=*/true);
          hidden[s][op.micro] = download(be, m.stage_output(t));
          EXPECT_LE(++in_flight[s], m.shape().stage->in_flight) << "stage " << s;
        }
      } else {
        be.upload(m.stage_gradient(t), grad[s + 1][op.micro].data(), DType::kF32);
        m.stage_backward(b, slot);
        grad[s][op.micro] = download(be, m.stage_gradient(t));
        --in_flight[s];
      }
      ++pc[s];
      progress = true;
    }
  }
  for (int s = 0; s < n; ++s) EXPECT_EQ(pc[s], program[s].size()) << "stage " << s << " stuck";
  for (auto& m : stages) collect_grads(be, *m, out);
  // Evaluation: forwards only, nothing kept.
  for (const TokenBatch& b : micro) {
    const int64_t t = static_cast<int64_t>(b.input_ids.size());
    std::vector<float> h;
    for (int s = 0; s < n; ++s) {
      Transformer& m = *stages[s];
      m.set_dropout_seed(0);
      if (s > 0) be.upload(m.stage_input(0, t), h.data(), DType::kF32);
      if (s + 1 == n) {
        out.eval_losses.push_back(m.forward_loss(b).loss_sum);
      } else {
        m.stage_forward(b, 0, /*keep_for_backward=*/false);
        h = download(be, m.stage_output(t));
      }
    }
  }
  return out;
}

std::vector<RunShape::Stage> split(const std::vector<int>& sizes) {
  std::vector<RunShape::Stage> out;
  int first = 0;
  for (size_t s = 0; s < sizes.size(); ++s) {
    const int stages = static_cast<int>(sizes.size());
    out.push_back(
        {first, first + sizes[s], dist::one_f_one_b_in_flight(static_cast<int>(s), stages, 4)});
    first += sizes[s];
  }
  return out;
}

TEST(PipelineStages, StagesComputeExactlyWhatTheWholeModelComputes) {
  auto be = make_backend("cpu");
  using Q = quant::QuantType;
  const std::vector<Case> cases = {
      {},
      {.recompute_layers = -1},
      {.recompute_layers = 3, .dropout = 0.1f},
      {.arch = "Qwen3ForCausalLM", .recompute_layers = -1, .check_lifetimes = true},
      {.base4 = Base4Layout{Q::kNF4, 64, true}, .recompute_layers = -1},
      {.mode = TrainMode::kFull},
      {.mode = TrainMode::kFull, .recompute_layers = 1, .offload_activations = true},
      {.recompute_layers = -1, .offload_activations = true, .check_lifetimes = true},
      {.dropout = 0.1f, .check_lifetimes = true, .tied = true},
  };
  const std::vector<TokenBatch> micro = micro_batches();
  for (const Case& k : cases) {
    SCOPED_TRACE(describe(k));
    test::TempDir tmp("pipeline_stage");
    const fs::path dir = write_checkpoint(tmp.path() / "model", k);
    const Outputs want = run_whole(*be, *make_model(*be, dir, k, std::nullopt), micro);
    for (const std::vector<int>& sizes : {std::vector<int>{2, 2}, {1, 2, 1}, {3, 1}}) {
      SCOPED_TRACE(fmt::format("stage sizes {}", fmt::join(sizes, ",")));
      std::vector<std::unique_ptr<Transformer>> stages;
      for (const RunShape::Stage& st : split(sizes)) stages.push_back(make_model(*be, dir, k, st));
      const Outputs got = run_pipeline(*be, stages, micro);
      EXPECT_EQ(got.losses, want.losses);
      EXPECT_EQ(got.eval_losses, want.eval_losses);
      ASSERT_EQ(got.grads.size(), want.grads.size());
      for (const auto& [name, g] : want.grads) {
        ASSERT_TRUE(got.grads.count(name)) << name;
        EXPECT_EQ(got.grads.at(name), g) << name;
      }
    }
  }
}

// Each stage plans its own layers' weights and adapters, the embedding only on the first (and
// the last, when tied), the head only on the last, and one slot of inputs per micro-batch in
// flight: the stages' weight bytes add up to the whole model's.
TEST(PipelineStages, EachStagePlansOnlyItsShare) {
  test::TempDir tmp("pipeline_plan");
  const fs::path dir = write_checkpoint(tmp.path() / "model", Case{});
  const ModelConfig c = read_model_config(dir);
  LoraConfig lora;
  lora.r = 4;
  auto weights = [](const AllocationPlan& p) {
    size_t n = 0;
    for (const BufferSpec& b : p.buffers())
      // (Not lora.layer: every stage casts its adapters into one layer's buffer of its own.)
      if ((b.group == "weights" || b.group == "lora") && b.name != kLoraLayer) n += b.bytes;
    return n;
  };
  RunShape whole;
  whole.max_tokens = kMaxTokens;
  whole.with_optimizer = true;
  const AllocationPlan full = plan_transformer(c, TrainMode::kLora, lora, whole, DType::kBF16);
  size_t sum = 0;
  for (const RunShape::Stage& st : split({1, 2, 1})) {
    RunShape shape = whole;
    shape.stage = st;
    const AllocationPlan p = plan_transformer(c, TrainMode::kLora, lora, shape, DType::kBF16);
    sum += weights(p);
    EXPECT_EQ(p.contains("model.embed_tokens.weight"), st.first_layer == 0);
    EXPECT_EQ(p.contains("lm_head.weight"), st.end_layer == kLayers);
    EXPECT_EQ(p.contains("loss.logits"), st.end_layer == kLayers);
    for (int l = 0; l < kLayers; ++l) {
      const bool mine = l >= st.first_layer && l < st.end_layer;
      EXPECT_EQ(p.contains(fmt::format("model.layers.{}.self_attn.q_proj.weight", l)), mine);
      for (int s = 0; s < 4; ++s)
        EXPECT_EQ(p.contains(layer_input_name(l, s)), mine && s < st.in_flight) << l << " " << s;
    }
  }
  // Padding of the flat LoRA buffer per stage may add a little; nothing is planned twice.
  EXPECT_GE(sum, weights(full));
  EXPECT_LE(sum, weights(full) + 3 * 64 * 4);
}

TEST(PipelineStages, BadStagesAreRefused) {
  test::TempDir tmp("pipeline_bad");
  Case tied;
  tied.tied = true;
  const fs::path dir = write_checkpoint(tmp.path() / "model", tied);
  const ModelConfig c = read_model_config(dir);
  LoraConfig lora;
  lora.r = 4;
  auto refused = [&](TrainMode mode, RunShape::Stage st, const char* why) {
    RunShape shape;
    shape.max_tokens = kMaxTokens;
    shape.stage = st;
    try {
      plan_transformer(c, mode, lora, shape, DType::kF32);
      ADD_FAILURE() << "planned: " << why;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ExitCode::kBadInput);
      EXPECT_NE(e.message().find(why), std::string::npos) << e.message();
    }
  };
  refused(TrainMode::kLora, {2, 2, 1}, "layers [2, 2)");
  refused(TrainMode::kLora, {0, 5, 1}, "of a 4-layer model");
  refused(TrainMode::kLora, {0, 2, 0}, "with 0 in flight");
  refused(TrainMode::kFull, {0, 2, 2}, "tied embeddings over pipeline stages");
}

}  // namespace
}  // namespace fitlm
