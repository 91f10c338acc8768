#include "fitlm/core/allocation_plan.h"

#include <algorithm>
#include <map>
#include <numeric>

#include "fitlm/core/error.h"

namespace fitlm {

size_t AllocationPlan::add(std::string name, std::string group, Shape shape, DType dtype,
                           Lifetime lifetime) {
  FITLM_CHECK(!finalized_, "plan", "add({}) after finalize", name);
  FITLM_CHECK(!contains(name), "plan", "duplicate buffer name {}", name);
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
  std::vector<size_t> placed;
  total_bytes_ = 0;
  for (size_t i : order) {
    BufferSpec& b = buffers_[i];
    // Collect the byte ranges of placed buffers that are live at the same time, sorted.
    std::vector<std::pair<size_t, size_t>> busy;
    for (size_t j : placed) {
      const BufferSpec& o = buffers_[j];
      if (!share_bytes || o.lifetime.overlaps(b.lifetime))
        busy.emplace_back(o.offset, o.offset + align(o.bytes));
    }
    std::sort(busy.begin(), busy.end());
    size_t offset = 0;
    for (auto [lo, hi] : busy) {
      if (offset + align(b.bytes) <= lo) break;
      offset = std::max(offset, hi);
    }
    b.offset = offset;
    total_bytes_ = std::max(total_bytes_, offset + align(b.bytes));
    placed.push_back(i);
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
  return std::any_of(buffers_.begin(), buffers_.end(),
                     [&](const BufferSpec& b) { return b.name == name; });
}

const BufferSpec& AllocationPlan::at(const std::string& name) const {
  for (const auto& b : buffers_)
    if (b.name == name) return b;
  throw_internal_error("plan", "no buffer named {}", name);
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
