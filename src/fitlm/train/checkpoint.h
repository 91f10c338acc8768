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

// Several ranks with a sharded optimizer (dist::Strategy::shards_optimizer): each rank's block of
// every optimizer tensor's master and AdamW moments is its own file in the checkpoint,
// optimizer-rank-R-of-N.safetensors ("<name>.master", ".adam_m", ".adam_v", flat, block size),
// and trainer_state.json says "optimizer_shards": N. The ranks write their files into the
// staging directory first; the lead rank then checks that all N are there, writes the rest and
// renames, so a crash leaves no checkpoint-N unless every shard is in it.
// A pipeline's ranks (split_model) also each hold only their stage's tensors: each writes its
// optimizer file whole for its tensors, and its part of a LoRA checkpoint's adapter, which the
// lead merges (model_output.h); trainer_state.json says "pipeline_stages": N.
struct CheckpointRanks {
  int rank = 0;
  int world = 1;
  bool sharded_optimizer = false;  // false: masters and moments are whole on every rank
  bool split_model = false;        // each rank holds its pipeline stage's tensors only
};

// Where checkpoint-<step> is written before its atomic rename.
std::filesystem::path checkpoint_staging_dir(const std::filesystem::path& output_dir, int64_t step);
// Makes that directory fresh and empty (lead rank only; removes a stale one).
std::filesystem::path begin_checkpoint(const std::filesystem::path& output_dir, int64_t step);
// This rank's optimizer file into `staging_dir` (fsynced), for a sharded optimizer, and with
// a split model its part of a LoRA checkpoint's adapter.
void write_optimizer_shard(Transformer& model, const std::filesystem::path& staging_dir,
                           const CheckpointRanks& ranks);

// Writes checkpoint-<state.global_step> atomically; `base_model` goes into adapter_config.json.
// With ranks.sharded_optimizer the staging directory (begin_checkpoint) already holds every
// rank's optimizer file, and the masters the adapter is written from are whole
// (Strategy::gather_masters); otherwise it starts the staging directory itself.
std::filesystem::path save_checkpoint(Transformer& model, const TrainerState& state,
                                      const std::filesystem::path& output_dir,
                                      const std::string& base_model,
                                      const std::filesystem::path& config_file,
                                      const CheckpointRanks& ranks = {});

// Restores params (master, then value), AdamW state; returns the trainer state. Errors name
// the file and tensor when the checkpoint does not match the model, and when it was written by
// another number of ranks with a sharded optimizer (or one is missing its file).
TrainerState load_checkpoint(Transformer& model, const std::filesystem::path& dir,
                             const CheckpointRanks& ranks = {});

// The checkpoint-N with the largest N that is complete, or nullopt.
std::optional<std::filesystem::path> latest_checkpoint(const std::filesystem::path& output_dir);

// Deletes the oldest checkpoint-N so that at most `keep` remain (keep 0 = keep all), and any
// .tmp-checkpoint-* left by a killed run.
void prune_checkpoints(const std::filesystem::path& output_dir, int64_t keep);

// fsyncs a directory so that renames inside it survive a crash.
void fsync_dir(const std::filesystem::path& dir);

}  // namespace fitlm::train
