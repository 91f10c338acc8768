#include "fitlm/core/error.h"
#include "fitlm/dist/ddp.h"
#include "fitlm/dist/strategy.h"
#include "fitlm/dist/zero2.h"
#include "fitlm/dist/zero3.h"

namespace fitlm::dist {

std::unique_ptr<Strategy> make_strategy(const std::string& name, Comm& comm) {
  if (name == "ddp" || name == "auto") return std::make_unique<DdpStrategy>(comm);
  if (name == "zero2") return std::make_unique<Zero2Strategy>(comm);
  if (name == "zero3") return std::make_unique<Zero3Strategy>(comm);
  throw_input_error("train", "strategy: '{}' is not one of auto, ddp, zero2, zero3", name);
}

}  // namespace fitlm::dist
