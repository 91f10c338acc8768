// `fitlm demo`: the README's first command. With no downloads it builds a tiny Llama model and a
// byte-level tokenizer, pretrains the model briefly (full fine-tuning) on three synthetic tasks
// (copy, lowercase, uppercase a word), then LoRA fine-tunes it to follow a new instruction word
// ("shout hello" -> "HELLO", which the base answers by copying) and prints exact-match accuracy
// before and after, the saved adapter and a few generations. Both phases go through the same
// trainer as `fitlm train`.
#include <fmt/format.h>

#include <chrono>
#include <fstream>

#include "fitlm/cli/command_registry.h"
#include "fitlm/core/log.h"
#include "fitlm/demo/tasks.h"
#include "fitlm/demo/tiny_model.h"
#include "fitlm/io/hf_model.h"
#include "fitlm/io/peft_adapter.h"
#include "fitlm/text/dataset_split.h"
#include "fitlm/train/trainer.h"

namespace fitlm::cli {
namespace {

struct DemoOptions {
  std::string dir = "fitlm-demo";
  std::string backend = "cpu";
  int64_t pretrain_steps = 2500;
  int64_t lora_steps = 200;
  int eval_rows = 200;
  uint64_t seed = 1;
  bool prepare_only = false;  // tests: write the random model and datasets, then exit
};

void write_yaml(const std::filesystem::path& path, const std::string& text) {
  std::ofstream(path) << text;
}

// Exact-match accuracy of model dir (+ adapter) on rows, and the answers.
std::pair<double, std::vector<std::string>> score(const std::string& backend_name,
                                                  const std::filesystem::path& model_dir,
                                                  const std::filesystem::path& adapter,
                                                  const std::vector<demo::TaskRow>& rows) {
  auto backend = make_backend(backend_name);
  RunShape shape;
  shape.max_tokens = 2048;
  LoraConfig lc;
  TrainMode mode = TrainMode::kFrozen;
  if (!adapter.empty()) lc = read_peft_config(adapter), mode = TrainMode::kLora;
  Transformer model(*backend, read_model_config(model_dir), mode, lc, shape);
  load_model_weights(model, model_dir);
  if (!adapter.empty()) load_peft_weights(model, adapter);
  auto answers = demo::greedy_answers(model, rows, 10);
  return {demo::exact_match(answers, rows), answers};
}

int run_demo(const DemoOptions& o) {
  namespace fs = std::filesystem;
  const auto t0 = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  const fs::path root = o.dir;
  fs::create_directories(root);
  const fs::path random_dir = root / "tiny-llama-random", base_dir = root / "tiny-llama-base",
                 adapter_dir = root / "shout-lora";
  fmt::print("fitlm demo: tiny Llama (2 layers, hidden 128, byte vocab 259) in {}\n",
             root.string());
  demo::write_tiny_llama(random_dir, demo::TinyModelShape{}, o.seed);
  if (o.prepare_only) {
    demo::write_rows_jsonl(root / "upper_train.jsonl",
                           demo::make_rows(demo::Task::kUpper, 400, o.seed + 3));
    demo::write_rows_jsonl(root / "upper_test.jsonl",
                           demo::make_rows(demo::Task::kUpper, 64, o.seed + 4));
    return 0;
  }

  // Phase 1: "pretraining" = full fine-tuning from random weights on copy + lowercase.
  auto pre = demo::make_rows(demo::Task::kCopy, 4000, o.seed + 1);
  for (auto [task, salt] : {std::pair{demo::Task::kLower, 2}, std::pair{demo::Task::kUpper, 5}}) {
    const auto more = demo::make_rows(task, 4000, o.seed + salt);
    pre.insert(pre.end(), more.begin(), more.end());
  }
  demo::write_rows_jsonl(root / "pretrain.jsonl", pre);
  write_yaml(root / "pretrain.yaml",
             fmt::format(R"(# Phase 1: full fine-tuning of the random model
base_model: {}
datasets: [{{path: {}, type: pretokenized}}]
adapter: full
sequence_len: 32
sample_packing: true
micro_batch_size: 16
max_steps: {}
learning_rate: 3.0e-3
lr_scheduler: cosine
warmup_steps: 20
weight_decay: 0.0
seed: {}
output_dir: {}
logging_steps: 50
backend: {}
)",
                         random_dir.string(), (root / "pretrain.jsonl").string(), o.pretrain_steps,
                         o.seed, base_dir.string(), o.backend));
  fmt::print(
      "\n[1/3] pretraining the tiny model ({} steps, full fine-tuning: copy, lower, upper)\n",
      o.pretrain_steps);
  train::TrainHooks hooks;
  hooks.show_progress = true;
  auto s1 = train::run_training(train::load_train_config(root / "pretrain.yaml"), hooks);
  fmt::print("      loss {:.3f} -> {:.3f} in {:.1f}s\n", s1.first_loss, s1.last_loss, s1.seconds);

