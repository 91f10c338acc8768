// LoRA on a mixture of experts' routers and experts (LoraConfig::moe_targets): the target names,
// the configurations refused, and the PEFT adapter round trip in the names, shapes and layout
// PEFT 0.21 writes (bench/NOTES.md). Gradients are checked against PyTorch by
// tests/model/moe_parity_test.py, lifetimes by tests/model/lifetime_test.cpp.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "fitlm/core/error.h"
#include "fitlm/io/peft_adapter.h"
#include "fitlm/io/safetensors.h"
#include "fitlm/model/transformer.h"
#include "fitlm/model/transformer_buffers.h"
#include "model_test_util.h"

namespace fitlm {
namespace {

namespace fs = std::filesystem;
using M = MoeTarget;

// Qwen3-MoE, layers 0 and 2 sparse (4 experts, top 2), layer 1 dense.
ModelConfig moe_config() {
  const nlohmann::json j = {{"architectures", {"Qwen3MoeForCausalLM"}},
                            {"vocab_size", 67},
                            {"hidden_size", 32},
                            {"intermediate_size", 40},
                            {"moe_intermediate_size", 24},
                            {"num_experts", 4},
                            {"num_experts_per_tok", 2},
                            {"mlp_only_layers", {1}},
                            {"num_hidden_layers", 3},
                            {"num_attention_heads", 4},
                            {"num_key_value_heads", 2},
                            {"head_dim", 8},
                            {"rms_norm_eps", 1e-6},
                            {"rope_theta", 10000.0},
                            {"tie_word_embeddings", false}};
  return ModelConfig::from_json(j, "test");
}

ModelConfig dense_config() {
  const nlohmann::json j = {{"architectures", {"LlamaForCausalLM"}},
                            {"vocab_size", 67},
                            {"hidden_size", 32},
                            {"intermediate_size", 40},
                            {"num_hidden_layers", 2},
                            {"num_attention_heads", 4},
                            {"num_key_value_heads", 2},
                            {"rms_norm_eps", 1e-6},
                            {"rope_theta", 10000.0},
                            {"tie_word_embeddings", false}};
  return ModelConfig::from_json(j, "test");
}

std::string input_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::kBadInput) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "no error";
  return "";
}

TEST(MoeLora, TargetNames) {
  EXPECT_EQ(parse_moe_lora_targets({"q_proj", "gate"}), std::vector<M>{M::kRouter});
  EXPECT_EQ(parse_moe_lora_targets({"experts", "router"}),
            (std::vector<M>{M::kRouter, M::kExpertsGateUp, M::kExpertsDown}));
  EXPECT_EQ(parse_moe_lora_targets({"experts.down_proj", "experts.gate_up_proj"}),
            (std::vector<M>{M::kExpertsGateUp, M::kExpertsDown}));
  EXPECT_TRUE(parse_moe_lora_targets({"gate_proj", "all-linear"}).empty());
  // The dense targets leave the MoE names out; "all-linear" does not include them.
  EXPECT_EQ(parse_lora_targets({"q_proj", "experts", "router"}),
            std::vector<Projection>{Projection::kQ});
  EXPECT_TRUE(parse_lora_targets({"router"}).empty());
  EXPECT_NE(input_error([] { parse_lora_targets({"expert"}); }).find("router (alias gate)"),
            std::string::npos);

  LoraConfig both;
  both.moe_targets = {M::kExpertsGateUp, M::kExpertsDown};
  const std::string p = "base_model.model.model.layers.2.mlp.";
  EXPECT_EQ(peft_moe_tensor_name(2, M::kExpertsGateUp, false, both),
            p + "experts.base_layer.lora_A.weight");
  EXPECT_EQ(peft_moe_tensor_name(2, M::kExpertsDown, true, both), p + "experts.lora_B.weight");
  LoraConfig one;
  one.moe_targets = {M::kExpertsGateUp};
  EXPECT_EQ(peft_moe_tensor_name(2, M::kExpertsGateUp, true, one), p + "experts.lora_B.weight");
  EXPECT_EQ(peft_moe_tensor_name(2, M::kRouter, false, both), p + "gate.lora_A.weight");
}

