// ZeRO-2 style optimizer sharding: rank r keeps only its block (core/shard.h) of every trainable
// tensor's f32 master and AdamW moments — RunShape::optimizer_shard plans them at block size, so
// their memory is divided by the world size. Per step:
//   gradients: reduce_scatter_sum_blocks of every trainable gradient, in place: block r then
//     holds the global step's rank-order sum (the other blocks are stale and unused);
//   update: AdamW over the rank's blocks only; the global gradient norm for clipping is the
//     rank-order sum of the ranks' partial sums of squares;
//   values: the updated block is cast into the compute-dtype value and all_gather_blocks
//     brings every rank's block to every rank.
// Communication per step equals ddp's all-reduce (reduce-scatter + all-gather). Gradients are
// still full-sized on every rank while the micro-batches accumulate (f32, as ddp): the
// per-layer reduce-scatter that would keep only a block of them is not built, so this saves
// the masters' and moments' 12 bytes per parameter × (N−1)/N, not the gradients' 4.
// Masters are whole only on demand: gather_masters rebuilds them in the gradient buffers
// (Param::full_master) for saving.
#pragma once

#include "fitlm/dist/strategy.h"

namespace fitlm::dist {

class Zero2Strategy : public Strategy {
 public:
  explicit Zero2Strategy(Comm& comm) : comm_(comm) {}
  std::string name() const override { return "zero2"; }
  void shape(RunShape& s) const override;
  void reduce_gradients(Transformer& model) override;
  std::vector<Param>& optimizer_slots(Transformer& model) override;
  double sum_partials(double v) override { return comm_.all_reduce_sum(v); }
  void after_update(Transformer& model) override;
  void gather_masters(Transformer& model) override;
  bool shards_optimizer() const override { return comm_.world_size() > 1; }

 protected:
  Comm& comm_;

 private:
  std::vector<Param> slots_;  // this rank's blocks of optimizer_params(), built on first use
};

}  // namespace fitlm::dist
