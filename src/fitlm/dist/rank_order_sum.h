// The one summation rule of every Comm (comm.h, "Ordering guarantee"): the ranks' values added
// in rank order 0, 1, ..., N-1, in f32, rounded once to the storage type. Implementations that
// gather the ranks' blocks on the host sum them here, so the rule lives in one place.
#pragma once

#include <cstdint>
#include <span>

#include "fitlm/core/dtype.h"

namespace fitlm::dist {

// out[e] = ((pieces[0][e] + pieces[1][e]) + ...) + pieces[N-1][e] for e in [0, n), each piece
// holding n elements of `dtype` (f32, bf16 or f16). `out` may be any one of the pieces.
void sum_in_rank_order(std::span<const void* const> pieces, DType dtype, int64_t n, void* out);

}  // namespace fitlm::dist
