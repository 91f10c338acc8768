#include "fitlm/dist/pipeline.h"

#include "fitlm/core/error.h"
#include "fitlm/dist/pipeline_schedule.h"

namespace fitlm::dist {

PipelineStrategy::PipelineStrategy(Comm& comm, std::vector<RunShape::Stage> stages)
    : comm_(comm), stages_(std::move(stages)) {
  if (static_cast<int>(stages_.size()) != comm_.world_size())
    throw_internal_error("pipeline", "{} stages for {} ranks", stages_.size(), comm_.world_size());
}

void PipelineStrategy::shape(RunShape& s) const {
  // One rank is the whole model: no stage, the single-process run.
  if (split()) s.stage = stages_[static_cast<size_t>(comm_.rank())];
}

double PipelineStrategy::forward_backward(Transformer& model, std::span<const TokenBatch> micro,
                                          float grad_scale, const SetSeed& set_seed) {
  if (!split()) return Strategy::forward_backward(model, micro, grad_scale, set_seed);
  const int stage = comm_.rank(), stages = comm_.world_size();
  const bool last = stage + 1 == stages;
  double loss_sum = 0.0;
  for (const PipelineStep& step :
       one_f_one_b_steps(stage, stages, static_cast<int>(micro.size()))) {
    const TokenBatch& batch = micro[static_cast<size_t>(step.micro)];
    const int64_t t = batch.size();
    switch (step.kind) {
      case StepKind::kRecvInput: comm_.recv(model.stage_input(step.slot, t), stage - 1); break;
      case StepKind::kForward:
        set_seed(static_cast<size_t>(step.micro));
        if (last) {
          loss_sum += model.forward_backward(batch, grad_scale).loss_sum;
        } else {
          model.stage_forward(batch, step.slot, /*keep_for_backward=*/true);
        }
        break;
      case StepKind::kRecvGradient: comm_.recv(model.stage_gradient(t), stage + 1); break;
      case StepKind::kSendOutput: comm_.send(model.stage_output(t), stage + 1); break;
      case StepKind::kBackward:
        set_seed(static_cast<size_t>(step.micro));  // the forward's dropout masks, recomputed
        model.stage_backward(batch, step.slot);
        break;
      case StepKind::kSendGradient: comm_.send(model.stage_gradient(t), stage - 1); break;
    }
  }
  return loss_sum;
}

// Blocking sends make this a pipeline too: stage s sends batch i's output once stage s+1 asks
// for it, which is when it has passed batch i − 1 on.
LossResult PipelineStrategy::forward_loss(Transformer& model, const TokenBatch& batch) {
  if (!split()) return model.forward_loss(batch);
  const int stage = comm_.rank();
  const int64_t t = batch.size();
  if (stage > 0) comm_.recv(model.stage_input(0, t), stage - 1);
  if (stage + 1 == comm_.world_size()) return model.forward_loss(batch);
  model.stage_forward(batch, 0, /*keep_for_backward=*/false);
  comm_.send(model.stage_output(t), stage + 1);
  return {};
}

LossResult PipelineStrategy::total_loss(LossResult r) {
  if (!split()) return r;
  // Only the last stage holds losses: sums with zeros are exact.
  r.loss_sum = comm_.all_reduce_sum(r.loss_sum);
  r.tokens = static_cast<int64_t>(comm_.all_reduce_sum(static_cast<double>(r.tokens)));
  return r;
}

}  // namespace fitlm::dist
