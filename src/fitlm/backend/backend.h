// The op interface every backend implements (DESIGN.md §3). Model code calls only these.
//
// Conventions (hold for every backend):
// - Activations are matrices [T, C]: T = all tokens of the micro-batch, rows of the batch laid
//   end to end (packed or not). Sequence boundaries come as `cu_seqlens` (i32 [n_seq + 1],
//   offsets into T, first 0, last T) and positions as `positions` (i32 [T]).
// - Linear weights are in Hugging Face layout [out, in]: y = x · Wᵀ.
// - Gradient rule: *parameter* gradients accumulate (`+=`), *activation* gradients overwrite
//   (`=`), unless an argument says otherwise.
// - The CPU backend computes and stores f32. The CUDA backend stores activations and frozen
//   weights in bf16/f16 and accumulates in f32; tensors named "f32" below are f32 everywhere.
// - All calls are ordered on the backend's stream; `synchronize()` waits for them.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "fitlm/core/error.h"
#include "fitlm/core/quant4_tensor.h"
#include "fitlm/core/tensor.h"

namespace fitlm {

struct AdamWParams {
  float lr = 1e-4f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;
  int64_t step = 1;  // 1-based, for bias correction
};

struct AttentionShape {
  int n_heads = 0;
  int n_kv_heads = 0;  // n_heads % n_kv_heads == 0 (GQA)
  int head_dim = 0;
  float scale = 0.0f;  // usually 1/sqrt(head_dim)
  // A promise about this call's cu_seqlens: every segment has this many tokens (0: no promise).
  // Lets a backend treat the batch as dense [T/segment_len, segment_len] (CUDA: cuDNN's dense
  // SDPA graph; without the promise CUDA runs cuDNN's variable-length graph over cu_seqlens).
  int64_t segment_len = 0;
};

// f32 workspace of attention_backward per token: CUDA's GQA dK/dV accumulators (2·kv·hd) or,
// on the cuDNN path, the dQ accumulator and the dO·O row sums (heads·(hd + 1)) plus cuDNN's
// engine scratch (measured: heads·hd f32 per token and 256 bytes; 64 f32 per token of slack).
// Packed rows (cuDNN's ragged graph) keep the accumulator and row sums token-major, same sizes.
inline int64_t attention_workspace_cols(const AttentionShape& s) {
  return std::max(int64_t{2} * s.n_kv_heads * s.head_dim,
                  int64_t{s.n_heads} * (2 * s.head_dim + 1) + 64);
}
inline int64_t attention_workspace_elems(int64_t t, const AttentionShape& s) {
  return t * attention_workspace_cols(s);
}

// Identifies one Backend::copy_async, for Backend::wait_transfer; 0 is no copy.
using TransferTicket = uint64_t;

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  virtual Device device() const = 0;
  // The dtype activations and frozen weights are stored in on this backend.
  virtual DType compute_dtype() const = 0;

  // ---- memory -------------------------------------------------------------------------------
  virtual void* allocate(size_t bytes) = 0;  // only the Arena calls this
  virtual void deallocate(void* ptr) = 0;
  // Host memory that ops on this backend read directly, for weights a job keeps off the device
  // (Transformer's embedding_on_host): the host writes at `host`, ops read at `device` (CUDA:
  // pinned memory mapped into the device's address space, read over PCIe; CPU: one pointer).
  struct HostMapped {
    void* host = nullptr;
    void* device = nullptr;
  };
  virtual HostMapped allocate_host_mapped(size_t bytes);
  // Device memory the driver takes to map `host_bytes` of allocate_host_mapped memory into the
  // device's address space, outside every arena (CUDA: cuda_host_mapping_bytes).
  virtual size_t host_mapping_bytes(size_t /*host_bytes*/) const { return 0; }
  virtual void deallocate_host_mapped(const HostMapped& m);
  // dst (any dtype on this device) <- host data of `src_dtype` with dst.numel() elements.
  virtual void upload(Tensor dst, const void* src, DType src_dtype) = 0;
  // host f32 <- src (any dtype on this device).
  virtual void download(const Tensor& src, float* dst) = 0;
  virtual void synchronize() = 0;
  // Device memory in use right now (CUDA: total − free from cudaMemGetInfo), for reports of
  // planned vs measured peak; 0 where the backend cannot tell.
  virtual size_t memory_in_use() { return 0; }
  // Device memory free right now (CUDA: cudaMemGetInfo's free); 0 where the backend cannot tell.
  virtual size_t memory_free() { return 0; }
  virtual std::string device_description() { return name(); }
  // Device bytes the backend holds for itself outside every arena (CUDA: the cuBLASLt workspace
  // and reduction scratch). A memory cap covers these too: arenas get the cap minus this.
  virtual size_t reserved_bytes() { return 0; }

