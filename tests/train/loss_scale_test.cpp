// fp16 loss scaling: the LossScaler's GradScaler semantics, the config keys, and end-to-end
// runs on the CPU backend where f32 gradients really overflow (a loss scale of 2^140), so steps
// are skipped, the scale backs off, training then proceeds, and resume restores the scaler.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "fitlm/core/error.h"
#include "fitlm/core/log.h"
#include "fitlm/demo/tasks.h"
#include "fitlm/demo/tiny_model.h"
#include "fitlm/train/checkpoint.h"
#include "fitlm/train/loss_scaler.h"
#include "fitlm/train/optimizer.h"
#include "fitlm/train/trainer.h"

namespace fitlm::train {
namespace {

namespace fs = std::filesystem;

// ---- LossScaler ---------------------------------------------------------------------------

TEST(LossScaler, DefaultsAreGradScalers) {
  const LossScaler s;
  EXPECT_EQ(s.scale(), 65536.0);
  EXPECT_EQ(s.options().growth_factor, 2.0);
  EXPECT_EQ(s.options().backoff_factor, 0.5);
  EXPECT_EQ(s.options().growth_interval, 2000);
  EXPECT_EQ(s.growth_tracker(), 0);
  EXPECT_TRUE(s.dynamic());
}

TEST(LossScaler, GrowsAfterGrowthIntervalGoodSteps) {
  LossScalerOptions o;
  o.init_scale = 1024;
  o.growth_interval = 3;
  LossScaler s(o);
  s.update(false);
  s.update(false);
  EXPECT_EQ(s.scale(), 1024.0);  // 2 good steps: not yet
  EXPECT_EQ(s.growth_tracker(), 2);
  s.update(false);
  EXPECT_EQ(s.scale(), 2048.0);  // the 3rd grows and restarts the count
  EXPECT_EQ(s.growth_tracker(), 0);
  for (int i = 0; i < 3; ++i) s.update(false);
  EXPECT_EQ(s.scale(), 4096.0);
  // Default interval: 1999 good steps keep the scale, the 2000th doubles it.
  LossScaler d;
  for (int i = 0; i < 1999; ++i) d.update(false);
  EXPECT_EQ(d.scale(), 65536.0);
  d.update(false);
  EXPECT_EQ(d.scale(), 131072.0);
}

TEST(LossScaler, BacksOffOnInfAndResetsTheTracker) {
  LossScalerOptions o;
  o.init_scale = 1024;
  o.growth_interval = 3;
  LossScaler s(o);
  s.update(false);
  s.update(false);
  s.update(true);
  EXPECT_EQ(s.scale(), 512.0);
  EXPECT_EQ(s.growth_tracker(), 0);  // the two good steps before the overflow no longer count
  s.update(false);
  s.update(false);
  EXPECT_EQ(s.scale(), 512.0);
  s.update(false);
  EXPECT_EQ(s.scale(), 1024.0);
  s.update(true);
  s.update(true);
  EXPECT_EQ(s.scale(), 256.0);
}

TEST(LossScaler, MinScaleIsAFloor) {
  LossScalerOptions o;
  o.init_scale = 8;
  o.min_scale = 2;
  LossScaler s(o);
  EXPECT_FALSE(s.at_min());
  s.update(true);
  EXPECT_EQ(s.scale(), 4.0);
  EXPECT_FALSE(s.at_min());
  s.update(true);
  EXPECT_EQ(s.scale(), 2.0);
  EXPECT_TRUE(s.at_min());
  s.update(true);  // cannot go lower
  EXPECT_EQ(s.scale(), 2.0);
  EXPECT_TRUE(s.at_min());
  // A floor that is not a power-of-two step away clamps exactly to the floor.
  o.init_scale = 3;
  o.min_scale = 1;
  LossScaler t(o);
  t.update(true);
  EXPECT_EQ(t.scale(), 1.5);
  t.update(true);
  EXPECT_EQ(t.scale(), 1.0);
  EXPECT_TRUE(t.at_min());
  // The default floor is 1, as DeepSpeed's min_loss_scale.
  LossScaler d;
  for (int i = 0; i < 40; ++i) d.update(true);
  EXPECT_EQ(d.scale(), 1.0);
}

TEST(LossScaler, GrowthStopsWhereTheScaleWouldBeInfinite) {
  LossScalerOptions o;
  o.init_scale = 1e308;
  o.growth_interval = 1;
  LossScaler s(o);
  s.update(false);
  EXPECT_EQ(s.scale(), 1e308);
  EXPECT_EQ(s.growth_tracker(), 0);
}

TEST(LossScaler, FixedNeverChangesAndIsAtItsFloor) {
  LossScalerOptions o;
  o.dynamic = false;
  o.init_scale = 128;
  LossScaler s(o);
  for (int i = 0; i < 5; ++i) s.update(i % 2 == 0);
  EXPECT_EQ(s.scale(), 128.0);
  EXPECT_TRUE(s.at_min());
}

TEST(LossScaler, StateRoundTrips) {
  LossScalerOptions o;
  o.growth_interval = 5;
  LossScaler a(o), b(o);
  a.update(true);
  a.update(false);
  a.update(false);
  b.load_state(a.state());
  EXPECT_EQ(b.scale(), a.scale());
  EXPECT_EQ(b.growth_tracker(), 2);
  for (int i = 0; i < 3; ++i) a.update(false), b.update(false);
  EXPECT_EQ(b.scale(), 65536.0);
  EXPECT_EQ(b.scale(), a.scale());
}

// ---- config ---------------------------------------------------------------------------------

std::string parse_error(const std::string& yaml) {
  try {
    validate_train_config(parse_train_config(yaml, "t.yaml"));
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::kBadInput);
    return e.what();
  }
  return "";
}

TEST(LossScaleConfig, ParsesKeys) {
  EXPECT_EQ(parse_train_config("fp16: true\n", "t.yaml").loss_scale, LossScaleKind::kAuto);
  EXPECT_EQ(parse_train_config("loss_scale: dynamic\n", "t.yaml").loss_scale,
            LossScaleKind::kDynamic);
  EXPECT_EQ(parse_train_config("loss_scale: none\n", "t.yaml").loss_scale, LossScaleKind::kNone);
  const TrainConfig f = parse_train_config("loss_scale: 1024\n", "t.yaml");
  EXPECT_EQ(f.loss_scale, LossScaleKind::kFixed);
  EXPECT_EQ(f.loss_scale_value, 1024.0);
  const TrainConfig c = parse_train_config(
      "loss_scale_init: 128\nloss_scale_growth_interval: 50\nloss_scale_min: 0.25\n", "t.yaml",
      {"loss-scale=dynamic"});
  EXPECT_EQ(c.loss_scale, LossScaleKind::kDynamic);
  EXPECT_EQ(c.loss_scale_init, 128.0);
  EXPECT_EQ(c.loss_scale_growth_interval, 50);
  EXPECT_EQ(c.loss_scale_min, 0.25);
  const TrainConfig d = parse_train_config("", "t.yaml");
  EXPECT_EQ(d.loss_scale_init, 65536.0);
  EXPECT_EQ(d.loss_scale_growth_interval, 2000);
}

TEST(LossScaleConfig, ClearErrors) {
  EXPECT_NE(parse_error("loss_scale: dynamc\n")
                .find("key 'loss_scale': expected dynamic, none or a positive number, found "
                      "'dynamc' (did you mean 'dynamic'?)"),
            std::string::npos);
  EXPECT_NE(parse_error("loss_scale: -4\n").find("a fixed loss scale must be a positive number"),
            std::string::npos);
  EXPECT_NE(parse_error("loss_scale: [1]\n").find("expected dynamic, none or a positive number"),
            std::string::npos);
  EXPECT_NE(parse_error("loss_scale_int: 1\n").find("did you mean 'loss_scale_init'"),
            std::string::npos);
  EXPECT_NE(parse_error("loss_scale_growth_interval: x\n").find("expected an integer"),
            std::string::npos);
  // Value checks come from validate_train_config, which needs a model and data first.
  const fs::path d = fs::temp_directory_path() / ("fitlm_ls_cfg_" + std::to_string(::getpid()));
  fs::create_directories(d);
  demo::write_tiny_llama(d / "m", {32, 64, 1, 2, 1, 64}, 1);
  std::ofstream(d / "data.jsonl") << "{}\n";
  const std::string base = "base_model: " + (d / "m").string() + "\ndatasets: [" +
                           (d / "data.jsonl").string() + "]\noutput_dir: " + (d / "out").string() +
                           "\n";
  EXPECT_EQ(parse_error(base + "fp16: true\nloss_scale: 8\n"), "");
  EXPECT_NE(
      parse_error(base + "loss_scale_init: 0\n").find("loss_scale_init must be a positive number"),
      std::string::npos);
  EXPECT_NE(parse_error(base + "loss_scale_growth_interval: 0\n")
                .find("loss_scale_growth_interval must be at least 1"),
            std::string::npos);
  EXPECT_NE(parse_error(base + "loss_scale_min: 0\n").find("loss_scale_min must be in"),
            std::string::npos);
  EXPECT_NE(parse_error(base + "loss_scale_init: 16\nloss_scale_min: 32\n")
                .find("loss_scale_min must be in"),
            std::string::npos);
  fs::remove_all(d);
}

// ---- end to end on the CPU ------------------------------------------------------------------

class LossScaleTraining : public ::testing::Test {
 protected:
  void SetUp() override {
    log::set_level(log::Level::kWarn);
    dir_ = fs::temp_directory_path() /
           ("fitlm_loss_scale_" +
            std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()) + "_" +
            std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    demo::write_tiny_llama(dir_ / "m", {64, 128, 2, 4, 2, 64}, 3);
    demo::write_rows_jsonl(dir_ / "data.jsonl", demo::make_rows(demo::Task::kUpper, 64, 5));
  }
  void TearDown() override { fs::remove_all(dir_); }

