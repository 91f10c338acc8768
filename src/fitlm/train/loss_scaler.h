// Loss scaling for fp16 training, with torch.cuda.amp.GradScaler's semantics.
//
// fp16 has 5 exponent bits: gradients below ~6e-8 flush to zero. The trainer multiplies the
// loss gradient by `scale()` so small gradients stay representable, divides the parameter
// gradients by it again before clipping and AdamW, and skips the optimizer step when any
// gradient overflowed to inf/NaN. `update(found_inf)` then adapts the scale:
//
// - found_inf: scale ← max(scale · backoff_factor, min_scale), growth tracker ← 0;
// - otherwise: tracker + 1; after `growth_interval` consecutive good steps the scale grows by
//   growth_factor (only when the result is finite) and the tracker restarts at 0.
//
// Defaults are GradScaler's (65536, ×2, ×0.5, 2000). `min_scale` is the one addition
// (DeepSpeed's min_loss_scale, default 1): at the floor, backing off cannot help any more, and
// the trainer treats another overflow as divergence instead of skipping steps forever. A fixed
// (non-dynamic) scaler never changes its scale and is always at its floor.
#pragma once

#include <cstdint>

namespace fitlm::train {

struct LossScalerOptions {
  bool dynamic = true;
  double init_scale = 65536.0;  // the fixed scale when !dynamic
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;
  double min_scale = 1.0;
};

// What a checkpoint stores so that a resumed run scales exactly as an uninterrupted one.
struct LossScalerState {
  double scale = 65536.0;
  int64_t growth_tracker = 0;  // consecutive good steps since the last growth or backoff
};

class LossScaler {
 public:
  explicit LossScaler(const LossScalerOptions& options = {});

  double scale() const { return state_.scale; }
  int64_t growth_tracker() const { return state_.growth_tracker; }
  bool dynamic() const { return options_.dynamic; }
  const LossScalerOptions& options() const { return options_; }
  // True when an overflow could not lower the scale any further (fixed, or at min_scale).
  bool at_min() const { return !options_.dynamic || state_.scale <= options_.min_scale; }

  // After every optimizer step (skipped or not).
  void update(bool found_inf);

  LossScalerState state() const { return state_; }
  void load_state(const LossScalerState& s) { state_ = s; }

 private:
  LossScalerOptions options_;
  LossScalerState state_;
};

}  // namespace fitlm::train
