#include "fitlm/core/error.h"
#include "fitlm/dist/ddp.h"
#include "fitlm/dist/strategy.h"
#include "fitlm/dist/zero2.h"

namespace fitlm::dist {

std::unique_ptr<Strategy> make_strategy(const std::string& name, Comm& comm) {
  if (name == "ddp" || name == "auto") return std::make_unique<DdpStrategy>(comm);
  if (name == "zero2") return std::make_unique<Zero2Strategy>(comm);
  if (name == "zero3")
    throw_input_error("train",
                      "strategy: zero3 is not built yet; ddp (replicated) and zero2 (sharded "
                      "optimizer state) are");
  throw_input_error("train", "strategy: '{}' is not one of auto, ddp, zero2, zero3", name);
}

}  // namespace fitlm::dist
