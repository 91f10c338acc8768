#include "fitlm/dist/ddp.h"

namespace fitlm::dist {

void DdpStrategy::reduce_gradients(Transformer& model) {
  if (comm_.world_size() == 1) return;
  for (Param& p : model.optimizer_params()) comm_.all_reduce_sum(p.grad);
}

}  // namespace fitlm::dist