TEST(MoeLora, RefusedConfigurations) {
  LoraConfig router;
  router.targets = {Projection::kQ};
  router.moe_targets = {M::kRouter};
  const std::string dense = input_error([&] { lora_for_model(dense_config(), router); });
  EXPECT_NE(dense.find("has no sparse layers"), std::string::npos) << dense;
  EXPECT_NE(dense.find("gate.weight"), std::string::npos) << dense;
  LoraConfig dropout = router;
  dropout.moe_targets = {M::kExpertsDown};
  dropout.dropout = 0.1f;
  const std::string d = input_error([&] { lora_for_model(moe_config(), dropout); });
  EXPECT_NE(d.find("lora_dropout 0.1"), std::string::npos) << d;
  // Only MoE targets is a valid LoRA configuration; the plan refuses the same as the model.
  LoraConfig only;
  only.targets = {};
  only.moe_targets = {M::kRouter};
  EXPECT_EQ(lora_for_model(moe_config(), only).moe_targets, std::vector<M>{M::kRouter});
  RunShape shape;
  shape.max_tokens = 8;
  input_error(
      [&] { plan_transformer(dense_config(), TrainMode::kLora, router, shape, DType::kF32); });
}

TEST(MoeLora, LayoutReservesTheSamePlacePerLayer) {
  LoraConfig lc;
  lc.r = 2;
  lc.targets = {Projection::kQ, Projection::kDown};
  lc.moe_targets = {M::kRouter, M::kExpertsGateUp, M::kExpertsDown};
  const ModelConfig c = moe_config();
  const LoraLayout layout = lora_layout(c, lc);
  // Layers 0 and 2: q (2) + the three MoE targets (6); layer 1: q and down (4).
  EXPECT_EQ(layout.slots.size(), 8u + 4u + 8u);
  EXPECT_EQ(layout.total % 3, 0);  // every layer's slice the same size (lora_cast_per_layer)
  for (const LoraSlot& s : layout.slots) {
    EXPECT_EQ(s.offset % 64, 0) << s.name;
    if (s.moe) {
      EXPECT_TRUE(c.sparse_layer(s.layer)) << s.name;
      const MoeLoraShape m = moe_lora_shape(c, *s.moe, lc.r);
      EXPECT_EQ(s.shape, s.is_b ? m.b : m.a) << s.name;
    }
  }
}

struct RoundTrip {
  std::vector<M> moe;
  std::vector<std::string> parameters;  // target_parameters, as PEFT writes them
};

