// The rank-order sum of comm.h's ordering guarantee, on the device: the GPU twin of
// dist::sum_in_rank_order (rank_order_sum.h) for NcclComm, bit-identical to it.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "fitlm/core/dtype.h"

namespace fitlm::cuda {

// out[e] = ((x_0[e] + x_1[e]) + ...) + x_{world-1}[e] for e in [0, n), added in f32 and rounded
// once to `dtype` (f32, bf16, f16). Rank `me`'s piece is `own`; every other rank r's piece is
// slot (r < me ? r : r − 1) of `staging`, slots `slot_elems` elements apart. `out` may be `own`
// (each element is read from every piece before it is written); it must not overlap a slot.
void launch_rank_order_sum(DType dtype, const void* own, int me, const void* staging,
                           int64_t slot_elems, int world, void* out, int64_t n,
                           cudaStream_t stream);

}  // namespace fitlm::cuda
