// The allocation plan (DESIGN.md §1): every device buffer of a job, named, with its size and
// lifetime, placed at an offset in one arena before anything is allocated. The planner prints
// it, the runtime allocates exactly `total_bytes()`, so the predicted peak is the real peak.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fitlm/core/tensor.h"

namespace fitlm {

// When a buffer is live, in the planner's phase counter (e.g. one phase per layer of forward
// and backward). Buffers whose intervals do not overlap may share bytes.
struct Lifetime {
  int begin = 0;
  int end = 1 << 30;  // exclusive; the default means "the whole job"
  static Lifetime whole_job() { return {}; }
};

struct BufferSpec {
  std::string name;   // stable, e.g. "layers.3.attn.q_proj.lora_A.grad"
  std::string group;  // summary bucket: "weights", "grads", "optimizer", "activations", ...
  Shape shape;
  DType dtype = DType::kF32;
  Lifetime lifetime;
  size_t bytes = 0;   // set by add()
  size_t offset = 0;  // set by finalize()
};

class AllocationPlan {
 public:
  explicit AllocationPlan(size_t alignment = 256) : alignment_(alignment) {}

  // Returns the buffer's index; names must be unique.
  size_t add(std::string name, std::string group, Shape shape, DType dtype,
             Lifetime lifetime = Lifetime::whole_job());
  // Assigns offsets: buffers are placed largest first at the lowest offset that does not collide
  // with any already-placed buffer whose lifetime overlaps (greedy interval packing).
  void finalize();

  bool finalized() const { return finalized_; }
  size_t total_bytes() const { return total_bytes_; }
  const std::vector<BufferSpec>& buffers() const { return buffers_; }
  const BufferSpec& at(const std::string& name) const;
  bool contains(const std::string& name) const;
  // Bytes per group (sum of sizes, before sharing) for the breakdown users see.
  std::vector<std::pair<std::string, size_t>> group_totals() const;
  std::string summary() const;  // human-readable breakdown

 private:
  size_t alignment_;
  bool finalized_ = false;
  size_t total_bytes_ = 0;
  std::vector<BufferSpec> buffers_;
};

std::string format_bytes(size_t bytes);  // "1.50 GiB"

}  // namespace fitlm
