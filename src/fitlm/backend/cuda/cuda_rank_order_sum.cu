// The device rank-order sum (cuda_rank_order_sum.cuh). Memory-bound: one pass reading every
// piece once and writing the result once; the adds are __fadd_rn so that no contraction or
// reassociation can change the bits.
#include "fitlm/backend/cuda/cuda_common.cuh"
#include "fitlm/backend/cuda/cuda_rank_order_sum.cuh"

namespace fitlm::cuda {
namespace {

template <typename T>
__global__ void rank_order_sum_kernel(const T* own, int me, const T* staging, int64_t slot_elems,
                                      int world, T* out, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    float acc = to_f32(me == 0 ? own[i] : staging[i]);
    for (int r = 1; r < world; ++r) {
      const T x = r == me ? own[i] : staging[(r < me ? r : r - 1) * slot_elems + i];
      acc = __fadd_rn(acc, to_f32(x));
    }
    out[i] = from_f32<T>(acc);
  }
}

}  // namespace

void launch_rank_order_sum(DType dtype, const void* own, int me, const void* staging,
                           int64_t slot_elems, int world, void* out, int64_t n,
                           cudaStream_t stream) {
  if (n == 0) return;
  FITLM_CUDA_ARG(world >= 1 && me >= 0 && me < world, "rank_order_sum: rank not in the world");
  dispatch_float(dtype, [&](auto tag) {
    using T = decltype(tag);
    rank_order_sum_kernel<T><<<grid_for(n, 256), 256, 0, stream>>>(
        static_cast<const T*>(own), me, static_cast<const T*>(staging), slot_elems, world,
        static_cast<T*>(out), n);
  });
  FITLM_CUDA_CHECK_LAUNCH();
}

}  // namespace fitlm::cuda
