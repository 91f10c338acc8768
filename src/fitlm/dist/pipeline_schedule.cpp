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

}  // namespace fitlm::dist
