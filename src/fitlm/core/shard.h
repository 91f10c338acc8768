// How a tensor is split over the ranks of a sharded strategy (ZeRO-2 optimizer state, ZeRO-3
// weights): rank r of N owns the contiguous block [r·s, min(n, (r+1)·s)) of its n elements,
// s = ⌈n / N⌉, so every block but the last ones has the same size and the last ones may be
// shorter or empty (n = 4096 over 3 ranks: 1366, 1366, 1364; n = 2 over 3 ranks: 1, 1, 0).
// One rule for the plan, the loaders, the Comm's in-place block collectives and checkpoints.
#pragma once

#include <algorithm>
#include <cstdint>

namespace fitlm {

struct ShardSpec {
  int rank = 0;   // 0 .. world - 1
  int world = 1;  // ranks the tensor is split over
  bool operator==(const ShardSpec&) const = default;
};

struct ShardBlock {
  int64_t offset = 0;  // first element
  int64_t size = 0;    // elements (may be 0)
  int64_t end() const { return offset + size; }
};

// Elements per block: ⌈n / world⌉ (0 for n = 0).
inline int64_t shard_stride(int64_t n, int world) {
  return world <= 1 ? n : (n + world - 1) / world;
}

inline ShardBlock shard_block(int64_t n, int rank, int world) {
  const int64_t s = shard_stride(n, world);
  const int64_t begin = std::min(n, static_cast<int64_t>(rank) * s);
  return {begin, std::min(n, begin + s) - begin};
}
inline ShardBlock shard_block(int64_t n, const ShardSpec& s) {
  return shard_block(n, s.rank, s.world);
}

}  // namespace fitlm
