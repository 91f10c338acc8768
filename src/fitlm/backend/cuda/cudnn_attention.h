// Causal GQA attention through cuDNN's fused flash-attention engines (cuDNN 9 "SDPA" graphs),
// on the model's token-major [T, heads·head_dim] q/k/v buffers, in two forms:
// - dense: b segments of one length s ([b·s, ...] seen as [b, heads, s, d]);
// - ragged (packed rows of unequal segments): cuDNN's variable-sequence-length SDPA. Each
//   segment of cu_seqlens is one batch entry b with its real length; the graph is built for
//   bucketed dims (batch = segment count rounded up to a power of two, extent = T, the row's
//   token count) so random segment lengths share a handful of plans; unused batch entries get
//   length 0. The real lengths reach cuDNN as int32 seq_len tensors (matmul M/N/K overrides and
//   a padding mask), the segment starts as int64 ragged offsets (elements) on every
//   token-major tensor, both computed on the device from cu_seqlens (cudnn_ragged.cu).
//
// Why: on Hopper cuDNN runs wgmma/TMA kernels that our mma.sync kernels cannot match
// (bench/NOTES.md, sessions 4 and 5).
//
// The graphs are the ones cudnn_frontend builds for sdpa/sdpa_backward with a top-left causal
// mask (QKᵀ·scale → [padding mask] → causal select → softmax with stats → ·V, and the
// FlashAttention-2 backward with an f32 dQ accumulator), written against the backend API.
// lse is cuDNN's stats tensor: dense [b, heads, s] (with one segment that is the backend
// interface's [heads, T]); ragged, token-major [T, heads] (a ragged stats tensor, so it fits
// the planned heads × T floats).
//
// Workspaces: the backward's f32 dQ accumulator, dO·O row sums and engine scratch come from the
// caller's attention workspace (the allocation plan sizes it with attention_workspace_elems; in
// the ragged form the accumulator and row sums are ragged too, so the sizes are those of the
// dense form); the forward's small engine scratch is the backend's fixed cuBLASLt workspace
// (stream-ordered, so sharing it is safe). A shape whose plans need more is reported unsupported.
//
// Determinism: engines are chosen preferring ones whose numerical notes lack
// CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC; `deterministic_backward()` says what was found (on
// Hopper, cuDNN's FA-2 backward accumulates dQ with atomics, so there may be none).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>

#include "fitlm/core/tensor.h"

typedef struct cudnnContext* cudnnHandle_t;

namespace fitlm::cuda {

struct SdpaShape {
  // dense: segments and tokens per segment; ragged: batch-entry bucket and T (max extent).
  int64_t batch = 0, seq = 0;
  int heads = 0, kv_heads = 0, head_dim = 0;
  bool f16 = false;     // else bf16
  bool ragged = false;  // packed segments of unequal length (cu_seqlens)
  int64_t tokens() const { return ragged ? seq : batch * seq; }
  auto tie() const { return std::tie(batch, seq, heads, kv_heads, head_dim, f16, ragged); }
  bool operator<(const SdpaShape& o) const { return tie() < o.tie(); }
};

// Device arrays of one ragged call (cudnn_ragged.cu fills them).
struct SdpaRaggedMeta {
  int32_t* seq_len = nullptr;    // [batch]: segment lengths, 0 past the last segment
  int64_t* off_q = nullptr;      // [batch + 1]: segment starts × heads·hd (q, o, dO, dQ)
  int64_t* off_kv = nullptr;     // [batch + 1]: × kv_heads·hd (k, v, dK, dV)
  int64_t* off_stats = nullptr;  // [batch + 1]: × heads (stats, dO·O row sums)
};
void launch_sdpa_ragged_meta(const int32_t* cu_seqlens, int n_seg, const SdpaRaggedMeta& meta,
                             int batch, int64_t q_mul, int64_t kv_mul, int64_t stats_mul,
                             cudaStream_t stream);

class CudnnAttention {
 public:
  static constexpr int64_t kMaxSegments = 4096;  // ragged batch entries per call

  CudnnAttention(cudaStream_t stream, void* scratch, size_t scratch_bytes);
  ~CudnnAttention();
  CudnnAttention(const CudnnAttention&) = delete;
  CudnnAttention& operator=(const CudnnAttention&) = delete;

  // The ragged shape for n_seg packed segments over t tokens (bucketed batch).
  static SdpaShape ragged_shape(int64_t n_seg, int64_t t, int heads, int kv_heads, int head_dim,
                                bool f16);

  // Builds (once per shape) the forward and backward plans; false when cuDNN cannot run either,
  // and then the caller uses its own kernels for both passes (lse layouts must agree).
  bool supports(const SdpaShape& s);
  // cu_seqlens: i32 [n_seg + 1] on the device (read only by the ragged form).
  void forward(const SdpaShape& s, const Tensor& q, const Tensor& k, const Tensor& v,
               const Tensor& cu_seqlens, float scale, const Tensor& out, const Tensor& lse);
  // workspace: f32, at least attention_workspace_elems(tokens, shape) elements.
  void backward(const SdpaShape& s, const Tensor& dout, const Tensor& q, const Tensor& k,
                const Tensor& v, const Tensor& out, const Tensor& lse, const Tensor& cu_seqlens,
                float scale, const Tensor& dq, const Tensor& dk, const Tensor& dv,
                const Tensor& workspace);

  // Plans built so far (shapes cuDNN accepted), and whether the backward plan of s (built) has
  // no NONDETERMINISTIC note.
  int plans_built() const { return plans_built_; }
  bool deterministic_backward(const SdpaShape& s);

 private:
  struct Plans;
  Plans& plans(const SdpaShape& s);
  void ragged_meta(const SdpaShape& s, const Tensor& cu_seqlens);

  static constexpr size_t kMaxShapes = 64;  // distinct shapes given cuDNN plans

  cudnnHandle_t handle_ = nullptr;
  cudaStream_t stream_;
  void* scratch_;
  size_t scratch_bytes_;
  void* meta_buffer_ = nullptr;  // SdpaRaggedMeta arrays for kMaxSegments, made on first use
  SdpaRaggedMeta meta_;
  int plans_built_ = 0;
  std::map<SdpaShape, std::unique_ptr<Plans>> plans_;  // null: cuDNN cannot run this shape
};

}  // namespace fitlm::cuda
