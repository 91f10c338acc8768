// Pipeline parallel: rank s of N runs stage s of the model (RunShape::stage: a run of decoder
// layers, the embedding on the first stage, the final norm, LM head and loss on the last), and
// every micro-batch of the global step flows through all stages in the 1F1B order of
// pipeline_schedule.h — hidden states forward and their gradients back by send/recv on the
// Comm, each stage holding at most its planned in-flight micro-batches. Each stage owns its
// parameters whole: no gradient is reduced; the global gradient norm is the rank-order sum of
// the stages' partial sums of squares, and each rank updates, checkpoints (one optimizer file
// per rank, as zero2) and saves (its part of the adapter or model) its own tensors.
// Evaluation streams each batch through the stages (forwards only) and sums the last stage's
// losses on every rank. Pipeline with data parallel across pipeline replicas is not built: the
// ranks are exactly the stages.
#pragma once

#include <vector>

#include "fitlm/dist/strategy.h"

namespace fitlm::dist {

class PipelineStrategy final : public Strategy {
 public:
  // stages[s]: what rank s runs (model/stage_partition.h); one per rank.
  PipelineStrategy(Comm& comm, std::vector<RunShape::Stage> stages);
  std::string name() const override { return "pipeline"; }
  void shape(RunShape& s) const override;
  double forward_backward(Transformer& model, std::span<const TokenBatch> micro, float grad_scale,
                          const SetSeed& set_seed) override;
  void reduce_gradients(Transformer&) override {}  // each stage's gradients are its own
  std::vector<Param>& optimizer_slots(Transformer& model) override {
    return model.optimizer_params();
  }
  double sum_partials(double v) override { return comm_.all_reduce_sum(v); }
  LossResult forward_loss(Transformer& model, const TokenBatch& batch) override;
  LossResult total_loss(LossResult r) override;
  bool shards_optimizer() const override { return split(); }
  bool splits_model() const override { return split(); }

 private:
  bool split() const { return comm_.world_size() > 1; }
  Comm& comm_;
  std::vector<RunShape::Stage> stages_;
};

}  // namespace fitlm::dist
