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

// The same schedule with its communication, for send and recv that block until the peer
// matches them (Comm). Sending each output as soon as it is computed deadlocks (stage s sends
// its second output while stage s+1 sends the first gradient), so a steady-state forward first
// receives the gradient its stage's next backward needs, then sends its output; warm-up forwards
// send at once, backwards send their input's gradient at once, and cool-down backwards receive
// theirs first. Every link (s, s+1) then carries h₀ … h_w, g₀, h_{w+1}, g₁, … in the same order
// from both ends. The first stage receives no input and sends no gradient; the last receives no
// gradient and sends no output (its forward is forward and backward).
enum class StepKind {
  kRecvInput,     // the micro-batch's hidden state from stage − 1, into its slot
  kForward,       // this stage's layers (the last stage: with the loss and backward)
  kRecvGradient,  // ∂L/∂output of a micro-batch from stage + 1
  kSendOutput,    // the micro-batch's output to stage + 1
  kBackward,      // this stage's backward
  kSendGradient,  // ∂L/∂input to stage − 1
};
struct PipelineStep {
  StepKind kind;
  int micro;
  int slot;
};
std::vector<PipelineStep> one_f_one_b_steps(int stage, int stages, int micro_batches);
// The most micro-batches stage `stage` holds between forward and backward under one_f_one_b.
int one_f_one_b_in_flight(int stage, int stages, int micro_batches);
// The same for every stage, stage 0 first (what the planner sizes each stage's slots by).
std::vector<int> one_f_one_b_in_flight_per_stage(int stages, int micro_batches);

}  // namespace fitlm::dist
