// Training checkpoints: output_dir/checkpoint-N holds everything a run needs to continue
// bit-identically from step N — the f32 master of every trainable tensor, AdamW m and v, and
// trainer_state.json (step, data-loader position, seed, dataset fingerprint, and the loss
// scale and its growth tracker under fp16 loss scaling). For LoRA runs
// the directory is also a PEFT adapter (adapter_config.json + adapter_model.safetensors), so a
// checkpoint can be evaluated or shipped as is.
//
// Crash safety: everything is written into output_dir/.tmp-checkpoint-N (each file fsynced),
// the directory is fsynced and renamed to checkpoint-N, then output_dir is fsynced. A kill at
// any moment leaves either no checkpoint-N or a complete one.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "fitlm/model/transformer.h"
#include "fitlm/text/pack.h"
#include "fitlm/train/loss_scaler.h"

namespace fitlm::train {

struct TrainerState {
  int64_t global_step = 0;  // optimizer steps done
  int64_t total_steps = 0;  // of the whole run (resume refuses a different value)
  StreamPosition data;      // the next micro-batch
  uint64_t seed = 0;        // every random stream derives from (seed, step)
  uint64_t data_fingerprint = 0;
  std::string adapter;  // "lora" | "full"
  // Loss scaling: a step whose gradients overflow is skipped. It counts as a global step, but
  // neither the lr schedule nor AdamW's bias-correction count advance (as HF Trainer with
  // torch's GradScaler), so those follow `optimizer_steps`. Checkpoints without these fields
  // (older runs) read as optimizer_steps = global_step, no skips, no scaler.
  int64_t optimizer_steps = 0;  // updates actually applied
  int64_t skipped_steps = 0;
  std::optional<LossScalerState> loss_scaler;  // when loss scaling is on
};

// Writes checkpoint-<state.global_step> atomically; `base_model` goes into adapter_config.json.
std::filesystem::path save_checkpoint(Transformer& model, const TrainerState& state,
                                      const std::filesystem::path& output_dir,
                                      const std::string& base_model,
                                      const std::filesystem::path& config_file);

// Restores params (master, then value), AdamW state; returns the trainer state. Errors name
// the file and tensor when the checkpoint does not match the model.
TrainerState load_checkpoint(Transformer& model, const std::filesystem::path& dir);

// The checkpoint-N with the largest N that is complete, or nullopt.
std::optional<std::filesystem::path> latest_checkpoint(const std::filesystem::path& output_dir);

// Deletes the oldest checkpoint-N so that at most `keep` remain (keep 0 = keep all), and any
// .tmp-checkpoint-* left by a killed run.
void prune_checkpoints(const std::filesystem::path& output_dir, int64_t keep);

// fsyncs a directory so that renames inside it survive a crash.
void fsync_dir(const std::filesystem::path& dir);

}  // namespace fitlm::train
