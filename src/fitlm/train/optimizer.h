// The optimizer step of training: learning-rate schedules with HF transformers' semantics,
// global-norm gradient clipping, and decoupled AdamW over every trainable Param.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "fitlm/model/transformer.h"
#include "fitlm/train/train_config.h"

namespace fitlm::train {

// lr multiplier at optimizer step `step` (0-based: the value HF's LambdaLR gives the step after
// `step` scheduler.step() calls), exactly transformers' get_{cosine,linear,constant}_schedule_
// with_warmup: linear warmup step/warmup, then cosine 0.5·(1+cos(π·progress)), linear
// (total−step)/(total−warmup), or 1.
double lr_multiplier(SchedulerKind kind, int64_t step, int64_t warmup_steps, int64_t total_steps);

// HF's warmup: warmup_steps when set, else ceil(warmup_ratio · total_steps).
int64_t resolve_warmup_steps(const TrainConfig& c, int64_t total_steps);

struct OptimizerStepResult {
  double grad_norm = 0.0;  // of the unscaled grads, before clipping (inf/NaN: overflow)
  double clip_scale = 1.0;
  bool applied = false;  // false when grad_norm is not finite: no param, m or v was touched
};

// Applies one AdamW step to every param of `params` (1-based `step` for bias correction): the
// grads hold loss_scale · g (loss scaling, loss_scaler.h; 1 = none) and are multiplied by
// min(1, max_grad_norm / (‖g‖ + 1e-6)) / loss_scale as torch's GradScaler.unscale_ +
// clip_grad_norm_ do (max_grad_norm 0 = no clipping), folded into the AdamW kernel's grad
// scale; decay only where Param.decay; after the update the compute-dtype `value` is refreshed
// from the f32 `master` when they differ. When ‖g‖ is inf/NaN nothing is updated (the caller
// skips the step or stops the run). `sum_partials` turns this process's ‖g‖² over `params`
// into the global one when the params are this rank's blocks of a sharded optimizer
// (dist::Strategy::sum_partials); empty: `params` are all of them.
OptimizerStepResult adamw_update(Backend& backend, std::vector<Param>& params,
                                 const AdamWParams& hyper, double max_grad_norm,
                                 double loss_scale = 1.0,
                                 const std::function<double(double)>& sum_partials = {});

}  // namespace fitlm::train
