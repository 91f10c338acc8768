// `fitlm plan --gpus`: the GPU-set parser and the configuration search (plan/search.h).
#include <gtest/gtest.h>

#include "fitlm/core/error.h"
#include "fitlm/dist/gpu_comm_memory.h"
#include "fitlm/model/presets.h"
#include "fitlm/plan/gpu_catalog.h"
#include "fitlm/plan/search.h"

namespace fitlm::plan {
namespace {

constexpr size_t kGiB = size_t{1} << 30;

std::string input_error(const std::string& spec) {
  try {
    parse_gpu_set(spec, GpuCatalog());
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::kBadInput);
    return e.message();
  }
  ADD_FAILURE() << spec << " parsed";
  return "";
}

TEST(GpuSet, ParsesCountsNamesAndSizes) {
  const GpuCatalog cat;
  auto a = parse_gpu_set("2x16GiB", cat);
  ASSERT_EQ(a.size(), 2u);
  EXPECT_EQ(a[0].memory_bytes, 16 * kGiB);
  EXPECT_TRUE(a[1].anonymous);
  auto b = parse_gpu_set("4xRTX3090", cat);
  ASSERT_EQ(b.size(), 4u);
  EXPECT_EQ(b[3].name, "RTX3090");
  auto c = parse_gpu_set(" A5000 , a5000", cat);
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[0].name, "A5000");
  EXPECT_EQ(c[1].name, "A5000");
  auto d = parse_gpu_set("H200", cat);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_GT(d[0].memory_bytes, 130 * kGiB);
  EXPECT_LT(d[0].memory_bytes, 141 * kGiB);
  EXPECT_EQ(parse_gpu_set("rtx-4090,2xA100-80GB", cat).size(), 3u);
  EXPECT_FALSE(parse_gpu_set("T4", cat)[0].bf16);
}

TEST(GpuSet, EveryBuiltinGpuIsUnderItsNominalMemory) {
  for (const GpuSpec& g : builtin_gpus()) {
    EXPECT_GT(g.memory_bytes, 14 * kGiB) << g.name;
    EXPECT_GT(g.tensor_tflops, 0) << g.name;
    EXPECT_GT(g.link_gbps, 0) << g.name;
  }
}

TEST(GpuSet, BadSpecsNameTheToken) {
  EXPECT_NE(input_error("2xFOO9000").find("FOO9000"), std::string::npos);
  EXPECT_NE(input_error("A5000,,A5000").find("empty"), std::string::npos);
  EXPECT_NE(input_error("3x").find("3x"), std::string::npos);
  EXPECT_NE(input_error("16Gibberish").find("16Gibberish"), std::string::npos);
  EXPECT_NE(input_error("0xH200").find("0xH200"), std::string::npos);
  EXPECT_NE(input_error("").find("empty"), std::string::npos);
  EXPECT_NE(input_error("2x100MiB").find("100MiB"), std::string::npos);
}

TEST(GpuSet, FileAddsAndReplaces) {
  GpuCatalog cat;
  cat.add_json_text(R"({"gpus": [{"name": "MyCard", "memory": "20GiB", "tflops": 50},
                                  {"name": "T4", "memory": 15000000000, "tflops": 70}]})",
                    "test");
  auto g = parse_gpu_set("2xmycard,T4", cat);
  ASSERT_EQ(g.size(), 3u);
  EXPECT_EQ(g[0].memory_bytes, 20 * kGiB);
  EXPECT_EQ(g[2].tensor_tflops, 70);
  EXPECT_THROW(cat.add_json_text(R"([{"name": "X", "tflops": 5}])", "test"), Error);
  EXPECT_THROW(cat.add_json_text("{", "test"), Error);
}

SearchRequest request(const std::string& arch, const std::string& gpus, FineTune mode) {
  SearchRequest r;
  r.config = preset_config(arch);
  r.mode = mode;
  r.seq = 512;
  r.gpus = parse_gpu_set(gpus, GpuCatalog());
  r.host_memory = 256 * kGiB;
  r.max_micro_batch = 4;
  r.suggest = false;
  return r;
}

std::vector<std::string> ranking(const SearchResult& s) {
  std::vector<std::string> out;
  for (const Candidate& k : s.fitting)
    out.push_back(fmt::format("{} {:.3f} {}", k.describe(), k.tokens_per_s, k.peak_bytes()));
  return out;
}

