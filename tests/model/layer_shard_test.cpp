// ZeRO-3 for LoRA and QLoRA (RunShape::layer_shard): each rank keeps only its shard of every
// decoder layer's linear weights and biases and gathers a layer's blob before it runs. On the
// f32 CPU backend, N sharded models (ranks 0..N−1, loaded from the same checkpoint, each
// gathering the other models' shards of the layer in-process, as an all-gather would) must
// compute exactly what one unsharded model computes: losses, every LoRA gradient, logits and
// the incremental decoder's logits, bit for bit (the gather is a copy). Each rank's plan holds
// about 1/N of the layers' weight bytes.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>

#include "fitlm/backend/profiling_backend.h"
#include "fitlm/core/error.h"
#include "fitlm/infer/decoder.h"
#include "fitlm/io/hf_model.h"
#include "fitlm/io/quantize_model.h"
#include "fitlm/io/safetensors.h"
#include "fitlm/model/transformer.h"
#include "fitlm/model/transformer_buffers.h"
#include "random_checkpoint.h"

namespace fitlm {
namespace {

namespace fs = std::filesystem;

nlohmann::json config_json(const std::string& arch) {
  nlohmann::json j = {{"architectures", {arch}},  {"vocab_size", 97},
                      {"hidden_size", 48},        {"intermediate_size", 72},
                      {"num_hidden_layers", 3},   {"num_attention_heads", 4},
                      {"num_key_value_heads", 2}, {"rms_norm_eps", 1e-5},
                      {"rope_theta", 10000.0},    {"tie_word_embeddings", false}};
  if (arch == "Qwen3ForCausalLM") j["head_dim"] = 16;
  return j;
}

class TempDir {
 public:
  explicit TempDir(const std::string& tag) {
    static int counter = 0;
    path_ = fs::temp_directory_path() /
            fmt::format("fitlm_layer_shard_{}_{}_{}", ::getpid(), tag, counter++);
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// A Hugging Face directory with random weights (N(0, 0.1), norms 1 + N(0, 0.1)) in `dtype`.
// `bad_shape`: that tensor gets one row too many.
void write_model(const fs::path& dir, const nlohmann::json& cfg, io::StDType dtype,
                 const std::string& bad_shape = "") {
  test::write_random_checkpoint(dir, cfg, dtype, 0.1f, bad_shape);
}

struct Case {
  std::string arch = "LlamaForCausalLM";
  io::StDType file_dtype = io::StDType::kBF16;
  std::optional<Base4Layout> base4 =
      std::nullopt;           // quantized on load, or with prequantized from the file
  bool prequantized = false;  // a bitsandbytes checkpoint (fitlm quantize)
  TrainMode mode = TrainMode::kLora;
  int recompute_layers = -2;  // -2: save every layer
  bool cast_per_layer = true;
};

std::string describe(const Case& k) {
  return fmt::format("{} file={} base4={} bs={} dq={} prequantized={} mode={} recompute={}", k.arch,
                     io::st_dtype_name(k.file_dtype),
                     k.base4 ? quant::quant_type_name(k.base4->type) : "none",
                     k.base4 ? k.base4->blocksize : 0, k.base4 && k.base4->double_quant,
                     k.prequantized, static_cast<int>(k.mode), k.recompute_layers);
}

struct Outputs {
  std::vector<double> losses;
  std::vector<std::vector<float>> grads;
  std::vector<float> logits, decoded;
};

RunShape run_shape(const Case& k, std::optional<ShardSpec> shard, bool check_lifetimes,
                   bool offload = false, bool offload_activations = false) {
  RunShape shape;
  shape.max_tokens = 24;
  shape.logits_chunk = 8;
  shape.with_optimizer = true;
  shape.check_lifetimes = check_lifetimes;
  shape.cast_lora_per_layer_on_f32 = k.cast_per_layer;
  if (k.recompute_layers >= -1) {
    shape.recompute = RecomputePolicy::kFull;
    shape.recompute_layers = k.recompute_layers;
  }
  shape.base4 = k.base4;
  shape.layer_shard = shard;
  shape.offload_layers = offload;
  shape.offload_activations = offload_activations;
  return shape;
}

LoraConfig lora_config() {
  LoraConfig lora;
  lora.r = 4;
  lora.alpha = 8;
  return lora;
}

std::unique_ptr<Transformer> make_model(Backend& be, const fs::path& dir, const Case& k,
                                        std::optional<ShardSpec> shard, bool check_lifetimes,
                                        bool offload = false, bool offload_activations = false) {
  auto m = std::make_unique<Transformer>(
      be, read_model_config(dir), k.mode, lora_config(),
      run_shape(k, shard, check_lifetimes, offload, offload_activations));
  load_model_weights(*m, dir);
  // Non-zero LoRA masters (B too), the same draws in every model, so every gradient is non-zero.
  std::mt19937 rng(3);
  std::normal_distribution<float> n(0.0f, 0.1f);
  for (Param& p : m->params()) {
    std::vector<float> h(static_cast<size_t>(p.master.numel()));
    for (float& v : h) v = n(rng);
    be.upload(p.master, h.data(), DType::kF32);
    if (p.value.data != p.master.data) be.copy(p.master, p.value);
  }
  return m;
}

TokenBatch batch(std::mt19937& rng, std::vector<int32_t> cu) {
  TokenBatch b;
  b.cu_seqlens = cu;
  for (int i = 0; i < cu.back(); ++i) b.input_ids.push_back(static_cast<int32_t>(rng() % 97));
  b.labels = b.input_ids;
  return b;
}

Outputs run(Backend& be, Transformer& m) {
  std::mt19937 rng(9);
  const TokenBatch b1 = batch(rng, {0, 11, 24}), b2 = batch(rng, {0, 17});
  Outputs out;
  if (m.mode() != TrainMode::kFrozen) {
    out.losses.push_back(m.forward_backward(b1, 1.0f / 24).loss_sum);
    out.losses.push_back(m.forward_backward(b2, 1.0f / 17).loss_sum);
    for (Param& p : m.params()) {
      out.grads.emplace_back(static_cast<size_t>(p.grad.numel()));
      be.download(p.grad, out.grads.back().data());
    }
  }
  out.losses.push_back(m.forward_loss(b1).loss_sum);
  out.logits = m.logits(b2);
  if (m.mode() == TrainMode::kFrozen) {  // the decoder calls prepare_layer, which gathers
    Decoder d(m, {}, DecoderShape{1, 16});
    out.decoded = d.prefill({{3, 1, 4, 1, 5}});
    const std::vector<float> next = d.step(std::vector<int32_t>{9});
    out.decoded.insert(out.decoded.end(), next.begin(), next.end());
  }
  return out;
}

// Model r's gather: every model's shard of the layer whose shard `shard` is, in rank order
// (what Comm::all_gather does across processes). Counts its calls in *calls.
void set_gather(Backend& be, const std::vector<std::unique_ptr<Transformer>>& models, size_t r,
                int* calls) {
  Transformer& self = *models[r];
  self.set_layer_gather([&be, &models, &self, calls](const Tensor& shard, Tensor full) {
    int l = 0;
    while (self.layer_shard(l).data != shard.data) ++l;  // layer_shard throws past the end
    const size_t s = shard.bytes();
    ASSERT_EQ(full.bytes(), s * models.size());
    ASSERT_EQ(full.dtype, DType::kU8);
    for (size_t k = 0; k < models.size(); ++k)
      be.copy(models[k]->layer_shard(l), Tensor(static_cast<char*>(full.data) + k * s, DType::kU8,
                                                Shape{static_cast<int64_t>(s)}, full.device));
    ++*calls;
  });
}

void expect_same(const Outputs& got, const Outputs& want, const std::string& what) {
  EXPECT_EQ(got.losses, want.losses) << what;
  ASSERT_EQ(got.grads.size(), want.grads.size()) << what;
  for (size_t i = 0; i < got.grads.size(); ++i) EXPECT_EQ(got.grads[i], want.grads[i]) << what;
  EXPECT_EQ(got.logits, want.logits) << what;
  EXPECT_EQ(got.decoded, want.decoded) << what;
}

// A checkpoint directory for the case: 16/32-bit, or rewritten 4-bit by `fitlm quantize`.
fs::path checkpoint(const TempDir& tmp, const Case& k) {
  const fs::path dense = tmp.path() / "dense";
  write_model(dense, config_json(k.arch), k.file_dtype);
  if (!k.prequantized) return dense;
  const fs::path q = tmp.path() / "bnb";
  QuantizeOptions o;
  o.type = k.base4->type;
  o.double_quant = k.base4->double_quant;
  o.blocksize = k.base4->blocksize;
  quantize_model(dense, q, o);
  return q;
}

std::vector<Case> exact_cases() {
  using Q = quant::QuantType;
  return {
      {},
      {.file_dtype = io::StDType::kF32, .recompute_layers = 1, .cast_per_layer = false},
      {.arch = "Qwen3ForCausalLM", .recompute_layers = -1},
      {.arch = "Qwen2ForCausalLM"},  // q/k/v biases are sharded too
      {.base4 = Base4Layout{Q::kNF4, 64, true}},
      {.base4 = Base4Layout{Q::kFP4, 64, false}, .recompute_layers = 1},
      {.arch = "Qwen3ForCausalLM", .base4 = Base4Layout{Q::kNF4, 64, true}},
      {.arch = "Qwen3ForCausalLM", .base4 = Base4Layout{Q::kFP4, 128, true}, .prequantized = true},
      {.base4 = Base4Layout{Q::kNF4, 64, true}, .prequantized = true},
      {.arch = "Qwen2ForCausalLM", .base4 = Base4Layout{Q::kNF4, 32, false}},
      {.mode = TrainMode::kFrozen},
      {.arch = "Qwen3ForCausalLM",
       .base4 = Base4Layout{Q::kNF4, 64, true},
       .mode = TrainMode::kFrozen},
  };
}

TEST(LayerShard, ShardedRanksComputeExactlyAsOneUnshardedModel) {
  auto be = make_backend("cpu");
  for (const Case& k : exact_cases()) {
    SCOPED_TRACE(describe(k));
    TempDir tmp("exact");
    const fs::path dir = checkpoint(tmp, k);
    const Outputs want = run(*be, *make_model(*be, dir, k, std::nullopt, false));
    for (double l : want.losses) EXPECT_TRUE(std::isfinite(l));
    for (const auto& g : want.grads)
      EXPECT_TRUE(std::any_of(g.begin(), g.end(), [](float v) { return v != 0.0f; }));
    for (int world : {1, 2, 3}) {
      for (bool check : {false, true}) {
        if (check && world == 2) continue;  // lifetimes: world 1 and 3 are enough
        std::vector<std::unique_ptr<Transformer>> models;
        for (int r = 0; r < world; ++r)
          models.push_back(make_model(*be, dir, k, ShardSpec{r, world}, check));
        std::vector<int> calls(static_cast<size_t>(world), 0);
        // World 1 runs without a gather too: prepare_layer copies the one shard.
        for (size_t r = 0; r < models.size() && world > 1; ++r)
          set_gather(*be, models, r, &calls[r]);
        for (int r = 0; r < world; ++r) {
          const Outputs got = run(*be, *models[static_cast<size_t>(r)]);
          expect_same(got, want, fmt::format("rank {} of {} check_lifetimes={}", r, world, check));
          if (world > 1) {
            EXPECT_GT(calls[static_cast<size_t>(r)], 0);
          }
        }
      }
    }
  }
}

// The bytes the plan gives the decoder layers' sharded tensors: each rank's shards, or an
// unsharded model's linear weights (16-bit or packed) and biases.
size_t layer_weight_bytes(const AllocationPlan& plan) {
  size_t sum = 0;
  for (const BufferSpec& b : plan.buffers()) {
    const bool in_layer = b.name.starts_with("model.layers.");
    const bool linear = b.name.find("_proj.") != std::string::npos;
    if (b.group == "weights.shard" || (in_layer && linear)) sum += b.bytes;
  }
  return sum;
}

TEST(LayerShard, EachRankPlansItsShareOfTheLayerWeights) {
  struct Config {
    nlohmann::json json;
    std::optional<Base4Layout> base4;
  };
  nlohmann::json llama = config_json("LlamaForCausalLM");
  // A small Llama with realistic proportions (hidden 1024, 8 layers): the numbers the report
  // quotes.
  nlohmann::json small = llama;
  small["hidden_size"] = 1024, small["intermediate_size"] = 2816, small["num_hidden_layers"] = 8;
  small["num_attention_heads"] = 16, small["num_key_value_heads"] = 4, small["vocab_size"] = 32000;
  const std::vector<Config> configs = {{llama, std::nullopt},
                                       {llama, Base4Layout{}},
                                       {config_json("Qwen2ForCausalLM"), std::nullopt},
                                       {config_json("Qwen3ForCausalLM"), Base4Layout{}},
                                       {small, std::nullopt},
                                       {small, Base4Layout{}}};
  for (const Config& cfg : configs) {
    const ModelConfig c = ModelConfig::from_json(cfg.json, "test");
    for (DType compute : {DType::kF32, DType::kBF16}) {
      RunShape shape;
      shape.max_tokens = 64;
      shape.base4 = cfg.base4;
      const AllocationPlan whole =
          plan_transformer(c, TrainMode::kLora, lora_config(), shape, compute);
      const size_t unsharded = layer_weight_bytes(whole);
      for (int world : {1, 2, 3, 8}) {
        SCOPED_TRACE(fmt::format("{} base4={} {} world {}", c.architecture_name,
                                 cfg.base4.has_value(), dtype_name(compute), world));
        const LayerShardLayout blob = layer_shard_layout(
            c,
            [&] {
              RunShape s = shape;
              s.layer_shard = ShardSpec{0, world};
              return s;
            }(),
            compute);
        for (int r = 0; r < world; ++r) {
          RunShape s = shape;
          s.layer_shard = ShardSpec{r, world};
          const AllocationPlan plan =
              plan_transformer(c, TrainMode::kLora, lora_config(), s, compute);
          const size_t mine = layer_weight_bytes(plan);
          EXPECT_EQ(mine, blob.shard_bytes * static_cast<size_t>(c.num_layers));
          // Padding only: each tensor's start rounded up to 256 bytes and the blob to world·256.
          const size_t slack = c.num_layers * kLayerBlobAlign * (blob.entries.size() + world);
          EXPECT_GE(mine * world, unsharded);
          EXPECT_LE(mine * world, unsharded + slack);
          EXPECT_EQ(plan.at(kShardLayer).bytes, blob.bytes);
          EXPECT_EQ(plan.at(kShardLayer).group, "gather");
          // Norms and lm_head stay replicated; over several ranks the (untied) embedding goes to
          // the host.
          EXPECT_TRUE(plan.contains("model.layers.0.input_layernorm.weight"));
          EXPECT_TRUE(plan.contains("lm_head.weight"));
          EXPECT_EQ(plan.contains("model.embed_tokens.weight"),
                    world == 1 && whole.contains("model.embed_tokens.weight"));
          EXPECT_FALSE(plan.contains("model.layers.0.self_attn.q_proj.weight"));
          if (cfg.json == small && r == 0)
            std::printf(
                "[layer_shard] %s %s base4=%d world %d: layer weights %s per rank "
                "(unsharded %s), plan total %s (unsharded %s)\n",
                c.architecture_name.c_str(), std::string(dtype_name(compute)).c_str(),
                cfg.base4.has_value(), world, format_bytes(mine).c_str(),
                format_bytes(unsharded).c_str(), format_bytes(plan.total_bytes()).c_str(),
                format_bytes(whole.total_bytes()).c_str());
        }
        EXPECT_EQ(blob.bytes % (kLayerBlobAlign * world), 0u);
        for (const LayerBlobEntry& e : blob.entries) EXPECT_EQ(e.offset % kLayerBlobAlign, 0u);
      }
    }
  }
}

TEST(LayerShard, FullFineTuningIsRefused) {
  const ModelConfig c = ModelConfig::from_json(config_json("LlamaForCausalLM"), "test");
  RunShape shape;
  shape.max_tokens = 16;
  shape.layer_shard = ShardSpec{0, 2};
  try {
    plan_transformer(c, TrainMode::kFull, lora_config(), shape, DType::kF32);
    FAIL() << "full fine-tuning with layer_shard was planned";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::kBadInput);
    EXPECT_NE(e.message().find("full fine-tuning shards with zero2"), std::string::npos)
        << e.message();
  }
  auto be = make_backend("cpu");
  EXPECT_THROW({ Transformer m(*be, c, TrainMode::kFull, lora_config(), shape); }, Error);
}

TEST(LayerShard, NoGatherWithSeveralRanksIsAnError) {
  auto be = make_backend("cpu");
  TempDir tmp("nogather");
  write_model(tmp.path(), config_json("LlamaForCausalLM"), io::StDType::kF32);
  Case k;
  auto m = make_model(*be, tmp.path(), k, ShardSpec{0, 2}, false);
  std::mt19937 rng(1);
  EXPECT_THROW(m->forward_loss(batch(rng, {0, 8})), Error);
}

TEST(LayerShard, LoaderErrorsNameTheFileAndTensor) {
  auto be = make_backend("cpu");
  const std::string bad = "model.layers.1.mlp.down_proj.weight";
  for (bool base4 : {false, true}) {
    TempDir tmp("bad");
    write_model(tmp.path(), config_json("LlamaForCausalLM"), io::StDType::kBF16, bad);
    RunShape shape;
    shape.max_tokens = 16;
    if (base4) shape.base4 = Base4Layout{};
    for (int r : {0, 1}) {  // whether or not the rank's bytes hold any of that tensor
      shape.layer_shard = ShardSpec{r, 2};
      Transformer m(*be, read_model_config(tmp.path()), TrainMode::kLora, lora_config(), shape);
      try {
        load_model_weights(m, tmp.path());
        FAIL() << "a wrong shape was loaded";
      } catch (const Error& e) {
        EXPECT_EQ(e.code(), ExitCode::kBadInput);
        EXPECT_NE(e.message().find(bad), std::string::npos) << e.message();
        EXPECT_NE(e.message().find("model.safetensors"), std::string::npos) << e.message();
      }
    }
  }
}

// Offloaded layers (RunShape::offload_layers): every layer's blob in host memory, copied into
// one of two device buffers before it runs while the next one's copy starts. A stale or
// half-copied buffer would run another layer's weights, so the outputs must equal the resident
// model's bit for bit — with lifetimes checked, the layer buffers poisoned outside them.
TEST(OffloadLayers, OffloadedLayersComputeExactlyAsResidentOnes) {
  auto be = make_backend("cpu");
  for (const Case& k : exact_cases()) {
    SCOPED_TRACE(describe(k));
    TempDir tmp("offload");
    const fs::path dir = checkpoint(tmp, k);
    const Outputs want = run(*be, *make_model(*be, dir, k, std::nullopt, false));
    for (bool check : {false, true}) {
      auto m = make_model(*be, dir, k, std::nullopt, check, /*offload=*/true);
      EXPECT_GT(m->host_bytes(), 0u);
      expect_same(run(*be, *m), want, fmt::format("offloaded, check_lifetimes={}", check));
    }
  }
}

// The copies (Backend::copy_async) a five-layer model with offloaded weights or activations
// makes in one forward_backward and in one forward_loss, whatever is recomputed.
void expect_copies_per_pass(bool weights, bool activations, int64_t train, int64_t eval) {
  auto cpu = make_backend("cpu");
  ProfilingBackend be(*cpu);
  be.set_enabled(true);
  TempDir tmp("copies");
  nlohmann::json cfg = config_json("LlamaForCausalLM");
  cfg["num_hidden_layers"] = 5;  // odd: the first and last layer share a buffer
  write_model(tmp.path(), cfg, io::StDType::kBF16);
  for (int recompute : {-2, 2, -1}) {
    Case k;
    k.recompute_layers = recompute;
    auto m = make_model(be, tmp.path(), k, std::nullopt, false, weights, activations);
    std::mt19937 rng(5);
    const TokenBatch b = batch(rng, {0, 9, 20});
    auto copies = [&] {
      const auto it = be.times().find("copy_async");
      return it == be.times().end() ? int64_t{0} : it->second.calls;
    };
    be.reset();
    m->forward_backward(b, 1.0f / 20);
    EXPECT_EQ(copies(), train) << "recompute " << recompute;
    be.reset();
    m->forward_loss(b);
    EXPECT_EQ(copies(), eval) << "recompute " << recompute;
  }
}

// The copies themselves: each layer once per pass — forward in order, backward in reverse,
// the next one queued while the current one runs — never twice, whatever is recomputed.
TEST(OffloadLayers, EachLayerIsCopiedOncePerPass) {
  expect_copies_per_pass(/*weights=*/true, /*activations=*/false, 10, 5);
}

TEST(OffloadLayers, PlanKeepsLayersInHostMemory) {
  nlohmann::json small = config_json("LlamaForCausalLM");
  small["hidden_size"] = 1024, small["intermediate_size"] = 2816, small["num_hidden_layers"] = 8;
  small["num_attention_heads"] = 16, small["num_key_value_heads"] = 4, small["vocab_size"] = 32000;
  const ModelConfig c = ModelConfig::from_json(small, "test");
  for (const std::optional<Base4Layout>& base4 : {std::optional<Base4Layout>{}, {Base4Layout{}}}) {
    SCOPED_TRACE(fmt::format("base4={}", base4.has_value()));
    RunShape shape;
    shape.max_tokens = 64;
    shape.base4 = base4;
    const AllocationPlan resident =
        plan_transformer(c, TrainMode::kLora, lora_config(), shape, DType::kBF16);
    shape.offload_layers = true;
    const AllocationPlan device =
        plan_transformer(c, TrainMode::kLora, lora_config(), shape, DType::kBF16);
    const AllocationPlan host =
        plan_transformer_host(c, TrainMode::kLora, lora_config(), shape, DType::kBF16);
    const LayerShardLayout blob = layer_shard_layout(c, shape, DType::kBF16);
    EXPECT_EQ(layer_weight_bytes(device), 0u);
    EXPECT_EQ(device.at(kShardLayer).bytes, blob.bytes);
    EXPECT_EQ(device.at(kShardLayerNext).bytes, blob.bytes);
    EXPECT_FALSE(device.contains("model.embed_tokens.weight"));
    EXPECT_TRUE(device.contains("lm_head.weight"));
    size_t blobs = 0;
    for (int l = 0; l < c.num_layers; ++l) blobs += host.at(layer_shard_name(l)).bytes;
    EXPECT_EQ(blobs, blob.bytes * static_cast<size_t>(c.num_layers));
    EXPECT_GE(blobs, layer_weight_bytes(resident));
    EXPECT_TRUE(host.contains("model.embed_tokens.weight"));
    // The device keeps two layers where it kept every one (and no embedding).
    EXPECT_LT(device.total_bytes() + layer_weight_bytes(resident) - 2 * blob.bytes,
              resident.total_bytes());
    std::printf("[offload] base4=%d: device plan %s (resident %s), host %s\n", base4.has_value(),
                format_bytes(device.total_bytes()).c_str(),
                format_bytes(resident.total_bytes()).c_str(),
                format_bytes(host.total_bytes()).c_str());
  }
  RunShape none;
  none.max_tokens = 64;
  EXPECT_EQ(
      plan_transformer_host(c, TrainMode::kLora, lora_config(), none, DType::kBF16).total_bytes(),
      0u);
}

// Offloaded activations (RunShape::offload_activations): every layer's input copied out to host
// memory in forward and back in backward, one layer ahead, through two device buffers. A copy
// that came back stale, from the wrong layer or before it was complete would change every
// gradient, so the outputs must equal the resident model's bit for bit — for LoRA, QLoRA and full
// fine-tuning, with and without recompute, lifetimes checked, and with offloaded weights too
// (both share the transfer queue).
TEST(OffloadActivations, OffloadedInputsComputeExactlyAsResidentOnes) {
  auto be = make_backend("cpu");
  std::vector<Case> cases = exact_cases();
  cases.push_back({.file_dtype = io::StDType::kF32, .mode = TrainMode::kFull});
  cases.push_back({.arch = "Qwen3ForCausalLM", .mode = TrainMode::kFull, .recompute_layers = 1});
  for (const Case& k : cases) {
    SCOPED_TRACE(describe(k));
    TempDir tmp("offload-act");
    const fs::path dir = checkpoint(tmp, k);
    const Outputs want = run(*be, *make_model(*be, dir, k, std::nullopt, false));
    for (bool check : {false, true})
      for (bool weights : {false, true}) {
        if (weights && k.mode == TrainMode::kFull) continue;  // refused (trainable weights)
        auto m =
            make_model(*be, dir, k, std::nullopt, check, weights, /*offload_activations=*/true);
        if (k.mode != TrainMode::kFrozen) {
          EXPECT_GT(m->host_bytes(), 0u);
        }
        expect_same(run(*be, *m), want,
                    fmt::format("activations offloaded, weights offloaded={}, check_lifetimes={}",
                                weights, check));
      }
  }
}

// Each layer's input goes out once in forward and comes back once in backward, whatever is
// recomputed; a forward without backward (eval) copies nothing.
TEST(OffloadActivations, EachInputIsCopiedOutAndBackOnce) {
  expect_copies_per_pass(/*weights=*/false, /*activations=*/true, 10, 0);
}

TEST(OffloadActivations, PlanKeepsLayerInputsInHostMemory) {
  const ModelConfig c = ModelConfig::from_json(config_json("Qwen2ForCausalLM"), "test");
  const int64_t t = 48;
  const size_t input_bytes = static_cast<size_t>(t * c.hidden_size) * 2;
  for (TrainMode mode : {TrainMode::kLora, TrainMode::kFull})
    for (RecomputePolicy recompute : {RecomputePolicy::kSave, RecomputePolicy::kFull}) {
      SCOPED_TRACE(
          fmt::format("mode {} recompute {}", static_cast<int>(mode), static_cast<int>(recompute)));
      RunShape shape;
      shape.max_tokens = t;
      shape.with_optimizer = true;
      shape.recompute = recompute;
      const AllocationPlan resident = plan_transformer(c, mode, lora_config(), shape, DType::kBF16);
      shape.offload_activations = true;
      const AllocationPlan device = plan_transformer(c, mode, lora_config(), shape, DType::kBF16);
      const AllocationPlan host =
          plan_transformer_host(c, mode, lora_config(), shape, DType::kBF16);
      for (int l = 0; l < c.num_layers; ++l) {
        EXPECT_FALSE(device.contains(layer_input_name(l)));
        EXPECT_EQ(host.at(layer_input_name(l)).bytes, input_bytes);
      }
      EXPECT_EQ(host.total_bytes(), input_bytes * static_cast<size_t>(c.num_layers));
      EXPECT_EQ(device.at(kLayerInputEven).bytes, input_bytes);
      EXPECT_EQ(device.at(kLayerInputOdd).bytes, input_bytes);
      // Two inputs on the device where there were one per layer.
      EXPECT_LE(device.total_bytes() + static_cast<size_t>(c.num_layers - 2) * input_bytes,
                resident.total_bytes());
    }
  RunShape frozen;
  frozen.max_tokens = t;
  frozen.offload_activations = true;  // inference keeps no inputs for backward: nothing to offload
  EXPECT_EQ(plan_transformer_host(c, TrainMode::kFrozen, lora_config(), frozen, DType::kBF16)
                .total_bytes(),
            0u);
}

// Optimizer offload: every master and moment in the host plan (the rank's block under
// zero2), none on the device; values and gradients stay there.
TEST(OffloadOptimizer, PlanKeepsMastersAndMomentsInHostMemory) {
  const ModelConfig c = ModelConfig::from_json(config_json("Qwen2ForCausalLM"), "test");
  for (TrainMode mode : {TrainMode::kFull, TrainMode::kLora})
    for (DType compute : {DType::kF32, DType::kBF16})
      for (int world : {1, 2}) {
        SCOPED_TRACE(
            fmt::format("mode {} {} world {}", static_cast<int>(mode), dtype_name(compute), world));
        RunShape shape;
        shape.max_tokens = 32;
        shape.with_optimizer = true;
        if (world > 1) shape.optimizer_shard = ShardSpec{1, world};
        const AllocationPlan resident = plan_transformer(c, mode, lora_config(), shape, compute);
        shape.offload_optimizer = true;
        const AllocationPlan device = plan_transformer(c, mode, lora_config(), shape, compute);
        const AllocationPlan host = plan_transformer_host(c, mode, lora_config(), shape, compute);
        size_t state = 0, grads = 0, kept = 0;
        for (const BufferSpec& b : device.buffers()) {
          EXPECT_NE(b.group, "master") << b.name;
          EXPECT_NE(b.group, "optimizer") << b.name;
          if (b.group == "grads") grads += b.bytes;
        }
        for (const BufferSpec& b : host.buffers()) {
          EXPECT_TRUE(b.group == "master" || b.group == "optimizer") << b.name;
          state += static_cast<size_t>(b.shape.numel()) * 4;
        }
        for (const BufferSpec& b : resident.buffers())
          if (b.group == "grads") kept += static_cast<size_t>(b.shape.numel());
        // master, m and v: 12 bytes per trainable element of the rank's block.
        const size_t per_rank = world == 1 ? kept : 0;
        if (world == 1) EXPECT_EQ(state, 12 * per_rank);
        if (world > 1) EXPECT_LT(state, 12 * kept * 3 / 4);
        EXPECT_EQ(grads, 4 * kept);
        EXPECT_LT(device.total_bytes(), resident.total_bytes());
      }
}

TEST(OffloadLayers, FullFineTuningAndZero3AreRefused) {
  const ModelConfig c = ModelConfig::from_json(config_json("LlamaForCausalLM"), "test");
  RunShape shape;
  shape.max_tokens = 16;
  shape.offload_layers = true;
  auto refused = [&](TrainMode mode, const RunShape& s, const char* why) {
    try {
      plan_transformer(c, mode, lora_config(), s, DType::kF32);
      ADD_FAILURE() << "planned: " << why;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ExitCode::kBadInput);
      EXPECT_NE(e.message().find(why), std::string::npos) << e.message();
    }
  };
  refused(TrainMode::kFull, shape, "full fine-tuning trains those weights");
  shape.layer_shard = ShardSpec{0, 2};
  refused(TrainMode::kLora, shape, "with zero3");
}

}  // namespace
}  // namespace fitlm
