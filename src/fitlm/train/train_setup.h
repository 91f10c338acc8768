// Everything a training run needs before its first step, built in this order: the ranks (Comm)
// and the strategy, the model's config, the data, the backend, the plan, the model with its
// weights (and LoRA init or adapter), then the resume point. Split from the step loop
// (trainer.cpp) so that strategies and new model families add to one of the two, not both.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>

#include "fitlm/dist/comm.h"
#include "fitlm/dist/launch_env.h"
#include "fitlm/dist/strategy.h"
#include "fitlm/model/transformer.h"
#include "fitlm/text/pack.h"
#include "fitlm/train/checkpoint.h"
#include "fitlm/train/loss_scaler.h"
#include "fitlm/train/train_config.h"
#include "fitlm/train/train_data.h"

namespace fitlm::train {

// Members are declared in dependency order (destroyed in reverse): the model before the
// backend it allocated from, the strategy before the Comm it talks through.
struct TrainJob {
  TrainConfig config;  // the caller's, with `auto` choices resolved (train/auto_choice.h)
  std::unique_ptr<dist::Comm> comm;
  std::unique_ptr<dist::Strategy> strategy;
  dist::RankEnv rank_env;  // from the launcher (one rank without one)
  int world = 1, rank = 0;
  bool lead = true;  // rank 0: writes checkpoints, metrics, outputs and the progress line

  ModelConfig model_config;
  TrainData data;
  std::unique_ptr<Batcher> batcher, eval_batcher;
  int replicas = 1;         // data-parallel copies of the model: world, or 1 for a pipeline
  int replica = 0;          // which one this rank is part of
  int64_t k_local = 1;      // micro-batches a replica runs per optimizer step
  int64_t k = 1;            // micro-batches of the whole global step (k_local × replicas)
  int64_t total_steps = 0;  // optimizer steps of the run
  int64_t warmup = 0;

  std::unique_ptr<Backend> backend;
  std::optional<LossScaler> scaler;
  bool lora = false;
  size_t device_in_use_before = 0;  // device memory before the arena (0 where unknown)
  std::unique_ptr<Transformer> model;
  int64_t trainable = 0;  // trainable parameters

  TrainerState state;  // at the start: step 0, or the resumed checkpoint's
  std::optional<std::filesystem::path> resumed_from;
  CheckpointRanks checkpoint_ranks() const {
    return {rank, world, strategy->shards_optimizer(), strategy->splits_model()};
  }

  explicit TrainJob(const TrainConfig& c) : config(c) {}
};

// Validates and builds; errors are fitlm::Error (input errors exit 2, a plan over max_memory 3).
std::unique_ptr<TrainJob> setup_training(const TrainConfig& c);

}  // namespace fitlm::train
