#include "fitlm/dist/strategy.h"

namespace fitlm::dist {

double Strategy::forward_backward(Transformer& model, std::span<const TokenBatch> micro,
                                  float grad_scale, const SetSeed& set_seed) {
  double loss_sum = 0.0;
  for (size_t j = 0; j < micro.size(); ++j) {
    set_seed(j);
    loss_sum += model.forward_backward(micro[j], grad_scale).loss_sum;
  }
  return loss_sum;
}

LossResult Strategy::forward_loss(Transformer& model, const TokenBatch& batch) {
  return model.forward_loss(batch);
}

}  // namespace fitlm::dist
