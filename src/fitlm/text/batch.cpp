#include "fitlm/text/batch.h"

#include "fitlm/core/error.h"

namespace fitlm {

int64_t TokenBatch::scored_tokens() const {
  int64_t n = 0;
  if (cu_seqlens.empty()) {  // no boundaries given: one segment over the whole batch
    for (size_t t = 1; t < labels.size(); ++t)
      if (labels[t] != kIgnoreLabel) ++n;
    return n;
  }
  for (size_t s = 0; s + 1 < cu_seqlens.size(); ++s) {
    // Targets of a segment are labels[begin+1 .. end-1]; labels[begin] would be predicted from
    // the previous segment's last position, which packing must never do.
    for (int32_t t = cu_seqlens[s] + 1; t < cu_seqlens[s + 1]; ++t)
      if (labels[t] != kIgnoreLabel) ++n;
  }
  return n;
}

void TokenBatch::check_consistent() const {
  const size_t T = input_ids.size();
  FITLM_CHECK(labels.size() == T && position_ids.size() == T, "batch",
              "input_ids {} labels {} position_ids {}", T, labels.size(), position_ids.size());
  FITLM_CHECK(
      !cu_seqlens.empty() && cu_seqlens.front() == 0 && static_cast<size_t>(cu_seqlens.back()) == T,
      "batch", "cu_seqlens must run from 0 to T={}", T);
  for (size_t s = 0; s + 1 < cu_seqlens.size(); ++s) {
    FITLM_CHECK(cu_seqlens[s] < cu_seqlens[s + 1], "batch", "empty segment {}", s);
    for (int32_t t = cu_seqlens[s]; t < cu_seqlens[s + 1]; ++t)
      FITLM_CHECK(position_ids[t] == t - cu_seqlens[s], "batch",
                  "position_ids[{}]={} in segment {} starting at {}", t, position_ids[t], s,
                  cu_seqlens[s]);
  }
}

}  // namespace fitlm
