// The reference backend: f32 everywhere, OpenBLAS for GEMM, OpenMP across rows/heads.
// Simple and obviously right; every CUDA kernel is tested against it.
// Threads: OpenMP only. OpenBLAS is pinned to one thread (its own pool would fight OpenMP's for
// the cores); GEMM is parallelised by splitting C into blocks (cpu_gemm.cpp).
#pragma once

#include "fitlm/backend/backend.h"

namespace fitlm {

class CpuBackend final : public Backend {
 public:
  // Sets OpenBLAS to one thread, process-wide (openblas_set_num_threads(1)).
  CpuBackend();

  std::string name() const override { return "cpu"; }
  Device device() const override { return Device{DeviceKind::kCPU, 0}; }
  DType compute_dtype() const override { return DType::kF32; }

  void* allocate(size_t bytes) override;
  void deallocate(void* ptr) override;
  void upload(Tensor dst, const void* src, DType src_dtype) override;
  void download(const Tensor& src, float* dst) override;
  void synchronize() override {}

  void fill(Tensor x, float value) override;
  void copy(const Tensor& src, Tensor dst) override;
  void add(const Tensor& a, const Tensor& b, Tensor out) override;
  void axpy(float alpha, const Tensor& x, Tensor y) override;
  void scale(Tensor x, float alpha) override;
  void add_bias(Tensor x, const Tensor& bias) override;
  void bias_backward(const Tensor& dout, Tensor dbias) override;
  void dropout(const Tensor& x, Tensor out, float p, uint64_t seed) override;

  void dequantize4(const Quant4Tensor& q, Tensor out) override;

  void gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor c, float alpha,
            float beta) override;

  void embedding_forward(const Tensor& ids, const Tensor& table, Tensor out) override;
  void embedding_backward(const Tensor& ids, const Tensor& dout, Tensor dtable) override;
  void rmsnorm_forward(const Tensor& x, const Tensor& w, float eps, Tensor out,
                       Tensor rstd) override;
  void rmsnorm_backward(const Tensor& dout, const Tensor& x, const Tensor& w, const Tensor& rstd,
                        Tensor dx, Tensor dw) override;
  void rope(Tensor x, int n_heads, int head_dim, const Tensor& positions, const Tensor& inv_freq,
            bool inverse) override;
  void attention_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                         const Tensor& cu_seqlens, const AttentionShape& shape, Tensor out,
                         Tensor lse) override;
  void attention_backward(const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                          const Tensor& out, const Tensor& lse, const Tensor& cu_seqlens,
                          const AttentionShape& shape, Tensor dq, Tensor dk, Tensor dv,
                          Tensor workspace) override;
  void attention_decode(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                        const Tensor& lengths, const AttentionShape& shape, Tensor out) override;
  void swiglu_forward(const Tensor& gate, const Tensor& up, Tensor out) override;
  void swiglu_backward(const Tensor& dout, const Tensor& gate, const Tensor& up, Tensor dgate,
                       Tensor dup) override;
  void moe_route(const Tensor& logits, int k, bool renormalize, Tensor probs, Tensor weights,
                 Tensor experts) override;
  void moe_route_backward(const Tensor& probs, const Tensor& weights, const Tensor& experts,
                          const Tensor& dweights, bool renormalize, const Tensor& extra_dprobs,
                          Tensor dlogits) override;
  void moe_permute(const Tensor& experts, int num_experts, Tensor token_of_row, Tensor pair_of_row,
                   Tensor row_of, std::vector<int64_t>& counts) override;
  void gather_rows(const Tensor& src, const Tensor& index, const Tensor& scale,
                   Tensor dst) override;
  void moe_combine(const Tensor& rows, const Tensor& row_of, const Tensor& weights, Tensor y,
                   bool accumulate) override;
  void moe_weight_grad(const Tensor& dy, const Tensor& rows, const Tensor& row_of,
                       Tensor dweights) override;
  void cross_entropy(Tensor logits, const Tensor& labels, Tensor losses, float grad_scale,
                     bool compute_grad) override;

  double sum_squares(const Tensor& x) override;
  void adamw_step(Tensor param, const Tensor& grad, Tensor m, Tensor v, const AdamWParams& p,
                  float grad_scale) override;
};

// The keep/drop decision shared by every backend's dropout: a splitmix64 hash of (seed, index)
// mapped to [0, 1), so CPU and CUDA drop exactly the same elements.
inline float dropout_uniform(uint64_t seed, uint64_t index) {
  uint64_t z = seed + 0x9e3779b97f4a7c15ull * (index + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return static_cast<float>(z >> 40) * (1.0f / 16777216.0f);
}

// moe_permute's stable counting sort on host arrays (experts i32 [t_count, k]), shared by every
// backend so that all of them produce the same permutation (the CUDA backend runs it on a host
// copy of the experts). Throws on an expert index outside [0, num_experts).
void moe_counting_sort(const int32_t* experts, int64_t t_count, int k, int num_experts,
                       int32_t* token_of_row, int32_t* pair_of_row, int32_t* row_of,
                       std::vector<int64_t>& counts);

}  // namespace fitlm
