#include "fitlm/train/loss_scaler.h"

#include <algorithm>
#include <cmath>

namespace fitlm::train {

LossScaler::LossScaler(const LossScalerOptions& options) : options_(options) {
  state_.scale = options.init_scale;
  state_.growth_tracker = 0;
}

void LossScaler::update(bool found_inf) {
  if (!options_.dynamic) return;
  // torch._amp_update_scale_ (aten/src/ATen/native/cuda/AmpKernels.cu), plus the floor.
  if (found_inf) {
    state_.scale = std::max(state_.scale * options_.backoff_factor, options_.min_scale);
    state_.growth_tracker = 0;
    return;
  }
  const int64_t successful = state_.growth_tracker + 1;
  if (successful >= options_.growth_interval) {
    const double grown = state_.scale * options_.growth_factor;
    // Grow only while the result is finite, as PyTorch (which keeps the scale in an f32 tensor;
    // here it is f64 because it multiplies the per-token gradient scale 1/scored tokens).
    if (std::isfinite(grown)) state_.scale = grown;
    state_.growth_tracker = 0;
  } else {
    state_.growth_tracker = successful;
  }
}

}  // namespace fitlm::train
