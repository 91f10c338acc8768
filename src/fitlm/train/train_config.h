// The training config: one YAML file with axolotl-style keys, every key also settable on the
// command line as `--key=value` (the value is read as YAML, so `--datasets=[{path: a.jsonl,
// type: alpaca}]` works too). Unknown keys and wrong types are input errors (exit code 2) that
// name the key and suggest the closest known one, and `validate_train_config` checks the files
// and directories a run needs before a single step is taken.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "fitlm/text/dataset_config.h"

namespace fitlm::train {

enum class AdapterKind { kLora, kFull };
enum class SchedulerKind { kCosine, kLinear, kConstant };
// `loss_scale`: auto (unset) = dynamic when fp16 is on, else none.
enum class LossScaleKind { kAuto, kDynamic, kFixed, kNone };

struct TrainConfig {
  std::filesystem::path config_path;  // where the YAML came from ("" for tests)
  std::filesystem::path config_dir;   // relative paths not found as written resolve here

  // model and data
  std::string base_model;  // HF model directory (config.json, safetensors, tokenizer.json)
  std::vector<DatasetSource> datasets;
  std::vector<DatasetSource> test_datasets;  // eval set; else val_set_size of the train data
  double val_set_size = 0.0;                 // fraction held out for eval loss
  int64_t sequence_len = 2048;
  bool sample_packing = false;
  bool pad_to_sequence_len = false;
  bool train_on_inputs = false;
  std::string on_bad_row = "fail";
  std::string chat_template;  // "" = the tokenizer's own (tokenizer_config.json) when it has one

  // adapter
  AdapterKind adapter = AdapterKind::kLora;
  std::string lora_model_dir;  // existing PEFT adapter to continue training
  int lora_r = 8;
  double lora_alpha = 16.0;
  double lora_dropout = 0.0;
  std::vector<std::string> lora_target_modules = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                                  "gate_proj", "up_proj", "down_proj"};
  bool use_rslora = false;
  // QLoRA (axolotl's keys): `adapter: qlora` = lora + load_in_4bit. The base's linear weights
  // are quantized on load (NF4/FP4, bitsandbytes' rules) unless the checkpoint is 4-bit already.
  bool load_in_4bit = false;
  std::string bnb_4bit_quant_type = "nf4";
  bool bnb_4bit_use_double_quant = true;
  std::string bnb_4bit_compute_dtype;  // bfloat16/float16/float32; must agree with bf16/fp16

  // optimisation
  int64_t micro_batch_size = 1;
  // `micro_batch_size: auto`: the planner's search (train/auto_choice.h) picks it under
  // max_memory; `global_batch_size` (sequences per optimizer step) then sets the accumulation.
  bool micro_batch_auto = false;
  int64_t global_batch_size = 0;
  int64_t gradient_accumulation_steps = 1;
  bool gradient_accumulation_set = false;  // given in the config: strategy pipeline defaults to 4N
  double num_epochs = 1.0;
  int64_t max_steps = 0;  // > 0 overrides num_epochs
  double learning_rate = 2e-4;
  SchedulerKind lr_scheduler = SchedulerKind::kCosine;
  int64_t warmup_steps = 0;
  double warmup_ratio = 0.0;  // used when warmup_steps is 0: ceil(ratio · total steps), as HF
  double weight_decay = 0.0;
  double max_grad_norm = 1.0;  // 0 = no clipping
  double adam_beta1 = 0.9;
  double adam_beta2 = 0.999;
  double adam_epsilon = 1e-8;
  bool gradient_checkpointing = false;
  bool gradient_checkpointing_auto = false;  // `auto`: recompute the fewest layers under max_memory
  size_t max_memory = 0;                     // device bytes fitlm may use (0 = no cap)
  // `max_memory: [15GiB, 23GiB]`: one cap per GPU of a node. Data-parallel ranks run one plan,
  // so they all plan for max_memory = the smallest; the list is checked against the ranks.
  std::vector<size_t> max_memory_per_gpu;
  bool bf16 = false;
  bool fp16 = false;
  // Loss scaling (loss_scaler.h, GradScaler semantics): multiply the loss gradient by the scale,
  // unscale before clipping/AdamW, skip steps whose gradients overflow.
  LossScaleKind loss_scale = LossScaleKind::kAuto;
  double loss_scale_value = 0.0;  // the scale when kFixed
  double loss_scale_init = 65536.0;
  int64_t loss_scale_growth_interval = 2000;
  double loss_scale_min = 1.0;  // an overflow at this scale is divergence
  uint64_t seed = 42;

  // runtime and outputs
  std::string backend = "cpu";  // cpu | cuda | cuda:N
  // Several ranks (mpirun, `fitlm train --nproc N`): ddp, zero2, zero3, pipeline
  // (dist/strategy.h), or auto: with max_memory, the planner's fastest candidate that fits
  // (train/auto_choice.h); without, ddp.
  std::string strategy = "auto";
  // `offload: [weights, optimizer, activations]` (or some of them): what lives in host memory
  // instead of the device. weights: every decoder layer's frozen weights (LoRA, QLoRA), copied
  // in per layer (RunShape::offload_layers); optimizer: the f32 masters and AdamW moments
  // (RunShape::offload_optimizer); activations: every layer's input, kept for backward
  // (RunShape::offload_activations).
  bool offload_weights = false;
  bool offload_optimizer = false;
  bool offload_activations = false;
  std::filesystem::path output_dir = "outputs";
  int64_t save_steps = 0;        // 0 = only the final output (and on SIGINT/SIGTERM)
  int64_t save_total_limit = 0;  // 0 = keep every checkpoint
  int64_t eval_steps = 0;        // 0 = evaluate only at the end (when there is an eval set)
  int64_t logging_steps = 10;
  std::string resume_from_checkpoint;  // "" none, "latest", or a checkpoint directory
};

// Every key the config accepts, in the order `fitlm train --help` lists them.
const std::vector<std::string>& train_config_keys();

// Reads YAML text, then applies `overrides` ("key=value" pairs, already stripped of "--").
// `source` names the file in messages.
TrainConfig parse_train_config(const std::string& yaml_text, const std::filesystem::path& source,
                               const std::vector<std::string>& overrides = {});
TrainConfig load_train_config(const std::filesystem::path& path,
                              const std::vector<std::string>& overrides = {});

// Checks that the run can start: model dir with config.json, dataset files, output_dir
// writable, consistent values. Throws an input error naming the key.
void validate_train_config(const TrainConfig& c);

// The closest key by edit distance (Levenshtein), or "" when nothing is close.
std::string closest_key(const std::string& key, const std::vector<std::string>& candidates);

}  // namespace fitlm::train
