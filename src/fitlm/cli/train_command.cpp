// `fitlm train CONFIG.yaml [--key=value ...] [--resume [DIR]]`: fine-tune with LoRA or full
// fine-tuning from an axolotl-style YAML config (src/fitlm/train/train_config.h).
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "fitlm/cli/command_registry.h"
#include "fitlm/core/error.h"
#include "fitlm/core/log.h"
#include "fitlm/train/trainer.h"

namespace fitlm::cli {
namespace {

struct TrainOptions {
  std::string config;
  std::string resume;  // "" = no; "latest" when --resume has no value
  std::string adapter;
  std::string backend;
  bool check_only = false;
  int nproc = 1;
};

// `--nproc N` outside a launcher: this command again, as N ranks under mpirun (each then finds
// its rank in OMPI_COMM_WORLD_*). Returns mpirun's exit code: the first failing rank's.
int relaunch_under_mpirun(int nproc) {
  std::vector<std::string> args = {"mpirun", "-np", std::to_string(nproc), "--oversubscribe"};
  if (::geteuid() == 0) args.push_back("--allow-run-as-root");  // containers run as root
  args.push_back(std::filesystem::read_symlink("/proc/self/exe").string());
  const std::vector<std::string>& self = process_args();
  for (size_t i = 1; i < self.size(); ++i) {
    if (self[i] == "--nproc") {
      ++i;  // and its value
      continue;
    }
    if (self[i].rfind("--nproc=", 0) != 0) args.push_back(self[i]);
  }
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  log::info("starting {} ranks: {}", nproc, fmt::join(args, " "));
  ::execvp("mpirun", argv.data());
  throw_input_error("train", "--nproc {}: cannot run mpirun ({}); install openmpi-bin", nproc,
                    std::strerror(errno));
}

// `--key=value` and `--key value` pairs left over by CLI11 become config overrides.
std::vector<std::string> overrides_from(const std::vector<std::string>& extras) {
  std::vector<std::string> out;
  for (size_t i = 0; i < extras.size(); ++i) {
    const std::string& a = extras[i];
    if (a.rfind("--", 0) != 0)
      throw_input_error("config", "unexpected argument '{}': overrides are --key=value", a);
    std::string kv = a.substr(2);
    if (kv.find('=') == std::string::npos) {
      if (i + 1 < extras.size() && extras[i + 1].rfind("--", 0) != 0) {
        kv += "=" + extras[++i];
      } else {
        kv += "=true";  // a bare --flag sets a boolean key
      }
    }
    out.push_back(std::move(kv));
  }
  return out;
}

int run_train(const TrainOptions& o, const std::vector<std::string>& extras) {
  if (o.nproc < 1) throw_input_error("train", "--nproc must be at least 1, found {}", o.nproc);
  if (o.nproc > 1 && !std::getenv("OMPI_COMM_WORLD_SIZE") && !o.check_only)
    return relaunch_under_mpirun(o.nproc);
  std::vector<std::string> overrides = overrides_from(extras);
  if (!o.resume.empty()) overrides.push_back("resume_from_checkpoint=" + o.resume);
  // `--adapter` is both the config key (lora|qlora|full) and "continue this PEFT adapter".
  const bool adapter_kind = o.adapter == "lora" || o.adapter == "qlora" || o.adapter == "full";
  if (!o.adapter.empty())
    overrides.push_back((adapter_kind ? "adapter=" : "lora_model_dir=") + o.adapter);
  if (!o.backend.empty()) overrides.push_back("backend=" + o.backend);
  const train::TrainConfig cfg = train::load_train_config(o.config, overrides);
  if (o.check_only) {
    train::validate_train_config(cfg);
    fmt::print("{}: config OK\n", o.config);
    return 0;
  }
  const train::TrainSummary s = train::run_training(cfg);
  if (!s.lead) return 0;  // rank 0 reports for every rank
  if (s.interrupted) {
    fmt::print(stderr,
               "stopped at step {}/{} (checkpoint saved); resume with: fitlm train {} "
               "--resume\n",
               s.steps_done, s.total_steps, o.config);
    return 0;
  }
  fmt::print(
      stderr, "done: {} steps in {:.1f}s, loss {:.4f} -> {:.4f}{}{}; outputs in {}\n",
      s.steps_done - s.start_step, s.seconds, s.first_loss, s.last_loss,
      s.eval_loss ? fmt::format(", eval_loss {:.4f}", *s.eval_loss) : "",
      s.skipped_steps ? fmt::format(", {} skipped (gradient overflow)", s.skipped_steps) : "",
      s.output_dir.string());
  return 0;
}

RunFn setup(CLI::App& app) {
  auto o = std::make_shared<TrainOptions>();
  app.add_option("config", o->config, "YAML training config (axolotl-style keys)")->required();
  app.add_option("--resume", o->resume,
                 "Continue from the latest checkpoint in output_dir, or from DIR")
      ->expected(0, 1)
      ->default_str("latest");
  app.add_option("--adapter", o->adapter,
                 "PEFT adapter DIR to continue training (= lora_model_dir); lora|qlora|full set "
                 "the `adapter` key");
  app.add_option("--backend", o->backend, "cpu, cuda or cuda:N (= backend)");
  app.add_flag("--check", o->check_only, "Validate the config and files, then exit");
  app.add_option("--nproc", o->nproc,
                 "Ranks on this machine under mpirun: CPU ranks (backend: cpu, over MPI) or one GPU "
                 "each (backend: cuda, over NCCL); what each keeps is the strategy key")
      ->capture_default_str();
  app.allow_extras();
  app.footer(R"(Any config key can be overridden: --key=value (YAML value syntax).

Config keys: base_model, datasets [{path, type: alpaca|sharegpt|messages|completion|
pretokenized}], test_datasets, val_set_size, sequence_len, sample_packing, train_on_inputs,
adapter (lora|full), lora_model_dir, lora_r, lora_alpha, lora_dropout, lora_target_modules,
use_rslora, micro_batch_size, gradient_accumulation_steps, num_epochs, max_steps,
learning_rate, lr_scheduler (cosine|linear|constant), warmup_steps, warmup_ratio,
weight_decay, max_grad_norm, gradient_checkpointing (true|false|auto), max_memory, bf16, fp16, loss_scale (dynamic|none|N),
loss_scale_init, loss_scale_growth_interval, loss_scale_min, seed, backend,
strategy (auto|ddp|zero2|zero3|pipeline: several ranks replicate the model, shard the optimizer
state, or also shard the frozen base's layers; pipeline splits the layers over the ranks; auto
takes the first of ddp, zero2, zero3 that fits max_memory), output_dir,
save_steps, save_total_limit, eval_steps, logging_steps, resume_from_checkpoint.

Outputs in output_dir: adapter_model.safetensors + adapter_config.json (PEFT; LoRA) or a HF
model directory (full), metrics.jsonl, loss.svg, checkpoint-N/ every save_steps.
Ctrl-C (SIGINT) or SIGTERM finishes the current step, saves a checkpoint and exits 0.

Examples:
  fitlm train examples/llama-3.1-8b-lora-24gb.yaml
  fitlm train my.yaml --max_steps=200 --learning_rate=1e-4 --backend=cuda
  fitlm train my.yaml --resume                      # latest checkpoint in output_dir
  fitlm train my.yaml --resume out/checkpoint-400
  fitlm train my.yaml --adapter out/previous-adapter  # continue a PEFT adapter
  fitlm train my.yaml --check                        # validate only
  fitlm train my.yaml --nproc 2 --strategy=zero3     # 2 GPUs (or CPU ranks), base sharded
  fitlm train my.yaml --nproc 2 --strategy=pipeline  # half of the layers on each GPU
See docs/training.md.)");
  CLI::App* self = &app;
  return [o, self] { return run_train(*o, self->remaining()); };
}

CommandRegistration reg{"train", "Fine-tune a model (LoRA or full) from a YAML config", setup};

}  // namespace
}  // namespace fitlm::cli