TEST(PlanSearch, DeterministicAndRanked) {
  const SearchRequest r = request("llama-3.2-1b", "2xA5000", FineTune::kLora);
  const SearchResult a = search(r), b = search(r);
  ASSERT_FALSE(a.fitting.empty());
  EXPECT_EQ(ranking(a), ranking(b));
  EXPECT_EQ(a.excluded.size(), b.excluded.size());
  for (size_t i = 1; i < a.fitting.size(); ++i) {
    EXPECT_GE(a.fitting[i - 1].tokens_per_s, a.fitting[i].tokens_per_s);
    if (a.fitting[i - 1].tokens_per_s == a.fitting[i].tokens_per_s)
      EXPECT_LE(a.fitting[i - 1].peak_bytes(), a.fitting[i].peak_bytes());
  }
  // Every data-parallel strategy appears for a small model on two GPUs.
  for (const char* s : {"ddp", "zero2", "zero3", "pipeline"})
    EXPECT_TRUE(std::any_of(a.fitting.begin(), a.fitting.end(), [&](const Candidate& k) {
      return k.strategy == s;
    })) << s;
  for (const Candidate& k : a.fitting) {
    EXPECT_LE(k.peak_bytes(), r.gpus[0].memory_bytes);
    EXPECT_GT(k.tokens_per_s, 0);
  }
}

// The candidate's bytes, rebuilt here from its description with the plan functions.
TEST(PlanSearch, BytesEqualThePlanOfTheSameShape) {
  const SearchRequest r = request("llama-3.2-1b", "2xA5000", FineTune::kLora);
  const SearchResult s = search(r);
  int checked = 0;
  for (size_t i = 0; i < s.fitting.size(); i += 5) {
    const Candidate& k = s.fitting[i];
    for (int g = 0; g < 2; ++g) {
      RunShape shape;
      shape.max_tokens = 512 * k.micro_batch;
      shape.with_optimizer = true;
      shape.recompute = k.recompute ? RecomputePolicy::kFull : RecomputePolicy::kSave;
      shape.offload_layers = k.offload_weights;
      shape.offload_optimizer = k.offload_optimizer;
      shape.offload_activations = k.offload_activations;
      if (k.strategy == "zero2" || k.strategy == "zero3") shape.optimizer_shard = ShardSpec{g, 2};
      if (k.strategy == "zero3") shape.layer_shard = ShardSpec{g, 2};
      if (k.strategy == "pipeline") shape.stage = k.stages.at(static_cast<size_t>(g));
      const size_t arena =
          plan_transformer(r.config, TrainMode::kLora, LoraConfig{}, shape, DType::kBF16)
              .total_bytes();
      const size_t host =
          plan_transformer_host(r.config, TrainMode::kLora, LoraConfig{}, shape, DType::kBF16)
              .total_bytes();
      EXPECT_EQ(k.arena_bytes[static_cast<size_t>(g)], arena) << k.describe();
      EXPECT_EQ(k.device_bytes[static_cast<size_t>(g)], arena + kCudaFixedWorkspaceBytes +
                                                            cuda_host_mapping_bytes(host) +
                                                            dist::gpu_comm_reserved_bytes(2))
          << k.describe();
      ++checked;
    }
  }
  EXPECT_GE(checked, 4);
  // Pipeline stages cover every layer, in order.
  for (const Candidate& k : s.fitting)
    if (k.strategy == "pipeline") {
      EXPECT_EQ(k.stages.front().first_layer, 0);
      EXPECT_EQ(k.stages.front().end_layer, k.stages.back().first_layer);
      EXPECT_EQ(k.stages.back().end_layer, r.config.num_layers);
    }
}

TEST(PlanSearch, TooBigSaysWhatWouldMakeItFit) {
  SearchRequest r = request("llama-3.1-8b", "16GiB", FineTune::kFull);
  r.host_memory = 8 * kGiB;
  r.suggest = true;
  const SearchResult s = search(r);
  EXPECT_TRUE(s.fitting.empty());
  ASSERT_FALSE(s.suggestions.empty());
  std::string all;
  for (const auto& t : s.suggestions) all += t + "\n";
  EXPECT_NE(all.find("closest"), std::string::npos) << all;
  EXPECT_NE(all.find("larger GPUs"), std::string::npos) << all;
}

TEST(PlanSearch, QloraOnlyWhenAllowed) {
  SearchRequest r = request("llama-3.2-1b", "H200", FineTune::kLora);
  for (const Candidate& k : search(r).fitting) EXPECT_FALSE(k.nf4);
  for (const Candidate& k : search(r).excluded) EXPECT_FALSE(k.nf4);
  r.allow_quantize = true;
  const SearchResult q = search(r);
  EXPECT_TRUE(
      std::any_of(q.fitting.begin(), q.fitting.end(), [](const Candidate& k) { return k.nf4; }));
  EXPECT_TRUE(std::all_of(q.fitting.begin(), q.fitting.end(),
                          [](const Candidate& k) { return k.strategy == "single"; }));
}