  // 2^140: f32 gradients of this model overflow for scales above ~2^129.
  static std::string huge_scale() { return fmt::format("{:.17g}", std::ldexp(1.0, 140)); }

  TrainConfig config(const std::string& out, const std::vector<std::string>& extra = {}) {
    const std::string yaml = "base_model: " + (dir_ / "m").string() +
                             "\ndatasets: [{path: " + (dir_ / "data.jsonl").string() +
                             ", type: pretokenized}]\nadapter: lora\nlora_r: 4\n"
                             "sequence_len: 32\nmicro_batch_size: 4\nmax_steps: 30\n"
                             "learning_rate: 3.0e-3\nweight_decay: 0.1\nseed: 3\nfp16: true\n"
                             "loss_scale_init: " +
                             huge_scale() + "\noutput_dir: " + (dir_ / out).string() + "\n";
    return parse_train_config(yaml, dir_ / "c.yaml", extra);
  }

  static std::vector<StepMetrics> run(const TrainConfig& c,
                                      std::function<void(const StepMetrics&)> also = {}) {
    std::vector<StepMetrics> steps;
    TrainHooks h;
    h.show_progress = false;
    h.handle_signals = false;
    h.on_step = [&](const StepMetrics& m) {
      steps.push_back(m);
      if (also) also(m);
    };
    run_training(c, h);
    return steps;
  }

