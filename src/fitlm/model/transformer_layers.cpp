// Decoder layer forward and backward, written out op by op.
// Gradient rule (backend.h): parameter grads +=, activation grads =.
#include <cmath>

#include "fitlm/core/error.h"
#include "fitlm/model/transformer_impl.h"

namespace fitlm {
namespace {
// [T, heads·hd] viewed as [T·heads, hd] so per-head RMSNorm is a plain row norm.
Tensor per_head(const Tensor& x, int head_dim) {
  return x.reshape(Shape{x.numel() / head_dim, head_dim});
}
Tensor cols_prefix(const Tensor& buf, int64_t t, int64_t cols) {
  return Tensor(buf.data, buf.dtype, Shape{t, cols}, buf.device);
}
}  // namespace

Transformer::Impl::Impl(Transformer& model) : m_(model), be_(model.backend_), c_(model.config_) {
  for (int l = 0; l < c_.num_layers; ++l)
    saved_.push_back(layer_saved(c_, model.mode_, model.shape_, l));
  attn_.n_heads = c_.num_heads;
  attn_.n_kv_heads = c_.num_kv_heads;
  attn_.head_dim = c_.head_dim;
  attn_.scale = 1.0f / std::sqrt(static_cast<float>(c_.head_dim));
  if (m_.arena_->contains(kLoraLayer)) lora_layer_ = m_.arena_->get(kLoraLayer);
}

void Transformer::Impl::cast_lora(int l) {
  if (lora_layer_.empty()) return;
  const Tensor& master = m_.flat_params_.front().master;  // f32, every layer's slice alike
  const int64_t n = lora_layer_.numel();
  be_.copy(Tensor(static_cast<char*>(master.data) + l * n * dtype_size(master.dtype), master.dtype,
                  Shape{n}, master.device),
           lora_layer_);
}

Tensor Transformer::Impl::rows(const std::string& name, int64_t t) const {
  const Tensor buf = m_.arena_->get(name);
  const int64_t t_max = m_.shape_.max_tokens;
  if (buf.ndim() == 1)  // per-token statistics, possibly several per token
    return Tensor(buf.data, buf.dtype, Shape{buf.numel() / t_max * t}, buf.device);
  return buf.slice_rows(0, t);
}

LayerActivations Transformer::Impl::activations(int layer, int64_t t) const {
  const int l = saved_[static_cast<size_t>(layer)] ? layer : -1;
  auto get = [&](const char* n) { return rows(activation_buffer_name(l, n), t); };
  LayerActivations a;
  a.xn1 = get("xn1"), a.rstd1 = get("rstd1"), a.q = get("q"), a.k = get("k"), a.v = get("v");
  a.att = get("att"), a.x_mid = get("x_mid"), a.xn2 = get("xn2"), a.rstd2 = get("rstd2");
  a.gate = get("gate"), a.up = get("up"), a.act = get("act");
  const Tensor lse = m_.arena_->get(activation_buffer_name(l, "lse"));
  a.lse = Tensor(lse.data, DType::kF32, Shape{c_.num_heads, t}, lse.device);
  if (c_.qk_norm) {
    a.q_raw = get("q_raw"), a.k_raw = get("k_raw"), a.rstd_q = get("rstd_q"),
    a.rstd_k = get("rstd_k");
  }
  if (m_.mode_ == TrainMode::kLora)
    for (Projection p : m_.lora_.targets)
      a.lora_u[static_cast<int>(p)] = get((std::string("lora_u.") + projection_name(p)).c_str());
  return a;
}

uint64_t Transformer::Impl::dropout_seed(int layer, Projection p) const {
  return m_.dropout_seed_ * 0x100000001b3ull + static_cast<uint64_t>(layer) * 8 +
         static_cast<uint64_t>(p);
}

// y = x Wᵀ (+ b) (+ s·(x Aᵀ) Bᵀ), or y += that with accumulate_y (the residual add). An empty y
// skips the base GEMM and computes only the LoRA intermediate u.
void Transformer::Impl::linear_forward(int l, Projection p, const Tensor& x, Tensor y,
                                       const Tensor& lora_u, int64_t t, bool accumulate_y) {
  const LinearWeights& lw = m_.layers_[l][p];
  if (!y.empty()) {
    be_.gemm(x, false, lw.w, true, y, 1.0f, accumulate_y ? 1.0f : 0.0f);  // y (+)= x Wᵀ
    if (!lw.b.empty()) be_.add_bias(y, lw.b);
  }
  if (lw.lora_a.empty()) return;
  Tensor xin = x;
  if (m_.lora_.dropout > 0.0f) {
    xin = cols_prefix(m_.arena_->get("scratch.drop_x"), t, x.cols());
    be_.dropout(x, xin, m_.lora_.dropout, dropout_seed(l, p));
  }
  be_.gemm(xin, false, lw.lora_a, true, lora_u);  // u = x Aᵀ
  if (!y.empty())
    be_.gemm(lora_u, false, lw.lora_b, true, y, m_.lora_.scale(), 1.0f);  // y += s·u Bᵀ
}

// Aliasing: dx may be x itself (the down projection writes dact over act, which nothing reads
// afterwards): every read of x — dW, the LoRA dA and the dropout mask applied to x — comes
// before the first write of dx. dy and lora_u must not alias dx.
void Transformer::Impl::linear_backward(int l, Projection p, const Tensor& dy, const Tensor& x,
                                        const Tensor& lora_u, Tensor dx, bool accumulate_dx,
                                        int64_t t) {
  const LinearWeights& lw = m_.layers_[l][p];
  const bool lora = !lw.lora_a.empty(), dropout = lora && m_.lora_.dropout > 0.0f;
  const float s = m_.lora_.scale();
  // Everything that reads x.
  if (!lw.dw.empty()) be_.gemm(dy, true, x, false, lw.dw, 1.0f, 1.0f);  // dW += dyᵀ x
  if (!lw.db.empty()) be_.bias_backward(dy, lw.db);
  Tensor du;
  if (lora) {
    be_.gemm(dy, true, lora_u, false, lw.dlora_b, s, 1.0f);  // dB += s·dyᵀ u
    du = rows("scratch.du", t);
    be_.gemm(dy, false, lw.lora_b, false, du, s, 0.0f);  // du = s·dy B
    Tensor xin = x;
    if (dropout) {
      xin = cols_prefix(m_.arena_->get("scratch.drop_x"), t, x.cols());
      be_.dropout(x, xin, m_.lora_.dropout, dropout_seed(l, p));  // same mask as forward
    }
    be_.gemm(du, true, xin, false, lw.dlora_a, 1.0f, 1.0f);  // dA += duᵀ drop(x)
  }
  // Then dx.
  be_.gemm(dy, false, lw.w, false, dx, 1.0f, accumulate_dx ? 1.0f : 0.0f);  // dx = dy W
  if (!lora) return;
  if (dropout) {
    Tensor dxin = cols_prefix(m_.arena_->get("scratch.drop_dx"), t, x.cols());
    be_.gemm(du, false, lw.lora_a, false, dxin);
    be_.dropout(dxin, dxin, m_.lora_.dropout, dropout_seed(l, p));
    be_.axpy(1.0f, dxin, dx);
  } else {
    be_.gemm(du, false, lw.lora_a, false, dx, 1.0f, 1.0f);  // dx += du A
  }
}

void Transformer::Impl::layer_forward(int l, const LayerActivations& a, const Tensor& x, Tensor y,
                                      int64_t t) {
  const LayerWeights& L = m_.layers_[l];
  const float eps = static_cast<float>(c_.rms_norm_eps);
  const Tensor positions = rows("input.positions", t);
  const Tensor inv_freq = m_.arena_->get("input.inv_freq");
  auto u = [&](Projection p) { return a.lora_u[static_cast<int>(p)]; };

  be_.rmsnorm_forward(x, L.input_norm, eps, a.xn1, a.rstd1);
  linear_forward(l, Projection::kQ, a.xn1, c_.qk_norm ? a.q_raw : a.q, u(Projection::kQ), t);
  linear_forward(l, Projection::kK, a.xn1, c_.qk_norm ? a.k_raw : a.k, u(Projection::kK), t);
  linear_forward(l, Projection::kV, a.xn1, a.v, u(Projection::kV), t);
  if (c_.qk_norm) {
    be_.rmsnorm_forward(per_head(a.q_raw, c_.head_dim), L.q_norm, eps, per_head(a.q, c_.head_dim),
                        a.rstd_q);
    be_.rmsnorm_forward(per_head(a.k_raw, c_.head_dim), L.k_norm, eps, per_head(a.k, c_.head_dim),
                        a.rstd_k);
  }
  be_.rope(a.q, c_.num_heads, c_.head_dim, positions, inv_freq, false);
  be_.rope(a.k, c_.num_kv_heads, c_.head_dim, positions, inv_freq, false);
  be_.attention_forward(a.q, a.k, a.v, cu_seqlens(), attn_, a.att, a.lse);
  // The o and down projections add straight into the residual stream (GEMM with beta = 1).
  be_.copy(x, a.x_mid);
  linear_forward(l, Projection::kO, a.att, a.x_mid, u(Projection::kO), t, true);
  be_.rmsnorm_forward(a.x_mid, L.post_norm, eps, a.xn2, a.rstd2);
  linear_forward(l, Projection::kGate, a.xn2, a.gate, u(Projection::kGate), t);
  linear_forward(l, Projection::kUp, a.xn2, a.up, u(Projection::kUp), t);
  be_.swiglu_forward(a.gate, a.up, a.act);
  // On recompute (y empty) the layer output is not needed, only the down projection's LoRA
  // intermediate for backward: an empty output skips the base GEMM.
  if (!y.empty()) be_.copy(a.x_mid, y);
  linear_forward(l, Projection::kDown, a.act, y, u(Projection::kDown), t, true);
}

void Transformer::Impl::layer_backward(int l, const LayerActivations& a, const Tensor& x,
                                       Tensor dres, int64_t t) {
  const LayerWeights& L = m_.layers_[l];
  const Tensor positions = rows("input.positions", t);
  const Tensor inv_freq = m_.arena_->get("input.inv_freq");
  auto u = [&](Projection p) { return a.lora_u[static_cast<int>(p)]; };
  Tensor dtmp = rows("scratch.dtmp", t), dxn = rows("scratch.dxn", t);

  // MLP block: dres holds ∂L/∂(layer output). Gradients overwrite the activations they belong
  // to once nothing reads those any more: dact over act (linear_backward reads x before writing
  // dx), dgate over gate and dup over up (swiglu_backward runs in place, backend.h).
  enter_phase(Phase::kMlpBackward);
  Tensor dact = a.act, dgate = a.gate, dup = a.up;
  linear_backward(l, Projection::kDown, dres, a.act, u(Projection::kDown), dact, false, t);
  be_.swiglu_backward(dact, a.gate, a.up, dgate, dup);
  linear_backward(l, Projection::kGate, dgate, a.xn2, u(Projection::kGate), dxn, false, t);
  linear_backward(l, Projection::kUp, dup, a.xn2, u(Projection::kUp), dxn, true, t);
  be_.rmsnorm_backward(dxn, a.x_mid, L.post_norm, a.rstd2, dtmp, L.d_post_norm);
  be_.add(dres, dtmp, dres);  // now ∂L/∂x_mid

  // Attention block.
  enter_phase(Phase::kAttnBackward);
  Tensor datt = rows("scratch.datt", t), dq = rows("scratch.dq", t), dk = rows("scratch.dk", t),
         dv = rows("scratch.dv", t);
  linear_backward(l, Projection::kO, dres, a.att, u(Projection::kO), datt, false, t);
  be_.attention_backward(datt, a.q, a.k, a.v, a.att, a.lse, cu_seqlens(), attn_, dq, dk, dv,
                         rows("scratch.attn_ws", t));
  be_.rope(dq, c_.num_heads, c_.head_dim, positions, inv_freq, true);
  be_.rope(dk, c_.num_kv_heads, c_.head_dim, positions, inv_freq, true);
  if (c_.qk_norm) {
    Tensor dq_raw = rows("scratch.dq_raw", t), dk_raw = rows("scratch.dk_raw", t);
    be_.rmsnorm_backward(per_head(dq, c_.head_dim), per_head(a.q_raw, c_.head_dim), L.q_norm,
                         a.rstd_q, per_head(dq_raw, c_.head_dim), L.d_q_norm);
    be_.rmsnorm_backward(per_head(dk, c_.head_dim), per_head(a.k_raw, c_.head_dim), L.k_norm,
                         a.rstd_k, per_head(dk_raw, c_.head_dim), L.d_k_norm);
    dq = dq_raw, dk = dk_raw;
  }
  linear_backward(l, Projection::kQ, dq, a.xn1, u(Projection::kQ), dxn, false, t);
  linear_backward(l, Projection::kK, dk, a.xn1, u(Projection::kK), dxn, true, t);
  linear_backward(l, Projection::kV, dv, a.xn1, u(Projection::kV), dxn, true, t);
  be_.rmsnorm_backward(dxn, x, L.input_norm, a.rstd1, dtmp, L.d_input_norm);
  be_.add(dres, dtmp, dres);  // now ∂L/∂x (the layer input)
}

}  // namespace fitlm
