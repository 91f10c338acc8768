// The training loop behind `fitlm train`: config → data → model → steps → checkpoints →
// PEFT adapter (LoRA) or HF model directory (full fine-tuning).
//
// One optimizer step = gradient_accumulation_steps micro-batches. Every micro-batch's gradient
// is scaled by 1 / (scored tokens of the whole step), so k micro-batches of m rows give the
// same update as one batch of k·m rows (up to fp32 summation order), as in HF's
// `num_items_in_batch` loss normalisation.
//
// Determinism: LoRA init, data order and dropout masks derive from `seed` and the step number
// only, and a checkpoint stores f32 masters, AdamW state and the data-loader position, so a
// run resumed from checkpoint-N produces bit-identical weights to one that never stopped.
//
// fp16 (or `loss_scale`): dynamic loss scaling as torch's GradScaler (loss_scaler.h). A step
// whose gradients overflow is skipped — no update, the scale backs off — and still counts as a
// step; the lr schedule and AdamW's step count follow the updates actually applied.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>

#include "fitlm/train/metrics.h"
#include "fitlm/train/train_config.h"

namespace fitlm::train {

struct TrainSummary {
  int64_t start_step = 0;  // > 0 when resumed
  int64_t steps_done = 0;  // global step at the end
  int64_t total_steps = 0;
  double first_loss = NAN;  // of this process's first step
  double last_loss = NAN;
  std::optional<double> eval_loss;  // final
  bool interrupted = false;         // stopped by SIGINT/SIGTERM after checkpointing
  int64_t skipped_steps = 0;        // of the whole run (resumed runs include earlier ones)
  double loss_scale = 0.0;          // at the end; 0 without loss scaling
  double seconds = 0.0;
  std::filesystem::path output_dir;
  bool lead = true;  // rank 0 (or the only process): the one that reports
};

struct TrainHooks {
  std::function<void(const StepMetrics&)> on_step;  // after each optimizer step
  bool handle_signals = true;  // SIGINT/SIGTERM: finish the step, checkpoint, stop
  bool show_progress = true;   // false: no bar or step log lines (embedding, e.g. the demo)
};

// Validates, trains, writes the outputs. Errors are fitlm::Error: input errors (exit 2)
// before any step, ExitCode::kDiverged when the loss becomes NaN/inf (nothing is saved then);
// under loss scaling, when gradients overflow even at the minimum scale.
TrainSummary run_training(const TrainConfig& config, const TrainHooks& hooks = {});

// Asks a running run_training to stop after the current step (what the signal handler does).
void request_stop();

}  // namespace fitlm::train