  // Phase 2: LoRA on a new instruction the base never saw.
  const auto train_rows = demo::make_rows(demo::Task::kShout, 2000, o.seed + 3);
  const auto test_rows = demo::make_rows(demo::Task::kShout, o.eval_rows, o.seed + 4);
  demo::write_rows_jsonl(root / "upper_train.jsonl", train_rows);
  demo::write_rows_jsonl(root / "upper_test.jsonl", test_rows);
  const auto before = score(o.backend, base_dir, {}, test_rows);
  fmt::print("\n[2/3] LoRA fine-tuning on a new instruction: 'shout word' -> 'WORD' ({} steps)\n",
             o.lora_steps);
  fmt::print("      accuracy before: {:.1f}% (exact match on {} held-out words)\n",
             100 * before.first, test_rows.size());
  write_yaml(root / "lora.yaml",
             fmt::format(R"(# Phase 2: LoRA on the pretrained tiny model
base_model: {}
datasets: [{{path: {}, type: pretokenized}}]
test_datasets: [{{path: {}, type: pretokenized}}]
adapter: lora
lora_r: 16
lora_alpha: 32
lora_target_modules: [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj]
sequence_len: 32
sample_packing: true
micro_batch_size: 8
max_steps: {}
learning_rate: 2.0e-3
lr_scheduler: cosine
warmup_steps: 10
seed: {}
output_dir: {}
save_steps: 50
save_total_limit: 1
eval_steps: 50
logging_steps: 25
backend: {}
)",
                         base_dir.string(), (root / "upper_train.jsonl").string(),
                         (root / "upper_test.jsonl").string(), o.lora_steps, o.seed,
                         adapter_dir.string(), o.backend));
  auto s2 = train::run_training(train::load_train_config(root / "lora.yaml"), hooks);
  const auto after = score(o.backend, base_dir, adapter_dir, test_rows);
  fmt::print("      loss {:.3f} -> {:.3f}, eval_loss {:.3f}, {:.1f}s\n", s2.first_loss,
             s2.last_loss, s2.eval_loss.value_or(NAN), s2.seconds);
  fmt::print("      accuracy after:  {:.1f}%  (before {:.1f}%)\n", 100 * after.first,
             100 * before.first);

  fmt::print("\n[3/3] generations (greedy) of the base model and base + adapter:\n");
  for (size_t i = 0; i < std::min<size_t>(6, test_rows.size()); ++i)
    fmt::print(
        "      {:<14} base: {:<8} +lora: {:<8} {}\n", test_rows[i].prompt, before.second[i],
        after.second[i],
        after.second[i] == test_rows[i].answer ? "ok" : "(want " + test_rows[i].answer + ")");
  fmt::print(
      "\nadapter (PEFT format): {}/adapter_model.safetensors + adapter_config.json\n"
      "metrics: {}/metrics.jsonl, plot: {}/loss.svg\n"
      "configs: {} and {} (run them with `fitlm train`)\n"
      "total {:.1f}s\n",
      adapter_dir.string(), adapter_dir.string(), adapter_dir.string(),
      (root / "pretrain.yaml").string(), (root / "lora.yaml").string(), elapsed());
  return after.first > before.first ? 0 : 1;
}

RunFn setup(CLI::App& app) {
  auto o = std::make_shared<DemoOptions>();
  app.add_option("--dir", o->dir, "Working directory for the model, data and outputs")
      ->capture_default_str();
  app.add_option("--backend", o->backend, "cpu, cuda or cuda:N")->capture_default_str();
  app.add_option("--pretrain-steps", o->pretrain_steps, "Full fine-tuning steps of phase 1")
      ->capture_default_str();
  app.add_option("--lora-steps", o->lora_steps, "LoRA steps of phase 2")->capture_default_str();
  app.add_option("--eval-rows", o->eval_rows, "Held-out rows scored before and after")
      ->capture_default_str();
  app.add_option("--seed", o->seed, "Seed of the model, data and training")->capture_default_str();
  app.add_flag("--prepare-only", o->prepare_only,
               "Only write the random tiny model and the uppercase datasets (for tests)");
  app.footer(R"(No downloads: builds a tiny Llama + byte tokenizer, pretrains it briefly, LoRA
fine-tunes it on a new instruction and prints accuracy before and after.

Examples:
  fitlm demo
  fitlm demo --backend cuda --dir /tmp/demo)");
  return [o] { return run_demo(*o); };
}

CommandRegistration reg{"demo", "Built-in demo: train a tiny model + LoRA on the CPU, no downloads",
                        setup};

}  // namespace
}  // namespace fitlm::cli
