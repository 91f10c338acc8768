// One up-front device allocation cut into the buffers of a finalized AllocationPlan.
#pragma once

#include <string>
#include <unordered_map>

#include "fitlm/backend/backend.h"
#include "fitlm/core/allocation_plan.h"

namespace fitlm {

class Arena {
 public:
  // Allocates plan.total_bytes() on the backend's device (the plan must be finalized).
  Arena(Backend& backend, AllocationPlan plan);
  ~Arena();
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  Tensor get(const std::string& name) const;
  bool contains(const std::string& name) const { return index_.count(name) != 0; }
  const AllocationPlan& plan() const { return plan_; }
  size_t bytes() const { return plan_.total_bytes(); }

 private:
  Backend& backend_;
  AllocationPlan plan_;
  void* base_ = nullptr;
  std::unordered_map<std::string, size_t> index_;
};

}  // namespace fitlm