TEST(PlanSearch, FullFineTuningNeverQuantizesNorOffloadsWeights) {
  SearchRequest r = request("llama-3.2-1b", "2xA100-40GB", FineTune::kFull);
  r.allow_quantize = true;
  const SearchResult s = search(r);
  ASSERT_FALSE(s.fitting.empty());
  for (const auto* list : {&s.fitting, &s.excluded})
    for (const Candidate& k : *list) {
      EXPECT_FALSE(k.nf4) << k.describe();
      EXPECT_FALSE(k.offload_weights) << k.describe();
    }
}

TEST(PlanSearch, GlobalBatchIsKept) {
  SearchRequest r = request("llama-3.2-1b", "2xA5000", FineTune::kLora);
  r.global_batch = 16;
  for (const Candidate& k : search(r).fitting) {
    const int dp = k.strategy == "pipeline" ? 1 : 2;
    EXPECT_EQ(k.micro_batch * k.accumulation * dp, 16) << k.describe();
    EXPECT_EQ(k.tokens_per_step, 16 * 512) << k.describe();
  }
}

// What fitlm train fixes from its config (SearchRequest::fixed) is what every candidate has.
TEST(PlanSearch, FixedChoicesHoldForEveryCandidate) {
  SearchRequest r = request("llama-3.2-1b", "2xA5000", FineTune::kLora);
  r.fixed.micro_batch = 3;
  r.fixed.recompute = true;
  r.fixed.offload_activations = false;
  r.fixed.offload_optimizer = true;
  r.fixed.strategies = {"zero2", "pipeline"};
  r.fixed.dtype = DType::kF32;
  r.fixed.accumulation = 5;
  const SearchResult res = search(r);
  ASSERT_FALSE(res.fitting.empty());
  for (const auto* list : {&res.fitting, &res.excluded})
    for (const Candidate& k : *list) {
      EXPECT_EQ(k.micro_batch, 3) << k.describe();
      EXPECT_TRUE(k.recompute) << k.describe();
      EXPECT_FALSE(k.offload_activations) << k.describe();
      EXPECT_TRUE(k.offload_optimizer) << k.describe();
      EXPECT_TRUE(k.strategy == "zero2" || k.strategy == "pipeline") << k.describe();
      EXPECT_EQ(k.dtype, DType::kF32) << k.describe();
      EXPECT_EQ(k.accumulation, 5) << k.describe();
    }
  // Weights offload was left open: both appear.
  EXPECT_TRUE(std::any_of(res.fitting.begin(), res.fitting.end(),
                          [](const Candidate& k) { return k.offload_weights; }));
  EXPECT_TRUE(std::any_of(res.fitting.begin(), res.fitting.end(),
                          [](const Candidate& k) { return !k.offload_weights; }));
}

TEST(GpuSet, FindsTheGpuADeviceDescriptionNames) {
  const GpuCatalog cat;
  ASSERT_NE(cat.find_in_text("cuda:0 NVIDIA H200 (sm_90, 132 SMs, 139.80 GiB), bf16 storage"),
            nullptr);
  EXPECT_EQ(cat.find_in_text("cuda:0 NVIDIA H200 (sm_90)")->name, "H200");
  EXPECT_EQ(cat.find_in_text("cuda:1 NVIDIA L40S (sm_89)")->name, "L40S");  // not L4
  EXPECT_EQ(cat.find_in_text("cuda:0 NVIDIA GeForce RTX 3090")->name, "RTX3090");
  EXPECT_EQ(cat.find_in_text("cuda:0 Some Future GPU"), nullptr);
}

TEST(PlanCost, CalibrationPointReproducesTheMeasurement) {
  // bench/NOTES.md session 4: 16,365 tok/s for Llama-3.1-8B LoRA r16 seq 2048 mb 4 on an H100.
  SearchRequest r = request("llama-3.1-8b", "H100", FineTune::kLora);
  r.seq = 2048;
  const SearchResult s = search(r);
  const auto it = std::find_if(s.fitting.begin(), s.fitting.end(), [](const Candidate& k) {
    return k.micro_batch == 4 && !k.recompute && k.offload() == "none";
  });
  ASSERT_NE(it, s.fitting.end());
  EXPECT_NEAR(it->tokens_per_s, 16365, 16365 * 0.05);
}

}  // namespace
}  // namespace fitlm::plan