  // ---- elementwise --------------------------------------------------------------------------
  virtual void fill(Tensor x, float value) = 0;
  virtual void copy(const Tensor& src, Tensor dst) = 0;  // casts between dtypes
  // dst <- src (same dtype and size; either may be host memory from allocate_host_mapped) on
  // the backend's transfer queue: it starts after every op queued so far and does not hold
  // back the ops queued after it, until wait_transfers(). So a copy into a buffer the queued
  // ops still read is safe, and ops queued while it runs overlap it (CUDA: a second stream).
  // CPU: a plain copy. Returns the copy's ticket for wait_transfer (copies complete in the
  // order they were queued).
  virtual TransferTicket copy_async(const Tensor& src, Tensor dst) {
    copy(src, dst);
    return 0;
  }
  // Ops queued from now on run after every copy_async queued before.
  virtual void wait_transfers() {}
  // Ops queued from now on run after the copy `ticket` (and every copy queued before it) but
  // not necessarily after those queued since: a buffer can be reused as soon as its own copy is
  // done while later copies still run. Ticket 0 (none, or a CPU copy) waits for nothing.
  virtual void wait_transfer(TransferTicket /*ticket*/) {}
  virtual void add(const Tensor& a, const Tensor& b, Tensor out) = 0;  // out = a + b; may alias
  virtual void axpy(float alpha, const Tensor& x, Tensor y) = 0;       // y += alpha * x
  virtual void scale(Tensor x, float alpha) = 0;                       // x *= alpha
  virtual void add_bias(Tensor x, const Tensor& bias) = 0;           // x [T,N] += bias [N] per row
  virtual void bias_backward(const Tensor& dout, Tensor dbias) = 0;  // dbias [N] += Σ_rows dout
  // Inverted dropout with a counter-based mask: element i is kept iff hash(seed, i) >= p, so
  // calling it again with the same seed (recompute, backward) reproduces the mask exactly.
  // out = keep ? x / (1 - p) : 0. Backward is the same call on dout.
  virtual void dropout(const Tensor& x, Tensor out, float p, uint64_t seed) = 0;

  // ---- 4-bit weights -----------------------------------------------------------------------
  // out (q.shape, any float dtype) = q dequantized: element i is code[nibble i] · absmax of its
  // block in f32 (with double quantization absmax = nested_map[code8] · nested_absmax + offset,
  // two f32 roundings, no fused multiply-add), rounded to q.round_to, then stored in out's dtype.
  // Bit-identical across backends (quant::dequantize4 is the host reference).
  virtual void dequantize4(const Quant4Tensor& q, Tensor out) = 0;
  // Several at once (a layer's seven matrices): the same results; a backend may run them as one
  // launch.
  virtual void dequantize4_many(const std::vector<std::pair<const Quant4Tensor*, Tensor>>& work) {
    for (const auto& [q, out] : work) dequantize4(*q, out);
  }

