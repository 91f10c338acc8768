// Causal GQA attention through cuDNN's fused flash-attention engines (cuDNN 9 "SDPA" graphs),
// for batches whose segments all have the same length: b segments of s tokens, packed
// token-major as [b·s, heads·head_dim] (the layout of the model's q/k/v buffers).
//
// Why: on Hopper cuDNN runs wgmma/TMA kernels that our mma.sync kernels cannot match
// (bench/NOTES.md, session 4). Packed segments of unequal length keep using our own kernels.
//
// The graphs are the ones cudnn_frontend builds for sdpa/sdpa_backward with a top-left causal
// mask (QKᵀ·scale → causal select → softmax with stats → ·V, and the FlashAttention-2 backward
// with an f32 dQ accumulator), written against the backend API. lse is cuDNN's stats tensor,
// [b, heads, s]; with one segment that is the backend interface's [heads, T].
//
// Workspaces: the backward's f32 dQ accumulator, dO·O row sums and engine scratch come from the
// caller's attention workspace (the allocation plan sizes it with attention_workspace_elems);
// the forward's small engine scratch is the backend's fixed cuBLASLt workspace (stream-ordered,
// so sharing it is safe). A shape whose plans need more than that is reported unsupported.
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
  int64_t batch = 0, seq = 0;  // segments and tokens per segment
  int heads = 0, kv_heads = 0, head_dim = 0;
  bool f16 = false;  // else bf16
  auto tie() const { return std::tie(batch, seq, heads, kv_heads, head_dim, f16); }
  bool operator<(const SdpaShape& o) const { return tie() < o.tie(); }
};

class CudnnAttention {
 public:
  CudnnAttention(cudaStream_t stream, void* scratch, size_t scratch_bytes);
  ~CudnnAttention();
  CudnnAttention(const CudnnAttention&) = delete;
  CudnnAttention& operator=(const CudnnAttention&) = delete;

  // Builds (once per shape) the forward and backward plans; false when cuDNN cannot run either,
  // and then the caller uses its own kernels for both passes (lse layouts must agree).
  bool supports(const SdpaShape& s);
  void forward(const SdpaShape& s, const Tensor& q, const Tensor& k, const Tensor& v, float scale,
               const Tensor& out, const Tensor& lse);
  // workspace: f32, at least attention_workspace_elems(tokens, shape) elements.
  void backward(const SdpaShape& s, const Tensor& dout, const Tensor& q, const Tensor& k,
                const Tensor& v, const Tensor& out, const Tensor& lse, float scale,
                const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& workspace);

 private:
  struct Plans;
  Plans& plans(const SdpaShape& s);

  static constexpr size_t kMaxShapes = 64;  // distinct shapes given cuDNN plans

  cudnnHandle_t handle_ = nullptr;
  cudaStream_t stream_;
  void* scratch_;
  size_t scratch_bytes_;
  std::map<SdpaShape, std::unique_ptr<Plans>> plans_;  // null: cuDNN cannot run this shape
};

}  // namespace fitlm::cuda
