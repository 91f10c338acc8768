#include "fitlm/backend/arena.h"

#include "fitlm/core/error.h"

namespace fitlm {

Arena::Arena(Backend& backend, AllocationPlan plan) : backend_(backend), plan_(std::move(plan)) {
  FITLM_CHECK(plan_.finalized(), "arena", "plan not finalized");
  if (plan_.total_bytes() > 0) base_ = backend_.allocate(plan_.total_bytes());
  for (size_t i = 0; i < plan_.buffers().size(); ++i) index_[plan_.buffers()[i].name] = i;
}

Arena::~Arena() {
  if (base_) backend_.deallocate(base_);
}

Tensor Arena::get(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) throw_internal_error("arena", "no buffer named {}", name);
  const BufferSpec& b = plan_.buffers()[it->second];
  return Tensor(static_cast<std::byte*>(base_) + b.offset, b.dtype, b.shape, backend_.device());
}

}  // namespace fitlm