  // ---- matrix products ----------------------------------------------------------------------
  // c [M,N] = alpha · op(a) · op(b) + beta · c, op(a) [M,K], op(b) [K,N]; op = transpose when set.
  virtual void gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor c,
                    float alpha = 1.0f, float beta = 0.0f) = 0;
  // One gemm per group, each c = alpha · op(a) · op(b) + beta · c, all with the same transposes
  // and dtypes, shapes free: a mixture-of-experts layer's expert FFNs, one group per expert. The
  // same results as the calls one by one (what the default does); CUDA issues them as one grouped
  // cuBLAS call, since a hundred small launches cost more than their arithmetic.
  struct GemmGroup {
    Tensor a, b, c;
  };
  virtual void gemm_grouped(const std::vector<GemmGroup>& groups, bool trans_a, bool trans_b,
                            float alpha = 1.0f, float beta = 0.0f) {
    for (const GemmGroup& g : groups) gemm(g.a, trans_a, g.b, trans_b, g.c, alpha, beta);
  }

  // ---- layers -------------------------------------------------------------------------------
  // out [T,H] = table[ids]; ids i32 [T].
  virtual void embedding_forward(const Tensor& ids, const Tensor& table, Tensor out) = 0;
  // dtable [V,H] += scatter of dout rows.
  virtual void embedding_backward(const Tensor& ids, const Tensor& dout, Tensor dtable) = 0;

  // out = x · rstd · w, rstd f32 [rows] = 1/sqrt(mean(x²) + eps), over the last dim.
  virtual void rmsnorm_forward(const Tensor& x, const Tensor& w, float eps, Tensor out,
                               Tensor rstd) = 0;
  // dx = (overwrite), dw += (skipped when dw is empty).
  virtual void rmsnorm_backward(const Tensor& dout, const Tensor& x, const Tensor& w,
                                const Tensor& rstd, Tensor dx, Tensor dw) = 0;

  // In-place RoPE, HF rotate-half convention, on x [T, n_heads·head_dim]; angle of pair j at
  // token t is positions[t] · inv_freq[j], inv_freq f32 [head_dim/2]. inverse rotates by −angle
  // (that is the backward).
  virtual void rope(Tensor x, int n_heads, int head_dim, const Tensor& positions,
                    const Tensor& inv_freq, bool inverse) = 0;

  // Causal attention within each segment of cu_seqlens. q [T, nH·hd], k/v [T, nKV·hd],
  // out [T, nH·hd], lse f32 [nH·T]: log-sum-exp of the scaled scores, saved for this backend's
  // backward. Its order is [nH, T] on the CPU and with one promised segment (segment_len = T);
  // a backend may order it otherwise (CUDA's cuDNN path: [segment, nH, segment_len] for equal
  // segments, [T, nH] without a promise, i.e. packed segments of unequal length).
  virtual void attention_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                                 const Tensor& cu_seqlens, const AttentionShape& shape, Tensor out,
                                 Tensor lse) = 0;
  // dq, dk, dv overwritten. `workspace` is f32 scratch of attention_workspace_elems(T, shape)
  // elements (or empty); a backend may use it (CUDA: GQA dK/dV accumulators, or cuDNN's dQ
  // accumulator, which the cuDNN path needs when there are several segments).
  virtual void attention_backward(const Tensor& dout, const Tensor& q, const Tensor& k,
                                  const Tensor& v, const Tensor& out, const Tensor& lse,
                                  const Tensor& cu_seqlens, const AttentionShape& shape, Tensor dq,
                                  Tensor dk, Tensor dv, Tensor workspace) = 0;

  // One query per sequence against its KV cache (incremental decoding, infer/decoder.h).
  // q [B, nH·hd], k_cache/v_cache [B, max_len, nKV·hd], lengths i32 [B] (keys 0..len−1 of row b
  // are visible, len ≥ 1), out [B, nH·hd]. Not pure virtual so that backends gain it one by one.
  virtual void attention_decode(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                                const Tensor& lengths, const AttentionShape& shape, Tensor out);

  // out = silu(gate) · up, all [T, I].
  virtual void swiglu_forward(const Tensor& gate, const Tensor& up, Tensor out) = 0;
  // dgate, dup overwritten. In place is allowed: each output may alias an input exactly (same
  // data, same shape; the model writes dgate into gate and dup into up), because every backend
  // reads all inputs at an index before writing the outputs at that index. dgate and dup must not
  // alias each other.
  virtual void swiglu_backward(const Tensor& dout, const Tensor& gate, const Tensor& up,
                               Tensor dgate, Tensor dup) = 0;

  // ---- mixture of experts (model/transformer_moe.cpp)
  // ------------------------------------------------------ Not pure virtual so that backends gain
  // them one by one; the defaults throw a clear error.
  //
  // Routing: probs f32 [T, E] = softmax(logits [T, E], computed in f32); experts i32 [T, k] the
  // k largest probabilities of each row in descending order (ties: the lower expert index
  // first); weights f32 [T, k] their probabilities, divided by their sum when renormalize.
  virtual void moe_route(const Tensor& logits, int k, bool renormalize, Tensor probs,
                         Tensor weights, Tensor experts);
  // ∂L/∂logits [T, E] (overwritten, any float dtype) from ∂L/∂weights f32 [T, k] through the
  // renormalisation (when renormalize) and the softmax; the top-k choice itself has no gradient.
  // extra_dprobs: empty, or f32 [T, E] added to ∂L/∂probs first (the load-balancing loss).
  virtual void moe_route_backward(const Tensor& probs, const Tensor& weights, const Tensor& experts,
                                  const Tensor& dweights, bool renormalize,
                                  const Tensor& extra_dprobs, Tensor dlogits);
  // The rows of the expert computation grouped by expert: each (token t, choice j) pair gets a
  // row, those of expert 0 first, then expert 1, ..., and within an expert by t then j.
  // token_of_row i32 [T·k]: the token t of each row; pair_of_row i32 [T·k]: its pair t·k + j;
  // row_of i32 [T, k]: the row of each pair; counts (host): rows per expert, E entries. A GPU
  // backend waits for the counts (they size the expert GEMMs).
  virtual void moe_permute(const Tensor& experts, int num_experts, Tensor token_of_row,
                           Tensor pair_of_row, Tensor row_of, std::vector<int64_t>& counts);
  // dst [n, H]: row i = src [T, H] row index[i] (i32 [n]), times scale[i] when scale (f32 [n])
  // is not empty.
  virtual void gather_rows(const Tensor& src, const Tensor& index, const Tensor& scale, Tensor dst);
  // y [T, H] (+)= Σ_j weights[t, j] · rows[row_of[t, j]] for j = 0..k−1 in order (rows [T·k, H],
  // row_of i32 [T, k], weights f32 [T, k], or all 1 when empty); accumulated in f32, then added
  // to y (accumulate) or written over it. Deterministic: no atomics.
  virtual void moe_combine(const Tensor& rows, const Tensor& row_of, const Tensor& weights,
                           Tensor y, bool accumulate);
  // dweights f32 [T, k] (overwritten): dweights[t, j] = Σ_h dy[t, h] · rows[row_of[t, j], h].
  virtual void moe_weight_grad(const Tensor& dy, const Tensor& rows, const Tensor& row_of,
                               Tensor dweights);

  // Cross-entropy over a chunk of logits [T, V] with labels i32 [T] (−100 = ignored).
  // losses f32 [T] gets −log softmax(logits)[label] (0 where ignored). When compute_grad, the
  // logits are overwritten with grad_scale · (softmax − onehot) (0 rows where ignored), so the
  // caller never holds a second [T, V] buffer.
  virtual void cross_entropy(Tensor logits, const Tensor& labels, Tensor losses, float grad_scale,
                             bool compute_grad) = 0;

  // ---- optimizer ----------------------------------------------------------------------------
  // Σ x² in f64 (global-norm clipping sums this over every gradient).
  virtual double sum_squares(const Tensor& x) = 0;
  // Decoupled AdamW on f32 param/m/v with grad (any dtype) scaled by grad_scale first.
  virtual void adamw_step(Tensor param, const Tensor& grad, Tensor m, Tensor v,
                          const AdamWParams& p, float grad_scale) = 0;
};

