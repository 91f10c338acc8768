// Attention family: causal GQA flash attention over packed segments (cu_seqlens), forward and
// backward, never materialising S×S. bf16/f16 q, k, v; head_dim 32, 64, 80, 96, 128 or 256.
//
// Forward: one block per (64-query tile, head); 4 warps × 16 query rows; keys in tiles of 64
// through shared memory; online softmax in registers (FlashAttention-2 layout on mma.sync).
// Backward, three kernels:
//   1. D_i = Σ_d dout·out per (row, head), parked in the first 4 bytes of dq[row, head] (dq is
//      overwritten by kernel 3 anyway, and each block there reads only its own rows' D first);
//   2. dK, dV: one block per (64-key tile, q head) writing its head's f32 partial into the
//      caller's workspace (GQA: `group` blocks share a kv head), then one kernel sums the
//      partials in head order into dk/dv (no atomics: the result does not depend on timing);
//      without GQA or without a workspace, one block per (64-key tile, kv head) looping over
//      its group's heads and writing directly (fewer blocks: the causal imbalance between the
//      first and last key tiles then costs up to 2×, measured in bench/NOTES.md);
//   3. dQ: one block per (64-query tile, head), recomputing P and dP.
// Kernel 3 recomputes QKᵀ and dO·Vᵀ (7 tile products instead of FA2's 5) in exchange for no
// f32 dq accumulator and deterministic results. Every kernel writes each output element from
// one thread in a fixed order, so results are bitwise reproducible run to run.
#pragma once

#include <cuda_runtime_api.h>

#include "fitlm/core/tensor.h"

namespace fitlm::cuda {

// AttentionShape without backend.h (which pulls in fmt, which nvcc cannot compile).
struct AttentionDims {
  int n_heads, n_kv_heads, head_dim;
  float scale;
};

constexpr bool attention_kernels_support_head_dim(int hd) {
  return hd == 32 || hd == 64 || hd == 80 || hd == 96 || hd == 128 || hd == 256;
}

void launch_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                              const Tensor& cu_seqlens, const AttentionDims& shape,
                              const Tensor& out, const Tensor& lse, cudaStream_t stream);
void launch_attention_backward(const Tensor& dout, const Tensor& q, const Tensor& k,
                               const Tensor& v, const Tensor& out, const Tensor& lse,
                               const Tensor& cu_seqlens, const AttentionDims& shape,
                               const Tensor& dq, const Tensor& dk, const Tensor& dv,
                               const Tensor& workspace, cudaStream_t stream);

}  // namespace fitlm::cuda
