#include "fitlm/dist/zero3.h"

namespace fitlm::dist {

void Zero3Strategy::shape(RunShape& s) const {
  Zero2Strategy::shape(s);
  if (comm_.world_size() > 1) s.layer_shard = ShardSpec{comm_.rank(), comm_.world_size()};
}

void Zero3Strategy::attach(Transformer& model) {
  if (comm_.world_size() == 1) return;
  Comm& comm = comm_;
  model.set_layer_gather(
      [&comm](const Tensor& shard, Tensor full) { comm.all_gather(shard, full); });
}

}  // namespace fitlm::dist
