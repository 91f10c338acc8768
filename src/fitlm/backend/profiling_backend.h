// A Backend that forwards every op to another backend and times it, grouped by op family
// (`fitlm bench --profile`). Each op is bracketed by synchronize() calls, so it measures device
// time plus one launch/sync round trip; the round trip is calibrated once and subtracted. This
// serialises the stream: profile runs are slower than normal runs and only their split matters.
#pragma once

#include <chrono>
#include <map>
#include <string>

#include "fitlm/backend/backend.h"

namespace fitlm {

struct OpTime {
  double seconds = 0.0;
  int64_t calls = 0;
  double flops = 0.0;  // counted for GEMMs and attention, 0 for memory-bound ops
};

class ProfilingBackend final : public Backend {
 public:
  explicit ProfilingBackend(Backend& inner);

  // Off: ops pass straight through (no synchronize, no timing), so one model can run timed
  // steps at full speed and then profiled steps.
  void set_enabled(bool on) { enabled_ = on; }
  void reset() { times_.clear(); }
  const std::map<std::string, OpTime>& times() const { return times_; }
  // Table sorted by time: op, calls, ms per step, share, TFLOP/s where FLOPs are known.
  std::string report(int steps) const;

  std::string name() const override { return inner_.name(); }
  Device device() const override { return inner_.device(); }
  DType compute_dtype() const override { return inner_.compute_dtype(); }
  void* allocate(size_t bytes) override { return inner_.allocate(bytes); }
  void deallocate(void* ptr) override { inner_.deallocate(ptr); }
  HostMapped allocate_host_mapped(size_t bytes) override;
  size_t host_mapping_bytes(size_t host_bytes) const override {
    return inner_.host_mapping_bytes(host_bytes);
  }
  void deallocate_host_mapped(const HostMapped& m) override;
  void upload(Tensor dst, const void* src, DType src_dtype) override;
  void download(const Tensor& src, float* dst) override;
  void synchronize() override { inner_.synchronize(); }
  size_t memory_in_use() override { return inner_.memory_in_use(); }
  size_t memory_free() override { return inner_.memory_free(); }
  std::string device_description() override { return inner_.device_description(); }
  size_t reserved_bytes() override { return inner_.reserved_bytes(); }

  void fill(Tensor x, float value) override;
  void copy(const Tensor& src, Tensor dst) override;
  TransferTicket copy_async(const Tensor& src, Tensor dst) override;
  void wait_transfers() override;
  void wait_transfer(TransferTicket ticket) override;
  void add(const Tensor& a, const Tensor& b, Tensor out) override;
  void axpy(float alpha, const Tensor& x, Tensor y) override;
  void scale(Tensor x, float alpha) override;
  void add_bias(Tensor x, const Tensor& bias) override;
  void bias_backward(const Tensor& dout, Tensor dbias) override;
  void dropout(const Tensor& x, Tensor out, float p, uint64_t seed) override;
  void dequantize4(const Quant4Tensor& q, Tensor out) override;
  void dequantize4_many(const std::vector<std::pair<const Quant4Tensor*, Tensor>>& work) override;

  void gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor c, float alpha,
            float beta) override;
  void gemm_grouped(const std::vector<GemmGroup>& groups, bool trans_a, bool trans_b, float alpha,
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

 private:
  // Runs f between two synchronize() calls and books its time under `op`.
  template <typename F>
  auto timed(const std::string& op, double flops, F&& f);

  Backend& inner_;
  std::map<std::string, OpTime> times_;
  double overhead_s_ = 0.0;  // one empty synchronize() round trip
  bool enabled_ = true;
};

}  // namespace fitlm