TEST(MoeLora, PeftAdapterRoundTripInPeftLayout) {
  const fs::path dir = fs::temp_directory_path() / ("fitlm_moe_lora_" + std::to_string(getpid()));
  const std::vector<RoundTrip> cases = {
      {{M::kRouter, M::kExpertsGateUp, M::kExpertsDown},
       {"gate.weight", "mlp.experts.gate_up_proj", "mlp.experts.down_proj"}},
      {{M::kExpertsGateUp}, {"mlp.experts.gate_up_proj"}},
      {{M::kRouter, M::kExpertsDown}, {"gate.weight", "mlp.experts.down_proj"}},
  };
  const ModelConfig c = moe_config();
  const int64_t e = 4, h = 32, ie = 24, r = 3;
  for (const RoundTrip& k : cases) {
    SCOPED_TRACE(k.parameters.back());
    fs::remove_all(dir);
    auto be = make_backend("cpu");
    LoraConfig lc;
    lc.r = static_cast<int>(r);
    lc.alpha = 6;
    lc.targets = {Projection::kQ, Projection::kV};
    lc.moe_targets = k.moe;
    RunShape shape;
    shape.max_tokens = 16;
    Transformer a(*be, c, TrainMode::kLora, lc, shape);
    std::mt19937 rng(5);
    model_test::randomize_weights(*be, a, rng);  // every adapter tensor non-zero
    save_peft_adapter(a, dir, "tiny");

    std::ifstream in(dir / "adapter_config.json");
    const auto j = nlohmann::json::parse(in);
    EXPECT_EQ(j.at("target_modules"), (std::vector<std::string>{"q_proj", "v_proj"}));
    EXPECT_EQ(j.at("target_parameters"), k.parameters);

    const auto st = io::SafetensorsFile::open(dir / "adapter_model.safetensors");
    size_t moe_tensors = 0;
    for (int l : {0, 2})
      for (M m : k.moe)
        for (bool is_b : {false, true}) {
          const std::string name = peft_moe_tensor_name(l, m, is_b, lc);
          ASSERT_TRUE(st.contains(name)) << name;
          ++moe_tensors;
          const int64_t out = m == M::kRouter ? e : m == M::kExpertsGateUp ? 2 * ie : h;
          const int64_t in = m == M::kExpertsDown ? ie : h;
          const int64_t n = m == M::kRouter ? 1 : e;
          EXPECT_EQ(st.info(name).shape,
                    (is_b ? std::vector<int64_t>{out, r * n} : std::vector<int64_t>{r * n, in}))
              << name;
        }
    EXPECT_EQ(st.tensors().size(), 2u * 2u * 3u + moe_tensors);  // q, v on 3 layers
    for (const io::SafetensorsTensorInfo& t : st.tensors())
      EXPECT_EQ(t.name.find("layers.1.mlp"), std::string::npos) << t.name;  // the dense layer

    // B's columns are rank-major in the file (j·E + x), expert-major in fitlm ([E, out, r]).
    for (const Param& p : a.params()) {
      if (p.peft_experts == 0) continue;
      std::vector<float> mine(static_cast<size_t>(p.master.numel()));
      be->download(p.master, mine.data());
      std::vector<float> file(mine.size());
      st.read_f32(p.name, file.data());
      const int64_t out = p.value.dim(1);
      for (int64_t x = 0; x < e; ++x)
        for (int64_t o = 0; o < out; o += 7)
          for (int64_t q = 0; q < r; ++q)
            ASSERT_EQ(file[static_cast<size_t>(o * r * e + q * e + x)],
                      mine[static_cast<size_t>((x * out + o) * r + q)])
                << p.name;
    }

    const LoraConfig read = read_peft_config(dir);
    EXPECT_EQ(read.moe_targets, k.moe);
    EXPECT_EQ(read.targets, lc.targets);
    Transformer b(*be, c, TrainMode::kLora, read, shape);
    for (auto& [name, t] : b.named_weights()) be->copy(a.arena().get(name), t);
    load_peft_weights(b, dir);
    ASSERT_EQ(a.params().size(), b.params().size());
    for (size_t i = 0; i < a.params().size(); ++i) {
      const Param &pa = a.params()[i], &pb = b.params()[i];
      ASSERT_EQ(pa.name, pb.name);
      std::vector<float> va(static_cast<size_t>(pa.master.numel())), vb(va.size());
      be->download(pa.master, va.data());
      be->download(pb.master, vb.data());
      EXPECT_EQ(va, vb) << pa.name;
    }
    TokenBatch batch;
    for (int32_t t = 0; t < 11; ++t) batch.input_ids.push_back((t * 13 + 5) % 67);
    batch.labels = batch.input_ids;
    EXPECT_EQ(a.logits(batch), b.logits(batch));
  }
  fs::remove_all(dir);
}

TEST(MoeLora, PeftConfigReadsPeftsForms) {
  const fs::path dir =
      fs::temp_directory_path() / ("fitlm_moe_lora_cfg_" + std::to_string(getpid()));
  fs::create_directories(dir);
  auto read = [&](const nlohmann::json& extra) {
    nlohmann::json j = {{"peft_type", "LORA"}, {"r", 2}, {"lora_alpha", 4}};
    j.update(extra);
    std::ofstream(dir / "adapter_config.json") << j.dump();
    return read_peft_config(dir);
  };
  // target_modules null with target_parameters (what PEFT writes for parameter targets only).
  LoraConfig c = read({{"target_modules", nullptr},
                       {"target_parameters", {"mlp.experts.gate_up_proj", "gate.weight"}}});
  EXPECT_TRUE(c.targets.empty());
  EXPECT_EQ(c.moe_targets, (std::vector<M>{M::kRouter, M::kExpertsGateUp}));
  // "gate" in target_modules (as a user gives it to PEFT) is the router.
  c = read({{"target_modules", {"q_proj", "gate"}}});
  EXPECT_EQ(c.targets, std::vector<Projection>{Projection::kQ});
  EXPECT_EQ(c.moe_targets, std::vector<M>{M::kRouter});
  const std::string order = input_error([&] {
    read({{"target_modules", {"q_proj"}},
          {"target_parameters", {"mlp.experts.down_proj", "mlp.experts.gate_up_proj"}}});
  });
  EXPECT_NE(order.find("lists mlp.experts.down_proj before"), std::string::npos) << order;
  const std::string unknown = input_error([&] {
    read({{"target_modules", {"q_proj"}}, {"target_parameters", {"mlp.experts.w1"}}});
  });
  EXPECT_NE(unknown.find("'mlp.experts.w1' is not supported"), std::string::npos) << unknown;
  fs::remove_all(dir);
}

}  // namespace
}  // namespace fitlm
