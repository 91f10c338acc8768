// One micro-batch of token rows laid end to end, with the segment boundaries that packed (and
// unpacked) training needs: position ids restart per segment and attention never crosses a
// boundary in cu_seqlens (FORMATS.md section 8).
#pragma once

#include <cstdint>
#include <vector>

namespace fitlm {

inline constexpr int32_t kIgnoreLabel = -100;  // HF's ignore_index: the position is not scored

struct TokenBatch {                // one micro-batch, rows laid end to end
  std::vector<int32_t> input_ids;  // [T]
  std::vector<int32_t>
      labels;  // [T], -100 = not scored; aligned with input_ids (HF: the model shifts)
  std::vector<int32_t> position_ids;  // [T], restart at 0 per segment
  std::vector<int32_t> cu_seqlens;    // [n_segments+1], 0 ... T (attention never crosses them)

  // Empty position_ids / cu_seqlens mean 0..T-1 / one segment (what the model assumes too).
  // Count of positions t where labels[t+1] != -100 within a segment: the number of targets the
  // loss averages over (the model predicts token t+1 from position t, never across segments).
  int64_t scored_tokens() const;
  int64_t size() const { return static_cast<int64_t>(input_ids.size()); }
  int64_t n_segments() const {
    return cu_seqlens.empty() ? 0 : static_cast<int64_t>(cu_seqlens.size()) - 1;
  }
  // Throws an internal error when the arrays disagree (sizes, cu_seqlens not 0..T increasing,
  // position ids not restarting at each boundary).
  void check_consistent() const;
};

}  // namespace fitlm
