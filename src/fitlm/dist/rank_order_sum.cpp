#include "fitlm/dist/rank_order_sum.h"

#include "fitlm/core/error.h"

namespace fitlm::dist {
namespace {

// Element by element, all ranks of one element before the next, so that `out` may alias any
// piece: each element is read from every piece before it is written.
void sum_f32(std::span<const void* const> pieces, int64_t n, float* out) {
  const size_t ranks = pieces.size();
  for (int64_t e = 0; e < n; ++e) {
    float acc = static_cast<const float*>(pieces[0])[e];
    for (size_t r = 1; r < ranks; ++r) acc += static_cast<const float*>(pieces[r])[e];
    out[e] = acc;
  }
}

template <float (*to_f32)(uint16_t), uint16_t (*from_f32)(float)>
void sum_16(std::span<const void* const> pieces, int64_t n, uint16_t* out) {
  const size_t ranks = pieces.size();
  for (int64_t e = 0; e < n; ++e) {
    float acc = to_f32(static_cast<const uint16_t*>(pieces[0])[e]);
    for (size_t r = 1; r < ranks; ++r) acc += to_f32(static_cast<const uint16_t*>(pieces[r])[e]);
    out[e] = from_f32(acc);
  }
}

}  // namespace

void sum_in_rank_order(std::span<const void* const> pieces, DType dtype, int64_t n, void* out) {
  FITLM_CHECK(!pieces.empty(), "dist", "sum of no pieces");
  switch (dtype) {
    case DType::kF32: return sum_f32(pieces, n, static_cast<float*>(out));
    case DType::kBF16:
      return sum_16<bf16_to_f32, f32_to_bf16>(pieces, n, static_cast<uint16_t*>(out));
    case DType::kF16: return sum_16<f16_to_f32, f32_to_f16>(pieces, n, static_cast<uint16_t*>(out));
    default:
      throw_internal_error("dist", "sum of {} values: sums take f32, bf16 or f16",
                           dtype_name(dtype));
  }
}

}  // namespace fitlm::dist