// CUDA's device-side cost of mapped pinned host memory, measured on an H200 (driver 580,
// bench/NOTES.md session 8): 2.0–2.1 MiB of device memory per GiB mapped (1/512, about 8 bytes
// per 4 KiB page), on top of the arena. Rounded up to whole MiB.
inline size_t cuda_host_mapping_bytes(size_t host_bytes) {
  constexpr size_t kMiB = size_t{1} << 20;
  return (host_bytes / 512 + kMiB - 1) / kMiB * kMiB;
}

inline Backend::HostMapped Backend::allocate_host_mapped(size_t bytes) {
  void* p = ::operator new(bytes);
  return {p, p};
}
inline void Backend::deallocate_host_mapped(const HostMapped& m) {
  ::operator delete(m.host);
}

inline void Backend::attention_decode(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                      const AttentionShape&, Tensor) {
  throw Error(name(), "attention_decode is not implemented on backend " + name(),
              ExitCode::kInternal);
}

inline void Backend::moe_route(const Tensor&, int, bool, Tensor, Tensor, Tensor) {
  throw Error(name(), "moe_route is not implemented on backend " + name(), ExitCode::kInternal);
}
inline void Backend::moe_route_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                        bool, const Tensor&, Tensor) {
  throw Error(name(), "moe_route_backward is not implemented on backend " + name(),
              ExitCode::kInternal);
}
inline void Backend::moe_permute(const Tensor&, int, Tensor, Tensor, Tensor,
                                 std::vector<int64_t>&) {
  throw Error(name(), "moe_permute is not implemented on backend " + name(), ExitCode::kInternal);
}
inline void Backend::gather_rows(const Tensor&, const Tensor&, const Tensor&, Tensor) {
  throw Error(name(), "gather_rows is not implemented on backend " + name(), ExitCode::kInternal);
}
inline void Backend::moe_combine(const Tensor&, const Tensor&, const Tensor&, Tensor, bool) {
  throw Error(name(), "moe_combine is not implemented on backend " + name(), ExitCode::kInternal);
}
inline void Backend::moe_weight_grad(const Tensor&, const Tensor&, const Tensor&, Tensor) {
  throw Error(name(), "moe_weight_grad is not implemented on backend " + name(),
              ExitCode::kInternal);
}

// Backends by name: "cpu", "cuda" (or "cuda:N"). Throws a clear error when a backend is not
// built into this binary.
std::unique_ptr<Backend> make_backend(const std::string& name);
bool cuda_available();

}  // namespace fitlm
