#include "fitlm/backend/profiling_backend.h"

#include <fmt/format.h>

#include <algorithm>
#include <vector>

namespace fitlm {
namespace {

using Clock = std::chrono::steady_clock;

// A GEMM's family: the frozen/full-size products, the rank-r LoRA products, the LM head.
// LoRA products are listed per shape (m×n×k and transposes): they differ by 10× in speed.
std::string gemm_family(int64_t m, int64_t n, int64_t k, bool trans_a, bool trans_b) {
  if (std::min({m, n, k}) <= 256)
    return fmt::format("lora {}x{}x{} {}{}", m, n, k, trans_a ? 'T' : 'N', trans_b ? 'T' : 'N');
  if (std::max({m, n, k}) >= 32000) return "gemm lm head";
  return "gemm projections";
}

// Causal attention FLOPs of one call: per segment 2·S²·D for QKᵀ and PV each, halved by the
// mask (the model-FLOP convention bench uses), so 2·S²·D forward; backward does 2.5× that.
double attention_flops(const Tensor& cu, const Tensor& q, Backend& be) {
  std::vector<float> offsets(static_cast<size_t>(cu.numel()));
  be.download(cu, offsets.data());
  double f = 0.0;
  for (size_t i = 1; i < offsets.size(); ++i) {
    const double s = offsets[i] - offsets[i - 1];
    f += 2.0 * s * s * static_cast<double>(q.cols());
  }
  return f;
}

}  // namespace

ProfilingBackend::ProfilingBackend(Backend& inner) : inner_(inner) {
  std::vector<double> samples;
  for (int i = 0; i < 50; ++i) {
    const auto t0 = Clock::now();
    inner_.synchronize();
    samples.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  std::sort(samples.begin(), samples.end());
  overhead_s_ = samples[samples.size() / 2];
}

template <typename F>
auto ProfilingBackend::timed(const std::string& op, double flops, F&& f) {
  if (!enabled_) return f();
  inner_.synchronize();
  const auto t0 = Clock::now();
  struct Book {
    ProfilingBackend* self;
    const std::string& op;
    double flops;
    Clock::time_point t0;
    ~Book() {
      self->inner_.synchronize();
      const double s = std::chrono::duration<double>(Clock::now() - t0).count();
      OpTime& t = self->times_[op];
      t.seconds += std::max(0.0, s - self->overhead_s_);
      t.calls += 1;
      t.flops += flops;
    }
  } book{this, op, flops, t0};
  return f();
}

std::string ProfilingBackend::report(int steps) const {
  std::vector<std::pair<std::string, OpTime>> rows(times_.begin(), times_.end());
  std::sort(rows.begin(), rows.end(),
            [](const auto& a, const auto& b) { return a.second.seconds > b.second.seconds; });
  double total = 0.0;
  for (const auto& [op, t] : rows) total += t.seconds;
  const double n = std::max(1, steps);
  std::string out = fmt::format("  {:<32} {:>8} {:>10} {:>7} {:>9}\n", "op", "calls/step",
                                "ms/step", "share", "TFLOP/s");
  for (const auto& [op, t] : rows) {
    const std::string rate = t.flops > 0 && t.seconds > 0
                                 ? fmt::format("{:.0f}", t.flops / t.seconds / 1e12)
                                 : std::string("-");
    out += fmt::format("  {:<32} {:>8.0f} {:>10.2f} {:>6.1f}% {:>9}\n", op, t.calls / n,
                       1e3 * t.seconds / n, 100.0 * t.seconds / std::max(total, 1e-12), rate);
  }
  out += fmt::format("  {:<32} {:>8} {:>10.2f}   (sync overhead {:.1f} us/op subtracted)\n",
                     "total", "", 1e3 * total / n, 1e6 * overhead_s_);
  return out;
}

void ProfilingBackend::upload(Tensor dst, const void* src, DType src_dtype) {
  timed("upload", 0, [&] { inner_.upload(dst, src, src_dtype); });
}
void ProfilingBackend::download(const Tensor& src, float* dst) {
  timed("download", 0, [&] { inner_.download(src, dst); });
}
void ProfilingBackend::fill(Tensor x, float value) {
  timed("fill", 0, [&] { inner_.fill(x, value); });
}
void ProfilingBackend::copy(const Tensor& src, Tensor dst) {
  timed("copy", 0, [&] { inner_.copy(src, dst); });
}
// Timed like every op, so the profile serialises it with compute: the overlap is not measured.
TransferTicket ProfilingBackend::copy_async(const Tensor& src, Tensor dst) {
  TransferTicket ticket = 0;
  timed("copy_async", 0, [&] { ticket = inner_.copy_async(src, dst); });
  return ticket;
}
void ProfilingBackend::wait_transfers() {
  inner_.wait_transfers();
}
void ProfilingBackend::wait_transfer(TransferTicket ticket) {
  inner_.wait_transfer(ticket);
}
Backend::HostMapped ProfilingBackend::allocate_host_mapped(size_t bytes) {
  return inner_.allocate_host_mapped(bytes);
}
void ProfilingBackend::deallocate_host_mapped(const HostMapped& m) {
  inner_.deallocate_host_mapped(m);
}
void ProfilingBackend::dequantize4(const Quant4Tensor& q, Tensor out) {
  timed("dequantize4", 0, [&] { inner_.dequantize4(q, out); });
}
void ProfilingBackend::dequantize4_many(
    const std::vector<std::pair<const Quant4Tensor*, Tensor>>& work) {
  timed("dequantize4 (layer)", 0, [&] { inner_.dequantize4_many(work); });
}
void ProfilingBackend::add(const Tensor& a, const Tensor& b, Tensor out) {
  timed("add", 0, [&] { inner_.add(a, b, out); });
}
void ProfilingBackend::axpy(float alpha, const Tensor& x, Tensor y) {
  timed("axpy", 0, [&] { inner_.axpy(alpha, x, y); });
}
void ProfilingBackend::scale(Tensor x, float alpha) {
  timed("scale", 0, [&] { inner_.scale(x, alpha); });
}
void ProfilingBackend::add_bias(Tensor x, const Tensor& bias) {
  timed("add_bias", 0, [&] { inner_.add_bias(x, bias); });
}
void ProfilingBackend::bias_backward(const Tensor& dout, Tensor dbias) {
  timed("bias_backward", 0, [&] { inner_.bias_backward(dout, dbias); });
}
void ProfilingBackend::dropout(const Tensor& x, Tensor out, float p, uint64_t seed) {
  timed("dropout", 0, [&] { inner_.dropout(x, out, p, seed); });
}
void ProfilingBackend::gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor c,
                            float alpha, float beta) {
  const int64_t m = c.rows(), n = c.cols(), k = trans_a ? a.rows() : a.cols();
  timed(gemm_family(m, n, k, trans_a, trans_b), 2.0 * m * n * k,
        [&] { inner_.gemm(a, trans_a, b, trans_b, c, alpha, beta); });
}
void ProfilingBackend::gemm_grouped(const std::vector<GemmGroup>& groups, bool trans_a,
                                    bool trans_b, float alpha, float beta) {
  double flops = 0;
  for (const GemmGroup& g : groups)
    flops += 2.0 * g.c.rows() * g.c.cols() * (trans_a ? g.a.rows() : g.a.cols());
  timed("gemm experts", flops, [&] { inner_.gemm_grouped(groups, trans_a, trans_b, alpha, beta); });
}
void ProfilingBackend::embedding_forward(const Tensor& ids, const Tensor& table, Tensor out) {
  timed("embedding_forward", 0, [&] { inner_.embedding_forward(ids, table, out); });
}
void ProfilingBackend::embedding_backward(const Tensor& ids, const Tensor& dout, Tensor dtable) {
  timed("embedding_backward", 0, [&] { inner_.embedding_backward(ids, dout, dtable); });
}
void ProfilingBackend::rmsnorm_forward(const Tensor& x, const Tensor& w, float eps, Tensor out,
                                       Tensor rstd) {
  timed("rmsnorm_forward", 0, [&] { inner_.rmsnorm_forward(x, w, eps, out, rstd); });
}
void ProfilingBackend::rmsnorm_backward(const Tensor& dout, const Tensor& x, const Tensor& w,
                                        const Tensor& rstd, Tensor dx, Tensor dw) {
  timed("rmsnorm_backward", 0, [&] { inner_.rmsnorm_backward(dout, x, w, rstd, dx, dw); });
}
void ProfilingBackend::rope(Tensor x, int n_heads, int head_dim, const Tensor& positions,
                            const Tensor& inv_freq, bool inverse) {
  timed("rope", 0, [&] { inner_.rope(x, n_heads, head_dim, positions, inv_freq, inverse); });
}
void ProfilingBackend::attention_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                                         const Tensor& cu_seqlens, const AttentionShape& shape,
                                         Tensor out, Tensor lse) {
  const double f = enabled_ ? attention_flops(cu_seqlens, q, inner_) : 0.0;
  timed("attention_forward", f,
        [&] { inner_.attention_forward(q, k, v, cu_seqlens, shape, out, lse); });
}
void ProfilingBackend::attention_backward(const Tensor& dout, const Tensor& q, const Tensor& k,
                                          const Tensor& v, const Tensor& out, const Tensor& lse,
                                          const Tensor& cu_seqlens, const AttentionShape& shape,
                                          Tensor dq, Tensor dk, Tensor dv, Tensor workspace) {
  const double f = enabled_ ? 2.5 * attention_flops(cu_seqlens, q, inner_) : 0.0;
  timed("attention_backward", f, [&] {
    inner_.attention_backward(dout, q, k, v, out, lse, cu_seqlens, shape, dq, dk, dv, workspace);
  });
}
void ProfilingBackend::attention_decode(const Tensor& q, const Tensor& k_cache,
                                        const Tensor& v_cache, const Tensor& lengths,
                                        const AttentionShape& shape, Tensor out) {
  timed("attention_decode", 0,
        [&] { inner_.attention_decode(q, k_cache, v_cache, lengths, shape, out); });
}
void ProfilingBackend::swiglu_forward(const Tensor& gate, const Tensor& up, Tensor out) {
  timed("swiglu_forward", 0, [&] { inner_.swiglu_forward(gate, up, out); });
}
void ProfilingBackend::swiglu_backward(const Tensor& dout, const Tensor& gate, const Tensor& up,
                                       Tensor dgate, Tensor dup) {
  timed("swiglu_backward", 0, [&] { inner_.swiglu_backward(dout, gate, up, dgate, dup); });
}
void ProfilingBackend::moe_route(const Tensor& logits, int k, bool renormalize, Tensor probs,
                                 Tensor weights, Tensor experts) {
  timed("moe_route", 0, [&] { inner_.moe_route(logits, k, renormalize, probs, weights, experts); });
}
void ProfilingBackend::moe_route_backward(const Tensor& probs, const Tensor& weights,
                                          const Tensor& experts, const Tensor& dweights,
                                          bool renormalize, const Tensor& extra_dprobs,
                                          Tensor dlogits) {
  timed("moe_route_backward", 0, [&] {
    inner_.moe_route_backward(probs, weights, experts, dweights, renormalize, extra_dprobs,
                              dlogits);
  });
}
void ProfilingBackend::moe_permute(const Tensor& experts, int num_experts, Tensor token_of_row,
                                   Tensor pair_of_row, Tensor row_of,
                                   std::vector<int64_t>& counts) {
  timed("moe_permute", 0, [&] {
    inner_.moe_permute(experts, num_experts, token_of_row, pair_of_row, row_of, counts);
  });
}
void ProfilingBackend::gather_rows(const Tensor& src, const Tensor& index, const Tensor& scale,
                                   Tensor dst) {
  timed("gather_rows", 0, [&] { inner_.gather_rows(src, index, scale, dst); });
}
void ProfilingBackend::moe_combine(const Tensor& rows, const Tensor& row_of, const Tensor& weights,
                                   Tensor y, bool accumulate) {
  timed("moe_combine", 0, [&] { inner_.moe_combine(rows, row_of, weights, y, accumulate); });
}
void ProfilingBackend::moe_weight_grad(const Tensor& dy, const Tensor& rows, const Tensor& row_of,
                                       Tensor dweights) {
  timed("moe_weight_grad", 0, [&] { inner_.moe_weight_grad(dy, rows, row_of, dweights); });
}
void ProfilingBackend::cross_entropy(Tensor logits, const Tensor& labels, Tensor losses,
                                     float grad_scale, bool compute_grad) {
  timed("cross_entropy", 0,
        [&] { inner_.cross_entropy(logits, labels, losses, grad_scale, compute_grad); });
}
double ProfilingBackend::sum_squares(const Tensor& x) {
  return timed("sum_squares", 0, [&] { return inner_.sum_squares(x); });
}
void ProfilingBackend::adamw_step(Tensor param, const Tensor& grad, Tensor m, Tensor v,
                                  const AdamWParams& p, float grad_scale) {
  timed("adamw_step", 0, [&] { inner_.adamw_step(param, grad, m, v, p, grad_scale); });
}

}  // namespace fitlm
