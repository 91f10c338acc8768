#include "fitlm/core/allocation_plan.h"

#include <algorithm>
#include <iterator>
#include <map>
#include <numeric>
#include <unordered_map>

#include "fitlm/core/error.h"

namespace fitlm {

size_t AllocationPlan::add(std::string name, std::string group, Shape shape, DType dtype,
                           Lifetime lifetime) {
  FITLM_CHECK(!finalized_, "plan", "add({}) after finalize", name);
  FITLM_CHECK(!contains(name), "plan", "duplicate buffer name {}", name);
  index_.emplace(name, buffers_.size());
  BufferSpec spec;
  spec.name = std::move(name);
  spec.group = std::move(group);
  spec.shape = shape;
  spec.dtype = dtype;
  spec.lifetime = lifetime;
  spec.bytes = static_cast<size_t>(shape.numel()) * dtype_size(dtype);
  buffers_.push_back(std::move(spec));
  return buffers_.size() - 1;
}

void AllocationPlan::finalize(bool share_bytes) {
  auto align = [&](size_t v) { return (v + alignment_ - 1) / alignment_ * alignment_; };
  std::vector<size_t> order(buffers_.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return buffers_[a].bytes > buffers_[b].bytes; });
  // Each buffer goes at the lowest offset where its bytes do not intersect any placed buffer
  // whose lifetime overlaps its own (first fit, largest first). Placed buffers are kept per
  // lifetime class (one class per distinct phase set; all buffers in one class when nothing is
  // shared) as merged [lo, hi) ranges: buffers of one class never share bytes, so each class is
  // a small set of runs, and a buffer probes the few classes it overlaps instead of every placed
  // buffer. That makes the plan linear in layers (about O(n log n) in buffers) where scanning
  // every placed buffer was quadratic; the offsets are the same, since the lowest free offset
  // does not depend on how it is searched. Empty buffers take no bytes: offset 0.
  struct Class {
    Lifetime lifetime;
    std::map<size_t, size_t> runs;  // lo -> hi, disjoint and not touching
  };
  std::vector<Class> classes;
  std::unordered_map<uint64_t, size_t> class_of;
  for (const BufferSpec& b : buffers_) {
    const uint64_t key = share_bytes ? b.lifetime.phases : 0;
    if (class_of.emplace(key, classes.size()).second) classes.push_back({b.lifetime, {}});
  }
  total_bytes_ = 0;
  std::vector<Class*> probe;
  for (size_t i : order) {
    BufferSpec& b = buffers_[i];
    const size_t size = align(b.bytes);
    if (size == 0) {
      b.offset = 0;
      continue;
    }
    probe.clear();
    for (Class& c : classes)
      if (!share_bytes || c.lifetime.overlaps(b.lifetime)) probe.push_back(&c);
    // Raise the offset past every run that intersects [offset, offset + size) until none does.
    size_t offset = 0;
    for (bool moved = true; moved;) {
      moved = false;
      for (Class* c : probe) {
        auto it = c->runs.lower_bound(offset + size);  // first run starting at or after the end
        if (it == c->runs.begin()) continue;
        --it;  // the last run starting before the end: the only one that can reach past offset
        if (it->second > offset) {
          offset = it->second;
          moved = true;
        }
      }
    }
    b.offset = offset;
    total_bytes_ = std::max(total_bytes_, offset + size);
    // Insert [offset, offset + size) into its class, merging with touching runs.
    auto& runs = classes[class_of.at(share_bytes ? b.lifetime.phases : 0)].runs;
    size_t lo = offset, hi = offset + size;
    auto next = runs.lower_bound(lo);
    if (next != runs.begin()) {
      auto prev = std::prev(next);
      if (prev->second >= lo) {
        lo = prev->first;
        hi = std::max(hi, prev->second);
        runs.erase(prev);
      }
    }
    for (next = runs.lower_bound(lo); next != runs.end() && next->first <= hi;) {
      hi = std::max(hi, next->second);
      next = runs.erase(next);
    }
    runs.emplace(lo, hi);
  }
  finalized_ = true;
}

std::string AllocationPlan::describe(const Lifetime& lifetime) const {
  if (lifetime.is_whole_job()) return "all";
  std::string s;
  for (int k = 0; k < 64; ++k) {
    if (!lifetime.contains(k)) continue;
    if (!s.empty()) s += ' ';
    s += k < static_cast<int>(phase_names_.size()) ? phase_names_[k] : fmt::format("#{}", k);
  }
  return s.empty() ? "never" : s;
}

bool AllocationPlan::contains(const std::string& name) const {
  return index_.count(name) != 0;
}

const BufferSpec& AllocationPlan::at(const std::string& name) const {
  const auto it = index_.find(name);
  if (it == index_.end()) throw_internal_error("plan", "no buffer named {}", name);
  return buffers_[it->second];
}

std::vector<std::pair<std::string, size_t>> AllocationPlan::group_totals() const {
  std::map<std::string, size_t> totals;
  for (const auto& b : buffers_) totals[b.group] += b.bytes;
  return {totals.begin(), totals.end()};
}

std::string AllocationPlan::summary() const {
  std::string s;
  for (const auto& [group, bytes] : group_totals())
    s += fmt::format("  {:<14} {:>12}\n", group, format_bytes(bytes));
  s += fmt::format("  {:<14} {:>12}  (after sharing buffers with disjoint lifetimes)\n", "arena",
                   format_bytes(total_bytes_));
  return s;
}

std::string format_bytes(size_t bytes) {
  const double b = static_cast<double>(bytes);
  if (b >= 1024.0 * 1024 * 1024) return fmt::format("{:.2f} GiB", b / (1024.0 * 1024 * 1024));
  if (b >= 1024.0 * 1024) return fmt::format("{:.2f} MiB", b / (1024.0 * 1024));
  if (b >= 1024.0) return fmt::format("{:.2f} KiB", b / 1024.0);
  return fmt::format("{} B", bytes);
}

}  // namespace fitlm