  static std::string file_bytes(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    EXPECT_TRUE(in) << p;
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  fs::path dir_;
};

TEST_F(LossScaleTraining, OverflowSkipsStepsBacksOffThenTrains) {
  const TrainConfig c = config("out", {"save_steps=1"});
  const std::vector<StepMetrics> steps = run(c);
  ASSERT_EQ(steps.size(), 30u);
  // The first steps overflow: skipped, each at half the previous scale, the lr schedule frozen.
  size_t k = 0;
  while (k < steps.size() && steps[k].skipped) ++k;
  ASSERT_GE(k, 2u) << "expected the first steps to overflow at 2^140";
  ASSERT_LT(k, 20u) << "training never proceeded";
  for (size_t i = 0; i < k; ++i) {
    EXPECT_EQ(steps[i].loss_scale, std::ldexp(1.0, 140 - static_cast<int>(i))) << i;
    EXPECT_FALSE(std::isfinite(steps[i].grad_norm)) << i;
    EXPECT_EQ(steps[i].skipped_steps, static_cast<int64_t>(i + 1));
    EXPECT_EQ(steps[i].lr, steps[0].lr) << "a skipped step must not advance the schedule";
  }
  // The first good step runs at the backed-off scale with optimizer step 0's lr (HF: the
  // scheduler does not step when the optimizer step was skipped); later ones advance.
  EXPECT_EQ(steps[k].loss_scale, std::ldexp(1.0, 140 - static_cast<int>(k)));
  EXPECT_TRUE(std::isfinite(steps[k].grad_norm));
  EXPECT_EQ(steps[k].lr, steps[0].lr);
  for (size_t i = 0; i < steps.size(); ++i) {  // every lr follows the applied updates only
    const int64_t applied_before =
        static_cast<int64_t>(i) - (steps[i].skipped_steps - (steps[i].skipped ? 1 : 0));
    EXPECT_DOUBLE_EQ(steps[i].lr,
                     3e-3 * lr_multiplier(SchedulerKind::kCosine, applied_before, 0, 30))
        << i;
  }
  // Training proceeds: few further skips, and the loss goes down.
  EXPECT_LE(steps.back().skipped_steps, static_cast<int64_t>(k) + 3);
  double tail = 0;
  for (size_t i = steps.size() - 5; i < steps.size(); ++i) tail += steps[i].loss / 5;
  EXPECT_LT(tail, steps[k].loss - 0.2) << "first good loss " << steps[k].loss;

  // Weights, AdamW moments (and so weight decay) are untouched by a skipped step ...
  const fs::path out = dir_ / "out";
  for (const char* f :
       {"trainable.safetensors", "optimizer_m.safetensors", "optimizer_v.safetensors"}) {
    EXPECT_EQ(file_bytes(out / "checkpoint-1" / f), file_bytes(out / "checkpoint-2" / f)) << f;
    EXPECT_EQ(file_bytes(out / fmt::format("checkpoint-{}", k - 1) / f),
              file_bytes(out / fmt::format("checkpoint-{}", k) / f))
        << f;
  }
  // ... and changed by the first applied one.
  EXPECT_NE(file_bytes(out / fmt::format("checkpoint-{}", k) / "trainable.safetensors"),
            file_bytes(out / fmt::format("checkpoint-{}", k + 1) / "trainable.safetensors"));
  // The checkpoint records the scaler and the step counts.
  std::ifstream in(out / fmt::format("checkpoint-{}", k + 1) / "trainer_state.json");
  const auto j = nlohmann::json::parse(in);
  EXPECT_EQ(j.at("global_step"), k + 1);
  EXPECT_EQ(j.at("optimizer_steps"), 1);
  EXPECT_EQ(j.at("skipped_steps"), k);
  EXPECT_EQ(j.at("loss_scaler").at("scale").get<double>(),
            std::ldexp(1.0, 140 - static_cast<int>(k)));
  EXPECT_EQ(j.at("loss_scaler").at("growth_tracker"), 1);
  // metrics.jsonl marks the skipped steps.
  std::ifstream ml(out / "metrics.jsonl");
  const auto first = nlohmann::json::parse([&] {
    std::string line;
    std::getline(ml, line);
    return line;
  }());
  EXPECT_EQ(first.at("skipped"), true);
  EXPECT_TRUE(first.at("grad_norm").is_null());
  EXPECT_EQ(first.at("loss_scale").get<double>(), std::ldexp(1.0, 140));
}

TEST_F(LossScaleTraining, WithoutLossScalingNothingChanges) {
  // fp16 off and no loss_scale: no scaler, and metrics.jsonl has no loss-scale fields.
  TrainConfig c = config("plain", {"fp16=false", "loss_scale_init=65536"});
  c.max_steps = 2;
  const auto steps = run(c);
  for (const auto& m : steps) {
    EXPECT_EQ(m.loss_scale, 0.0);
    EXPECT_FALSE(m.skipped);
  }
  std::ifstream ml(dir_ / "plain" / "metrics.jsonl");
  std::string line;
  std::getline(ml, line);
  EXPECT_EQ(line.find("loss_scale"), std::string::npos) << line;
}

TEST_F(LossScaleTraining, OverflowAtTheFloorIsDivergence) {
  for (const std::vector<std::string>& extra :
       {std::vector<std::string>{"loss_scale=" + huge_scale(), "loss_scale_init=65536"},  // fixed
        std::vector<std::string>{"loss_scale_min=" + huge_scale()}}) {
    const TrainConfig c = config("floor", extra);
    try {
      run(c);
      ADD_FAILURE() << "expected divergence with " << extra[0];
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ExitCode::kDiverged) << e.what();
      EXPECT_NE(std::string(e.what()).find("at step 1 with loss scale"), std::string::npos)
          << e.what();
    }
    EXPECT_FALSE(latest_checkpoint(dir_ / "floor"));
    EXPECT_FALSE(fs::exists(dir_ / "floor" / "adapter_model.safetensors"));
  }
}

// Stopped mid-run (what SIGTERM does) and resumed: the same skips at the same steps and
// byte-identical adapter files. growth_interval 2 keeps the scale oscillating around the
// overflow threshold, so the steps after the resume point depend on the restored scale, and
// stopping where the growth tracker is 1 makes them depend on the restored tracker too.
TEST_F(LossScaleTraining, ResumeRestoresTheScalerExactly) {
  const std::vector<std::string> extra = {"loss_scale_growth_interval=2"};
  const auto full = run(config("full", extra));
  // Replay the scaler over the run's overflow flags to find a stop step with tracker 1 and an
  // overflow later on.
  LossScalerOptions o;
  o.init_scale = std::ldexp(1.0, 140);
  o.growth_interval = 2;
  LossScaler replay(o);
  int64_t stop_at = 0;
  for (const auto& m : full) {
    EXPECT_EQ(m.loss_scale, replay.scale()) << "step " << m.step;
    replay.update(m.skipped);
    if (stop_at == 0 && replay.growth_tracker() == 1 && m.step > 3 &&
        full.back().skipped_steps > m.skipped_steps)
      stop_at = m.step;
  }
  ASSERT_GT(stop_at, 0) << "no stop point with growth tracker 1 and overflows after it";
  const int64_t kStopAt = stop_at;
  const auto first = run(config("resumed", extra), [&](const StepMetrics& m) {
    if (m.step == kStopAt) request_stop();
  });
  ASSERT_EQ(first.size(), static_cast<size_t>(kStopAt));
  ASSERT_TRUE(fs::exists(dir_ / "resumed" / fmt::format("checkpoint-{}", kStopAt)));
  const auto second =
      run(config("resumed", {"loss_scale_growth_interval=2", "resume_from_checkpoint=latest"}));
  ASSERT_EQ(second.size(), full.size() - kStopAt);
  for (size_t i = 0; i < second.size(); ++i) {
    const StepMetrics& a = full[static_cast<size_t>(kStopAt) + i];
    const StepMetrics& b = second[i];
    EXPECT_EQ(a.step, b.step);
    EXPECT_EQ(a.loss_scale, b.loss_scale) << "step " << a.step;
    EXPECT_EQ(a.skipped, b.skipped) << "step " << a.step;
    EXPECT_EQ(a.skipped_steps, b.skipped_steps) << "step " << a.step;
    EXPECT_EQ(a.lr, b.lr) << "step " << a.step;
    EXPECT_EQ(a.loss, b.loss) << "step " << a.step;
  }
  EXPECT_EQ(file_bytes(dir_ / "full" / "adapter_model.safetensors"),
            file_bytes(dir_ / "resumed" / "adapter_model.safetensors"));
}

}  // namespace
}  // namespace fitlm::train
