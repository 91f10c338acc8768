#include "fitlm/dist/zero2.h"

namespace fitlm::dist {
void Zero2Strategy::shape(RunShape& s) const {
  if (comm_.world_size() > 1) s.optimizer_shard = ShardSpec{comm_.rank(), comm_.world_size()};
}

void Zero2Strategy::reduce_gradients(Transformer& model) {
  if (comm_.world_size() == 1) return;
  for (Param& p : model.optimizer_params()) comm_.reduce_scatter_sum_blocks(p.grad);
}

std::vector<Param>& Zero2Strategy::optimizer_slots(Transformer& model) {
  if (comm_.world_size() == 1) return model.optimizer_params();
  if (!slots_.empty()) return slots_;
  for (const Param& p : model.optimizer_params()) {
    if (p.shard.size == 0) continue;  // a short tensor whose blocks all went to lower ranks
    Param s = p;
    s.value = p.value.flat_range(p.shard.offset, p.shard.end());
    s.grad = p.grad.flat_range(p.shard.offset, p.shard.end());
    slots_.push_back(s);
  }
  return slots_;
}

void Zero2Strategy::after_update(Transformer& model) {
  if (comm_.world_size() == 1) return;
  for (Param& p : model.optimizer_params()) comm_.all_gather_blocks(p.value);
}

void Zero2Strategy::gather_masters(Transformer& model) {
  if (comm_.world_size() == 1) return;
  Backend& be = model.backend();
  for (Param& p : model.optimizer_params()) {
    if (p.shard.size > 0) be.copy(p.master, p.grad.flat_range(p.shard.offset, p.shard.end()));
    comm_.all_gather_blocks(p.grad);
  }
}

}  // namespace fitlm::dist
