// Trainer pieces: config parsing and errors, schedules (HF formulas), gradient accumulation
// equivalence, and the PEFT adapter round trip, on the tiny demo model.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numbers>
#include <random>

#include "fitlm/core/error.h"
#include "fitlm/core/log.h"
#include "fitlm/demo/tasks.h"
#include "fitlm/demo/tiny_model.h"
#include "fitlm/io/hf_model.h"
#include "fitlm/io/peft_adapter.h"
#include "fitlm/io/safetensors.h"
#include "fitlm/train/optimizer.h"
#include "fitlm/train/trainer.h"

namespace fitlm::train {
namespace {

namespace fs = std::filesystem;

fs::path temp_dir(const std::string& name) {
  const fs::path d =
      fs::temp_directory_path() / ("fitlm_train_test_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

std::string error_of(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  try {
    TrainConfig c = parse_train_config(yaml, "t.yaml", overrides);
    validate_train_config(c);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::kBadInput);
    return e.what();
  }
  return "";
}

TEST(TrainConfig, ParsesKeysAndOverrides) {
  const TrainConfig c = parse_train_config(
      "base_model: m\ndatasets: [{path: a.jsonl, type: sharegpt}]\nlora_r: 32\n"
      "lr_scheduler: linear\nlora_target_modules: q_proj\nbf16: auto\n",
      "t.yaml", {"lora_r=8", "learning_rate=1e-5", "max-steps=3"});
  EXPECT_EQ(c.lora_r, 8);
  EXPECT_DOUBLE_EQ(c.learning_rate, 1e-5);
  EXPECT_EQ(c.max_steps, 3);
  EXPECT_EQ(c.lr_scheduler, SchedulerKind::kLinear);
  EXPECT_EQ(c.datasets.at(0).type, DatasetType::kShareGpt);
  EXPECT_EQ(c.lora_target_modules, std::vector<std::string>{"q_proj"});
  EXPECT_TRUE(c.bf16);
}

TEST(TrainConfig, MaxMemoryIsOneCapOrOnePerGpu) {
  const TrainConfig one = parse_train_config("max_memory: 15GiB\n", "t.yaml", {});
  EXPECT_EQ(one.max_memory, size_t{15} << 30);
  EXPECT_TRUE(one.max_memory_per_gpu.empty());
  const TrainConfig list = parse_train_config("max_memory: [23GiB, 15GiB]\n", "t.yaml", {});
  EXPECT_EQ(list.max_memory, size_t{15} << 30);  // data-parallel ranks plan for the smallest
  EXPECT_EQ(list.max_memory_per_gpu, (std::vector<size_t>{size_t{23} << 30, size_t{15} << 30}));
  EXPECT_NE(error_of("max_memory: []\n").find("key 'max_memory': an empty list"),
            std::string::npos);
  EXPECT_NE(error_of("max_memory: [15GiB, lots]\n").find("key 'max_memory'"), std::string::npos);
}

TEST(TrainConfig, QloraIsLoraWithA4BitBase) {
  const TrainConfig c =
      parse_train_config("adapter: qlora\nbnb_4bit_quant_type: fp4\n", "t.yaml", {});
  EXPECT_EQ(c.adapter, AdapterKind::kLora);
  EXPECT_TRUE(c.load_in_4bit);
  EXPECT_EQ(c.bnb_4bit_quant_type, "fp4");
  EXPECT_TRUE(c.bnb_4bit_use_double_quant);  // QLoRA's default
}

TEST(TrainConfig, ClearErrors) {
  EXPECT_NE(error_of("lerning_rate: 1e-4\n").find("did you mean 'learning_rate'"),
            std::string::npos);
  EXPECT_NE(error_of("", {"micro_batch_sise=2"}).find("did you mean 'micro_batch_size'"),
            std::string::npos);
  EXPECT_NE(error_of("lora_r: sixteen\n").find("key 'lora_r': expected an integer"),
            std::string::npos);
  EXPECT_NE(error_of("sample_packing: [1]\n").find("expected true or false"), std::string::npos);
  const fs::path d = temp_dir("cfg");
  demo::write_tiny_llama(d / "m", {32, 64, 1, 2, 1, 64}, 1);
  const std::string base = "base_model: " + (d / "m").string() + "\n";
  EXPECT_NE(error_of(base + "datasets: [{path: /nonexistent.jsonl, type: alpaca}]\n")
                .find("dataset file '/nonexistent.jsonl' does not exist"),
            std::string::npos);
  std::ofstream(d / "data.jsonl") << "{}\n";
  std::ofstream(d / "file") << "x";
  EXPECT_NE(error_of(base + "datasets: [" + (d / "data.jsonl").string() +
                     "]\noutput_dir: " + (d / "file" / "out").string() + "\n")
                .find("output_dir"),
            std::string::npos);
  const std::string runnable = base + "datasets: [" + (d / "data.jsonl").string() + "]\n";
  EXPECT_NE(error_of(runnable + "bnb_4bit_quant_type: int4\n").find("expected nf4 or fp4"),
            std::string::npos);
  EXPECT_NE(
      error_of(runnable + "adapter: full\nload_in_4bit: true\n").find("load_in_4bit needs adapter"),
      std::string::npos);
  EXPECT_NE(error_of(runnable + "fp16: true\nbnb_4bit_compute_dtype: bfloat16\n")
                .find("contradicts fp16"),
            std::string::npos);
  EXPECT_NE(error_of("base_model: /nonexistent\ndatasets: [x]\n").find("not a directory"),
            std::string::npos);
  fs::remove_all(d);
}

TEST(Schedule, MatchesHfFormulas) {
  const int64_t warm = 10, total = 100;
  for (int64_t s = 0; s <= total; ++s) {
    const double p = static_cast<double>(s - warm) / (total - warm);
    const double w = static_cast<double>(s) / warm;
    const double cosine = s < warm ? w : std::max(0.0, 0.5 * (1 + std::cos(std::numbers::pi * p)));
    const double linear =
        s < warm ? w : std::max(0.0, static_cast<double>(total - s) / (total - warm));
    EXPECT_NEAR(lr_multiplier(SchedulerKind::kCosine, s, warm, total), cosine, 1e-12) << s;
    EXPECT_NEAR(lr_multiplier(SchedulerKind::kLinear, s, warm, total), linear, 1e-12) << s;
    EXPECT_NEAR(lr_multiplier(SchedulerKind::kConstant, s, warm, total), s < warm ? w : 1.0, 1e-12);
  }
  // Values from transformers 4.x get_cosine_schedule_with_warmup(opt, 10, 100) at steps 0, 5,
  // 10, 55, 100.
  EXPECT_DOUBLE_EQ(lr_multiplier(SchedulerKind::kCosine, 0, 10, 100), 0.0);
  EXPECT_DOUBLE_EQ(lr_multiplier(SchedulerKind::kCosine, 5, 10, 100), 0.5);
  EXPECT_DOUBLE_EQ(lr_multiplier(SchedulerKind::kCosine, 10, 10, 100), 1.0);
  EXPECT_NEAR(lr_multiplier(SchedulerKind::kCosine, 55, 10, 100), 0.5, 1e-12);
  EXPECT_NEAR(lr_multiplier(SchedulerKind::kCosine, 100, 10, 100), 0.0, 1e-12);
  TrainConfig c;
  c.warmup_ratio = 0.03;
  EXPECT_EQ(resolve_warmup_steps(c, 1000), 30);
  EXPECT_EQ(resolve_warmup_steps(c, 10), 1);  // ceil, as HF
}

std::vector<float> read_all(const fs::path& file) {
  const auto st = io::SafetensorsFile::open(file);
  std::vector<float> out;
  for (const auto& t : st.tensors()) {
    std::vector<float> v(static_cast<size_t>(t.numel()));
    st.read_f32(t.name, v.data());
    out.insert(out.end(), v.begin(), v.end());
  }
  return out;
}

// k micro-batches of m rows == one micro-batch of k·m rows (same examples, same order). A large
// adam_epsilon makes the update ≈ lr·g, so fp32 rounding in tiny gradients is not amplified
// by Adam's normalisation into sign flips.
TEST(Trainer, GradientAccumulationEqualsBigBatch) {
  log::set_level(log::Level::kWarn);
  const fs::path d = temp_dir("accum");
  demo::write_tiny_llama(d / "m", {64, 128, 2, 4, 2, 64}, 3);
  demo::write_rows_jsonl(d / "data.jsonl", demo::make_rows(demo::Task::kUpper, 64, 5));
  auto run = [&](int mbs, int accum, const std::string& out) {
    const std::string yaml = "base_model: " + (d / "m").string() +
                             "\ndatasets: [{path: " + (d / "data.jsonl").string() +
                             ", type: pretokenized}]\nadapter: lora\nlora_r: 4\n"
                             "sequence_len: 32\nmax_steps: 2\nlearning_rate: 1.0\n"
                             "adam_epsilon: 1.0\nmax_grad_norm: 0\nlora_dropout: 0.0\n"
                             "seed: 3\n";
    TrainConfig c = parse_train_config(
        yaml, d / "c.yaml",
        {"micro_batch_size=" + std::to_string(mbs),
         "gradient_accumulation_steps=" + std::to_string(accum), "output_dir=" + out});
    TrainHooks h;
    h.show_progress = false;
    h.handle_signals = false;
    run_training(c, h);
    return read_all(fs::path(out) / "adapter_model.safetensors");
  };
  const auto big = run(8, 1, (d / "big").string());
  const auto acc = run(2, 4, (d / "acc").string());
  ASSERT_EQ(big.size(), acc.size());
  double max_diff = 0, max_abs = 0;
  for (size_t i = 0; i < big.size(); ++i) {
    max_diff = std::max(max_diff, static_cast<double>(std::abs(big[i] - acc[i])));
    max_abs = std::max(max_abs, static_cast<double>(std::abs(big[i])));
  }
  EXPECT_GT(max_abs, 0.0);
  EXPECT_LT(max_diff, 1e-5 * std::max(1.0, max_abs)) << "max |Δ| " << max_diff;
  fs::remove_all(d);
}

TEST(Adapter, RoundTripSameLogitsAndPeftLayout) {
  const fs::path d = temp_dir("adapter");
  demo::write_tiny_llama(d / "m", {64, 128, 2, 4, 2, 64}, 4);
  auto backend = make_backend("cpu");
  RunShape shape;
  shape.max_tokens = 64;
  LoraConfig lc;
  lc.r = 4;
  lc.alpha = 8;
  lc.targets = {Projection::kQ, Projection::kV, Projection::kDown};
  Transformer a(*backend, read_model_config(d / "m"), TrainMode::kLora, lc, shape);
  load_model_weights(a, d / "m");
  a.init_lora(9);
  std::mt19937 rng(1);
  std::normal_distribution<float> n(0, 0.05f);
  for (Param& p : a.params()) {  // B is zero after init: give it values so LoRA matters
    std::vector<float> v(static_cast<size_t>(p.master.numel()));
    for (float& x : v) x = n(rng);
    backend->upload(p.master, v.data(), DType::kF32);
    backend->copy(p.master, p.value);
  }
  save_peft_adapter(a, d / "ad", "tiny");
  Transformer b(*backend, read_model_config(d / "m"), TrainMode::kLora, read_peft_config(d / "ad"),
                shape);
  load_model_weights(b, d / "m");
  load_peft_weights(b, d / "ad");
  TokenBatch batch;
  batch.input_ids = demo::prompt_ids("upper hello");
  batch.labels.assign(batch.input_ids.size(), kIgnoreLabel);
  EXPECT_EQ(a.logits(batch), b.logits(batch));

  // PEFT's layout: adapter_config.json keys and tensor names/shapes.
  std::ifstream in(d / "ad" / "adapter_config.json");
  const auto j = nlohmann::json::parse(in);
  EXPECT_EQ(j.at("peft_type"), "LORA");
  EXPECT_EQ(j.at("task_type"), "CAUSAL_LM");
  EXPECT_EQ(j.at("r"), 4);
  EXPECT_EQ(j.at("lora_alpha"), 8.0);
  EXPECT_EQ(j.at("bias"), "none");
  for (const char* k : {"base_model_name_or_path", "lora_dropout", "target_modules", "use_rslora",
                        "fan_in_fan_out", "init_lora_weights"})
    EXPECT_TRUE(j.contains(k)) << k;
  const auto st = io::SafetensorsFile::open(d / "ad" / "adapter_model.safetensors");
  EXPECT_EQ(st.metadata().at("format"), "pt");
  const auto& qa = st.info("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
  EXPECT_EQ(qa.shape, (std::vector<int64_t>{4, 64}));  // [r, in]
  const auto& db = st.info("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight");
  EXPECT_EQ(db.shape, (std::vector<int64_t>{64, 4}));  // [out, r]
  EXPECT_EQ(st.tensors().size(), 2u * 2u * 3u);
  fs::remove_all(d);
}

}  // namespace
}  // namespace fitlm::train
