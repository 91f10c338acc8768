#include "fitlm/dist/pipeline_schedule.h"

#include <algorithm>

#include "fitlm/core/error.h"

namespace fitlm::dist {

int one_f_one_b_in_flight(int stage, int stages, int micro_batches) {
  if (stages < 1 || stage < 0 || stage >= stages || micro_batches < 1)
    throw_internal_error("pipeline", "stage {} of {} with {} micro-batches", stage, stages,
                         micro_batches);
  return std::min(stages - stage, micro_batches);
}

std::vector<PipelineOp> one_f_one_b(int stage, int stages, int micro_batches) {
  const int slots = one_f_one_b_in_flight(stage, stages, micro_batches);
  auto op = [&](bool forward, int m) { return PipelineOp{forward, m, m % slots}; };
  std::vector<PipelineOp> ops;
  if (stage + 1 == stages) {
    for (int m = 0; m < micro_batches; ++m) ops.push_back(op(true, m));
    return ops;
  }
  const int warmup = std::min(micro_batches, stages - stage - 1);
  for (int m = 0; m < warmup; ++m) ops.push_back(op(true, m));
  for (int m = warmup; m < micro_batches; ++m) {
    ops.push_back(op(true, m));
    ops.push_back(op(false, m - warmup));
  }
  for (int m = micro_batches - warmup; m < micro_batches; ++m) ops.push_back(op(false, m));
  return ops;
}

std::vector<PipelineStep> one_f_one_b_steps(int stage, int stages, int micro_batches) {
  const bool first = stage == 0, last = stage + 1 == stages;
  std::vector<PipelineStep> steps;
  auto add = [&](StepKind k, const PipelineOp& op) { steps.push_back({k, op.micro, op.slot}); };
  const std::vector<PipelineOp> ops = one_f_one_b(stage, stages, micro_batches);
  // Whether each backward's gradient was already received by the forward before it.
  std::vector<bool> received(static_cast<size_t>(micro_batches), false);
  const int warmup = std::min(micro_batches, stages - stage - 1);
  for (size_t i = 0; i < ops.size(); ++i) {
    const PipelineOp& op = ops[i];
    if (op.forward) {
      if (!first) add(StepKind::kRecvInput, op);
      add(StepKind::kForward, op);
      if (last) {
        if (!first) add(StepKind::kSendGradient, op);
        continue;
      }
      // Steady state (past the warm-up forwards): the backward that follows needs its gradient;
      // receive it before sending this output.
      if (op.micro >= warmup) {
        add(StepKind::kRecvGradient, ops[i + 1]);
        received[static_cast<size_t>(ops[i + 1].micro)] = true;
      }
      add(StepKind::kSendOutput, op);
    } else {
      if (!received[static_cast<size_t>(op.micro)]) add(StepKind::kRecvGradient, op);
      add(StepKind::kBackward, op);
      if (!first) add(StepKind::kSendGradient, op);
    }
  }
  return steps;
}

std::vector<int> one_f_one_b_in_flight_per_stage(int stages, int micro_batches) {
  std::vector<int> out;
  for (int s = 0; s < stages; ++s) out.push_back(one_f_one_b_in_flight(s, stages, micro_batches));
  return out;
}

}  // namespace fitlm::dist
