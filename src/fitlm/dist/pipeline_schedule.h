// The 1F1B schedule of a pipeline (RunShape::stage): which micro-batch each stage runs forward
// or backward, in order. Stage s of S first runs S − s − 1 forwards (the warm-up that fills the
// pipeline), then alternates one forward and one backward, then runs the remaining backwards;
// the last stage runs each micro-batch's forward and backward as one (the loss sits between).
// So stage s never holds more than min(S − s, M) micro-batches between their forward and their
// backward — its activation slots — where running every forward first (GPipe) would hold M.
#pragma once

#include <vector>

namespace fitlm::dist {

struct PipelineOp {
  bool forward;  // forward (the last stage: forward and backward); else backward
  int micro;     // the micro-batch, 0 .. M − 1
  int slot;      // its activation slot on this stage: micro mod in_flight
};

// Stage `stage` of `stages`, `micro_batches` micro-batches per optimizer step.
std::vector<PipelineOp> one_f_one_b(int stage, int stages, int micro_batches);
// The most micro-batches stage `stage` holds between forward and backward under one_f_one_b.
int one_f_one_b_in_flight(int stage, int stages, int micro_batches);

}  // namespace fitlm::dist
