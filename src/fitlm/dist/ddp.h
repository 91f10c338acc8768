// Data parallel with a replicated model: every rank holds every weight, gradient, master and
// AdamW moment; after its micro-batches each rank all-reduces the gradients (rank-order sums,
// comm.h) and runs the same update, so all ranks stay bit-identical without exchanging weights.
#pragma once

#include "fitlm/dist/strategy.h"

namespace fitlm::dist {

class DdpStrategy final : public Strategy {
 public:
  explicit DdpStrategy(Comm& comm) : comm_(comm) {}
  std::string name() const override { return "ddp"; }
  void reduce_gradients(Transformer& model) override;
  std::vector<Param>& optimizer_slots(Transformer& model) override {
    return model.optimizer_params();
  }
  double sum_partials(double v) override { return v; }  // every rank sees whole gradients

 private:
  Comm& comm_;
};

}  // namespace fitlm::dist
