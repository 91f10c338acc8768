// The allocation plan (DESIGN.md §1): every device buffer of a job, named, with its size and
// lifetime, placed at an offset in one arena before anything is allocated; buffers whose
// lifetimes are disjoint share bytes. The planner prints
// it, the runtime allocates exactly `total_bytes()`, so the predicted peak is the real peak.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <unordered_map>
#include <vector>

#include "fitlm/core/tensor.h"

namespace fitlm {

// When a buffer must hold its contents, as a set of *phase kinds*: a bitmask over up to 64 kinds
// whose meaning the planner that adds the buffers defines (e.g. "forward", "loss head", "MLP
// backward"; plan_transformer documents its own). A kind may occur many times in a job (once per
// layer, once per step): a set names kinds, not occurrences. Two buffers may share bytes iff
// their sets are disjoint: no phase ever needs both.
//
// The planner's rule for a buffer's set: every kind in which the buffer is written or read, plus
// every kind that occurs anywhere between a write and a later read of the same value. A value that
// lives across layers therefore needs every kind that recurs per layer, and a value that lives
// across steps (weights, grads, optimizer state) needs every kind: whole_job().
struct Lifetime {
  uint64_t phases = ~uint64_t{0};  // bit k: live during phase kind k

  static constexpr Lifetime whole_job() { return {}; }
  // The set of the given kinds (0..63).
  static constexpr Lifetime of(std::initializer_list<int> kinds) {
    Lifetime l{0};
    for (int k : kinds) l.phases |= uint64_t{1} << k;
    return l;
  }
  constexpr bool is_whole_job() const { return phases == ~uint64_t{0}; }
  constexpr bool contains(int kind) const { return (phases >> kind) & 1u; }
  constexpr bool overlaps(const Lifetime& o) const { return (phases & o.phases) != 0; }
  constexpr bool operator==(const Lifetime&) const = default;
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
  // with any already-placed buffer whose lifetime overlaps (greedy packing). share_bytes = false
  // gives every buffer its own bytes whatever its lifetime (tests that check lifetimes).
  void finalize(bool share_bytes = true);
  // Names of the phase kinds, bit 0 first, for describe(); the planner sets them.
  void set_phase_names(std::vector<std::string> names) { phase_names_ = std::move(names); }
  // "all", or the names of the kinds in the set ("F R M"; "#k" for a kind without a name).
  std::string describe(const Lifetime& lifetime) const;
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
  std::unordered_map<std::string, size_t> index_;  // name -> position in buffers_
  std::vector<std::string> phase_names_;
};

std::string format_bytes(size_t bytes);  // "1.50 GiB"

}  // namespace fitlm
