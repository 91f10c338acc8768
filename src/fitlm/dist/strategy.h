// Strategy: how the ranks of a data-parallel job share the work of one optimizer step
// (DESIGN.md: "a strategy is an object the step loop calls at fixed points"). The trainer runs
// the same loop for every strategy — forward/backward of this rank's micro-batches, then these
// calls in this order — and never branches on which one it has:
//
//   shape(run_shape)              before the plan: what each rank keeps (shards)
//   attach(model)                 after the model is built, before its weights are loaded
//   ... load weights, init LoRA, resume ...
//   per step:
//     forward_backward(model, ...)  this rank's micro-batches (data parallel: its run of them;
//                                  a pipeline stage: all of them, in its 1F1B schedule)
//     reduce_gradients(model)     the whole global step's gradient sums, in rank order
//     optimizer_slots(model)      the tensors this rank's AdamW updates (views)
//     sum_partials(x)             a per-rank partial (‖g‖² over the slots) → the global value
//     after_update(model)         every rank's values current again
//   gather_masters(model)         before masters are saved (checkpoint, adapter, model)
//
// ddp (ddp.h) replicates everything and all-reduces the gradients; zero2 (zero2.h) keeps each
// rank's block of the f32 masters and AdamW moments, reduce-scatters the gradients, updates its
// block and all-gathers the new values; zero3 (zero3.h) also shards the frozen base's layers and
// gathers each before it runs; pipeline (pipeline.h) gives each rank a stage of the layers and
// runs every micro-batch through the stages. With one rank every strategy is the single-process
// run.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "fitlm/dist/comm.h"
#include "fitlm/model/transformer.h"

namespace fitlm::dist {

class Strategy {
 public:
  virtual ~Strategy() = default;
  virtual std::string name() const = 0;

  virtual void shape(RunShape&) const {}
  virtual void attach(Transformer&) {}
  // Forward and backward of `micro`, the micro-batches this rank takes part in (the trainer's
  // slice: the rank's run of the global step, or all of them for a pipeline); set_seed(j) sets
  // the dropout seed of micro[j]. Returns the loss sum this rank computed (a pipeline: only the
  // last stage computes losses); the trainer sums it over the ranks. Default: one after the
  // other, on this rank's whole model.
  using SetSeed = std::function<void(size_t)>;
  virtual double forward_backward(Transformer& model, std::span<const TokenBatch> micro,
                                  float grad_scale, const SetSeed& set_seed);
  // Evaluation, batch by batch, then the total over the batches on every rank. Default: every
  // rank evaluates on its own whole model, and its total is everyone's.
  virtual LossResult forward_loss(Transformer& model, const TokenBatch& batch);
  virtual LossResult total_loss(LossResult r) { return r; }
  virtual void reduce_gradients(Transformer& model) = 0;
  virtual std::vector<Param>& optimizer_slots(Transformer& model) = 0;
  virtual double sum_partials(double v) = 0;
  virtual void after_update(Transformer&) {}
  virtual void gather_masters(Transformer&) {}
  // Whether each rank keeps its own block of the optimizer state (then checkpoints hold one
  // file per rank, train/checkpoint.h).
  virtual bool shards_optimizer() const { return false; }
  // Whether each rank holds only some of the model's tensors (a pipeline stage): then each rank
  // writes its part of the adapter or model, and the lead rank joins them (train/trainer.cpp).
  virtual bool splits_model() const { return false; }
};

// "ddp", "zero2", "zero3" ("auto" is ddp until the planner chooses); another name is an input
// error. A pipeline needs its stages: make_pipeline_strategy (pipeline.h).
std::unique_ptr<Strategy> make_strategy(const std::string& name, Comm& comm);

}  // namespace fitlm::dist
