#include "fitlm/train/optimizer.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace fitlm::train {

double lr_multiplier(SchedulerKind kind, int64_t step, int64_t warmup_steps, int64_t total_steps) {
  if (step < warmup_steps)
    return static_cast<double>(step) / static_cast<double>(std::max<int64_t>(1, warmup_steps));
  const double rest = static_cast<double>(std::max<int64_t>(1, total_steps - warmup_steps));
  switch (kind) {
    case SchedulerKind::kConstant: return 1.0;
    case SchedulerKind::kLinear:
      return std::max(0.0, static_cast<double>(total_steps - step) / rest);
    case SchedulerKind::kCosine: {
      // num_cycles = 0.5: one half cosine from 1 to 0 over the post-warmup steps.
      const double progress = static_cast<double>(step - warmup_steps) / rest;
      return std::max(0.0, 0.5 * (1.0 + std::cos(std::numbers::pi * 2.0 * 0.5 * progress)));
    }
  }
  return 1.0;
}

int64_t resolve_warmup_steps(const TrainConfig& c, int64_t total_steps) {
  if (c.warmup_steps > 0) return c.warmup_steps;
  return static_cast<int64_t>(std::ceil(c.warmup_ratio * static_cast<double>(total_steps)));
}

OptimizerStepResult adamw_update(Backend& backend, std::vector<Param>& params,
                                 const AdamWParams& hyper, double max_grad_norm, double loss_scale,
                                 const std::function<double(double)>& sum_partials) {
  OptimizerStepResult r;
  double sq = 0.0;  // f64: finite f32 grads never overflow it, so inf/NaN means a grad is
  for (const Param& p : params) sq += backend.sum_squares(p.grad);
  if (sum_partials) sq = sum_partials(sq);
  r.grad_norm = std::sqrt(sq) / loss_scale;
  if (!std::isfinite(r.grad_norm)) return r;
  if (max_grad_norm > 0.0) r.clip_scale = std::min(1.0, max_grad_norm / (r.grad_norm + 1e-6));
  // Without loss scaling this is exactly clip_scale (the historical, bit-tested path).
  const float grad_scale = loss_scale == 1.0 ? static_cast<float>(r.clip_scale)
                                             : static_cast<float>(r.clip_scale / loss_scale);
  for (Param& p : params) {
    AdamWParams h = hyper;
    if (!p.decay) h.weight_decay = 0.0f;
    backend.adamw_step(p.master, p.grad, p.adam_m, p.adam_v, h, grad_scale);
    if (p.master.data != p.value.data) backend.copy(p.master, p.value);
  }
  r.applied = true;
  return r;
}

}  // namespace fitlm::train
