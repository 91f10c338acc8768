// A sparse layer's MLP: the mixture of experts of Mixtral and Qwen3-MoE.
//
// Forward: the router scores every token (logits = xn2·Wrᵀ), softmax in f32 picks k experts
// and their weights (renormalised when the config says so); the (token, choice) pairs become
// T·k rows grouped by expert (moe_permute), each expert runs its SwiGLU FFN on its rows (one
// grouped GEMM per projection over all experts: gemm_grouped), and every token adds the weighted
// sum of its k rows' outputs to the residual stream (moe_combine, in choice order: deterministic).
// Backward runs the same in reverse: the weights' gradients from the outputs, the rows' gradients
// through the experts, their sum per token into ∂L/∂xn2, and the router's gradient through the
// softmax and renormalisation.
//
// LoRA on the router and experts (LoraConfig::moe_targets) adds its rank-r products beside the
// base GEMMs: logits += s·(xn2·Aᵀ)·Bᵀ, and per expert e over its rows gate/up += s·(x·A_eᵀ)·B_eᵀ
// (one A_e, B_e's first I rows for the gate, the next I for up) and y += s·(act·A_eᵀ)·B_eᵀ, as
// grouped GEMMs over the same row counts. The intermediates x·Aᵀ are saved activations
// (moe_lora_u.*); backward overwrites them with their gradients.
//
// Rows per expert size the GEMMs, so they come to the host once per layer and pass
// (moe_permute): a GPU backend synchronises there.
#include "fitlm/core/error.h"
#include "fitlm/model/transformer_impl.h"

namespace fitlm {
namespace {

// `shape` elements of `t` from element `offset` on.
Tensor block(const Tensor& t, int64_t offset, Shape shape) {
  return Tensor(static_cast<char*>(t.data) + offset * static_cast<int64_t>(dtype_size(t.dtype)),
                t.dtype, shape, t.device);
}

// Expert e's gate or up rows [I, H] of gate_up [E, 2·I, H], and its down [H, I] of [E, H, I].
struct ExpertViews {
  int64_t h, i;
  Tensor gate(const Tensor& gate_up, int64_t e) const {
    return block(gate_up, e * 2 * i * h, Shape{i, h});
  }
  Tensor up(const Tensor& gate_up, int64_t e) const {
    return block(gate_up, (e * 2 + 1) * i * h, Shape{i, h});
  }
  Tensor down(const Tensor& down, int64_t e) const { return block(down, e * h * i, Shape{h, i}); }
};

// Expert e's LoRA matrices (MoeWeights): A_e [r, in] of A [E·r, in], and rows [first, first + n)
// of B_e [out, r] of B [E, out, r].
struct ExpertLora {
  int64_t r;
  Tensor a(const Tensor& a, int64_t e) const {
    return block(a, e * r * a.dim(1), Shape{r, a.dim(1)});
  }
  Tensor b(const Tensor& b, int64_t e, int64_t first, int64_t n) const {
    return block(b, (e * b.dim(1) + first) * r, Shape{n, r});
  }
};

// Calls f(e, first row, rows) for every expert with rows.
template <typename F>
void for_each_expert(const std::vector<int64_t>& counts, F&& f) {
  int64_t first = 0;
  for (size_t e = 0; e < counts.size(); ++e) {
    if (counts[e] > 0) f(static_cast<int64_t>(e), first, counts[e]);
    first += counts[e];
  }
}

// out's rows = alpha · in's rows · weight(e)ᵀ (or · weight(e)) + beta · out's rows, for every
// expert e over its rows, as one grouped GEMM.
template <typename W>
void expert_products(Backend& be, const std::vector<int64_t>& counts, const Tensor& in, W&& weight,
                     bool trans_weight, const Tensor& out, float beta = 0.0f, float alpha = 1.0f) {
  std::vector<Backend::GemmGroup> groups;
  for_each_expert(counts, [&](int64_t e, int64_t first, int64_t n) {
    groups.push_back(
        {in.slice_rows(first, first + n), weight(e), out.slice_rows(first, first + n)});
  });
  be.gemm_grouped(groups, false, trans_weight, alpha, beta);
}

// weight(e) += alpha · lhs's rowsᵀ · rhs's rows, for every expert e over its rows (a weight
// gradient).
template <typename W>
void expert_weight_grads(Backend& be, const std::vector<int64_t>& counts, const Tensor& lhs,
                         const Tensor& rhs, W&& weight, float alpha = 1.0f) {
  std::vector<Backend::GemmGroup> groups;
  for_each_expert(counts, [&](int64_t e, int64_t first, int64_t n) {
    groups.push_back(
        {lhs.slice_rows(first, first + n), rhs.slice_rows(first, first + n), weight(e)});
  });
  be.gemm_grouped(groups, true, false, alpha, 1.0f);
}

}  // namespace

std::vector<int64_t>& Transformer::Impl::moe_counts(int l) {
  const size_t index =
      static_cast<size_t>(slot_) * static_cast<size_t>(c_.num_layers) + static_cast<size_t>(l);
  if (moe_counts_.size() <= index) moe_counts_.resize(index + 1);
  return moe_counts_[index];
}

void Transformer::Impl::moe_forward(int l, const LayerActivations& a, Tensor y, int64_t t,
                                    std::vector<int64_t>& counts) {
  const MoeWeights& w = m_.layers_[l].moe;
  const int64_t k = c_.moe.experts_per_token;
  const int64_t ie = c_.moe.expert_intermediate_size;
  const ExpertViews ev{c_.hidden_size, ie};
  const ExpertLora el{m_.lora_.r};
  const float s = m_.lora_.scale();
  // LoRA on the router or experts needs its intermediates' buffers (the training passes'
  // activations; the incremental decoder has none).
  FITLM_CHECK((w.lora_router_a.empty() || !a.moe_lora_router_u.empty()) &&
                  (w.lora_gate_up_a.empty() || !a.moe_lora_gate_up_u.empty()) &&
                  (w.lora_down_a.empty() || !a.moe_lora_down_u.empty()),
              "model", "layer {}: LoRA on the router or experts without its buffers", l);
  be_.gemm(a.xn2, false, w.router, true, a.router_logits);  // logits = xn2 Wrᵀ
  if (!w.lora_router_a.empty()) {                           // logits += s·(xn2 Aᵀ) Bᵀ
    be_.gemm(a.xn2, false, w.lora_router_a, true, a.moe_lora_router_u);
    be_.gemm(a.moe_lora_router_u, false, w.lora_router_b, true, a.router_logits, s, 1.0f);
  }
  be_.moe_route(a.router_logits, static_cast<int>(k), c_.moe.normalize_top_k, a.router_probs,
                a.route_weights, a.route_experts);
  be_.moe_permute(a.route_experts, c_.moe.num_experts, a.row_token, a.row_pair, a.row_of, counts);
  be_.gather_rows(a.xn2, a.row_token, Tensor{}, a.moe_x);
  // Each row's weight, for the backward of its output.
  be_.gather_rows(a.route_weights.reshape(Shape{t * k, 1}), a.row_pair, Tensor{},
                  a.row_weight.reshape(Shape{t * k, 1}));
  const auto gate = [&](int64_t e) { return ev.gate(w.gate_up, e); };
  const auto up = [&](int64_t e) { return ev.up(w.gate_up, e); };
  const auto down = [&](int64_t e) { return ev.down(w.down, e); };
  expert_products(be_, counts, a.moe_x, gate, true, a.moe_gate);  // gate = x Wgᵀ
  expert_products(be_, counts, a.moe_x, up, true, a.moe_up);      // up = x Wuᵀ
  if (!w.lora_gate_up_a.empty()) {  // u = x A_eᵀ; gate += s·u B_e[0:I]ᵀ, up += s·u B_e[I:2I]ᵀ
    const Tensor& u = a.moe_lora_gate_up_u;
    expert_products(
        be_, counts, a.moe_x, [&](int64_t e) { return el.a(w.lora_gate_up_a, e); }, true, u);
    expert_products(
        be_, counts, u, [&](int64_t e) { return el.b(w.lora_gate_up_b, e, 0, ie); }, true,
        a.moe_gate, 1.0f, s);
    expert_products(
        be_, counts, u, [&](int64_t e) { return el.b(w.lora_gate_up_b, e, ie, ie); }, true,
        a.moe_up, 1.0f, s);
  }
  be_.swiglu_forward(a.moe_gate, a.moe_up, a.moe_act);
  expert_products(be_, counts, a.moe_act, down, true, a.moe_y);  // y = act Wdᵀ
  if (!w.lora_down_a.empty()) {                                  // u = act A_eᵀ; y += s·u B_eᵀ
    const Tensor& u = a.moe_lora_down_u;
    expert_products(
        be_, counts, a.moe_act, [&](int64_t e) { return el.a(w.lora_down_a, e); }, true, u);
    expert_products(
        be_, counts, u, [&](int64_t e) { return el.b(w.lora_down_b, e, 0, c_.hidden_size); }, true,
        a.moe_y, 1.0f, s);
  }
  if (!y.empty()) be_.moe_combine(a.moe_y, a.row_of, a.route_weights, y, /*accumulate=*/true);
  if (aux_collect_ && !y.empty()) {  // not on recompute: the forward pass counted this layer
    const int64_t e = c_.moe.num_experts;
    std::vector<float> probs(static_cast<size_t>(t * e));
    be_.download(a.router_probs, probs.data());
    for (int64_t x = 0; x < e; ++x)
      aux_counts_[static_cast<size_t>(x)] += counts[static_cast<size_t>(x)];
    for (int64_t r = 0; r < t; ++r)
      for (int64_t x = 0; x < e; ++x)
        aux_prob_sums_[static_cast<size_t>(x)] += probs[static_cast<size_t>(r * e + x)];
    aux_rows_ += t;
  }
}

void Transformer::moe_mlp_forward(int l, const Tensor& xn, const MoeScratch& s, Tensor y) {
  FITLM_CHECK(config_.sparse_layer(l), "model", "moe_mlp_forward: layer {} is dense", l);
  LayerActivations a;
  a.xn2 = xn;
  a.router_logits = s.router_logits, a.router_probs = s.router_probs;
  a.route_weights = s.route_weights, a.route_experts = s.route_experts;
  a.row_token = s.row_token, a.row_pair = s.row_pair, a.row_of = s.row_of;
  a.row_weight = s.row_weight, a.moe_x = s.moe_x, a.moe_gate = s.moe_gate;
  a.moe_up = s.moe_up, a.moe_act = s.moe_act, a.moe_y = s.moe_y;
  impl_->moe_decode(l, a, y);
}

void Transformer::Impl::moe_decode(int l, const LayerActivations& a, Tensor y) {
  std::vector<int64_t> counts;
  const bool collecting = aux_collect_;
  aux_collect_ = false;
  moe_forward(l, a, y, a.xn2.rows(), counts);
  aux_collect_ = collecting;
}

void Transformer::Impl::start_aux_loss(bool training_pass) {
  aux_collect_ = training_pass && c_.moe.aux_loss && m_.mode_ != TrainMode::kFrozen;
  aux_rows_ = 0;
  aux_dprobs_.clear();
  if (!aux_collect_) return;
  aux_counts_.assign(static_cast<size_t>(c_.moe.num_experts), 0.0);
  aux_prob_sums_.assign(static_cast<size_t>(c_.moe.num_experts), 0.0);
}

// HF's load_balancing_loss_func over the rows of every sparse layer (N of them): with f the
// fraction of chosen (row, choice) pairs per expert and P the mean probability per expert,
// L = E · Σ_e f_e · P_e, and ∂L/∂p[row, e] = E · f_e / N (f has no gradient: it counts argmaxes).
// The term added to the loss is coef · L per micro-batch, weighted by its scored tokens so that
// a step's loss is the token-weighted mean over its micro-batches (for one micro-batch exactly
// HF's CE + coef · L).
void Transformer::Impl::finish_aux_loss(LossResult& r, float grad_scale) {
  if (!aux_collect_ || aux_rows_ == 0) return;
  const double n = static_cast<double>(aux_rows_), experts = c_.moe.num_experts;
  double l = 0.0;
  for (size_t x = 0; x < aux_counts_.size(); ++x)
    l += (aux_counts_[x] / n) * (aux_prob_sums_[x] / n);
  l *= experts;
  const double weight = c_.moe.aux_loss_coef * static_cast<double>(r.tokens);
  r.loss_sum += weight * l;
  aux_dprobs_.resize(aux_counts_.size());
  for (size_t x = 0; x < aux_counts_.size(); ++x)
    aux_dprobs_[x] = static_cast<double>(grad_scale) * weight * experts * (aux_counts_[x] / n) / n;
}

// Gradients overwrite the activations they belong to once nothing reads those any more, as in
// the dense MLP: the rows' output gradients over moe_y (after the weights' gradients have read
// it), dact over moe_act, dgate and dup over moe_gate and moe_up, the rows' input gradients over
// moe_x (each expert's weight gradients read its rows first).
void Transformer::Impl::moe_backward(int l, const LayerActivations& a, const Tensor& dres,
                                     Tensor dxn, int64_t t) {
  const MoeWeights& w = m_.layers_[l].moe;
  const int64_t k = c_.moe.experts_per_token;
  const int64_t ie = c_.moe.expert_intermediate_size, h = c_.hidden_size;
  const ExpertViews ev{h, ie};
  const ExpertLora el{m_.lora_.r};
  const float s = m_.lora_.scale();
  const bool full = !w.ddown.empty();
  const std::vector<int64_t>& counts = moe_counts(l);
  const Tensor dweights = rows("scratch.moe_dweights", t).reshape(Shape{t, k});
  be_.moe_weight_grad(dres, a.moe_y, a.row_of, dweights);
  const Tensor dy = a.moe_y;
  be_.gather_rows(dres, a.row_token, a.row_weight, dy);  // ∂L/∂(row output) = w·∂L/∂y[token]
  const auto gate = [&](int64_t e) { return ev.gate(w.gate_up, e); };
  const auto up = [&](int64_t e) { return ev.up(w.gate_up, e); };
  const auto down = [&](int64_t e) { return ev.down(w.down, e); };
  // A weight's gradient reads act or x before the product over them overwrites it.
  if (full)
    expert_weight_grads(be_, counts, dy, a.moe_act, [&](int64_t e) {
      return ev.down(w.ddown, e);  // dWd += dyᵀ act
    });
  // Down's LoRA, while act still holds the SwiGLU: dB_e += s·dyᵀ u, then u := du = s·dy B_e and
  // dA_e += duᵀ act; dact += du A_e once the base product has written dact.
  const auto down_a = [&](int64_t e) { return el.a(w.lora_down_a, e); };
  const auto down_b = [&](int64_t e) { return el.b(w.lora_down_b, e, 0, h); };
  if (!w.lora_down_a.empty()) {
    const Tensor& u = a.moe_lora_down_u;
    expert_weight_grads(
        be_, counts, dy, u, [&](int64_t e) { return el.b(w.dlora_down_b, e, 0, h); }, s);
    expert_products(be_, counts, dy, down_b, false, u, 0.0f, s);
    expert_weight_grads(be_, counts, u, a.moe_act,
                        [&](int64_t e) { return el.a(w.dlora_down_a, e); });
  }
  expert_products(be_, counts, dy, down, false, a.moe_act);  // dact = dy Wd
  if (!w.lora_down_a.empty())
    expert_products(be_, counts, a.moe_lora_down_u, down_a, false, a.moe_act, 1.0f);
  be_.swiglu_backward(a.moe_act, a.moe_gate, a.moe_up, a.moe_gate, a.moe_up);
  if (full) {
    expert_weight_grads(be_, counts, a.moe_gate, a.moe_x, [&](int64_t e) {
      return ev.gate(w.dgate_up, e);  // dWg += dgᵀ x
    });
    expert_weight_grads(be_, counts, a.moe_up, a.moe_x, [&](int64_t e) {
      return ev.up(w.dgate_up, e);  // dWu += duᵀ x
    });
  }
  // gate_up's LoRA, while moe_x still holds the rows' inputs: dB_e[0:I] += s·dgᵀ u,
  // dB_e[I:2I] += s·dupᵀ u, then u := du = s·(dg B_e[0:I] + dup B_e[I:2I]) and dA_e += duᵀ x;
  // dx += du A_e after the base products.
  if (!w.lora_gate_up_a.empty()) {
    const Tensor& u = a.moe_lora_gate_up_u;
    expert_weight_grads(
        be_, counts, a.moe_gate, u, [&](int64_t e) { return el.b(w.dlora_gate_up_b, e, 0, ie); },
        s);
    expert_weight_grads(
        be_, counts, a.moe_up, u, [&](int64_t e) { return el.b(w.dlora_gate_up_b, e, ie, ie); }, s);
    expert_products(
        be_, counts, a.moe_gate, [&](int64_t e) { return el.b(w.lora_gate_up_b, e, 0, ie); }, false,
        u, 0.0f, s);
    expert_products(
        be_, counts, a.moe_up, [&](int64_t e) { return el.b(w.lora_gate_up_b, e, ie, ie); }, false,
        u, 1.0f, s);
    expert_weight_grads(be_, counts, u, a.moe_x,
                        [&](int64_t e) { return el.a(w.dlora_gate_up_a, e); });
  }
  expert_products(be_, counts, a.moe_gate, gate, false, a.moe_x);    // dx = dg Wg
  expert_products(be_, counts, a.moe_up, up, false, a.moe_x, 1.0f);  // dx += du Wu
  if (!w.lora_gate_up_a.empty())
    expert_products(
        be_, counts, a.moe_lora_gate_up_u, [&](int64_t e) { return el.a(w.lora_gate_up_a, e); },
        false, a.moe_x, 1.0f);
  be_.moe_combine(a.moe_x, a.row_of, Tensor{}, dxn, /*accumulate=*/false);  // Σ over a token's rows
  const Tensor dlogits = rows("scratch.moe_dlogits", t);
  Tensor aux_dprobs;
  if (!aux_dprobs_.empty()) {  // the load-balancing loss: the same ∂L/∂p for every row
    const int64_t e = c_.moe.num_experts;
    aux_dprobs = rows("scratch.moe_aux_dprobs", t);
    std::vector<float> host(static_cast<size_t>(t * e));
    for (int64_t r = 0; r < t; ++r)
      for (int64_t x = 0; x < e; ++x)
        host[static_cast<size_t>(r * e + x)] =
            static_cast<float>(aux_dprobs_[static_cast<size_t>(x)]);
    be_.upload(aux_dprobs, host.data(), DType::kF32);
  }
  be_.moe_route_backward(a.router_probs, a.route_weights, a.route_experts, dweights,
                         c_.moe.normalize_top_k, aux_dprobs, dlogits);
  be_.gemm(dlogits, false, w.router, false, dxn, 1.0f, 1.0f);              // dxn += dlogits Wr
  if (full) be_.gemm(dlogits, true, a.xn2, false, w.drouter, 1.0f, 1.0f);  // dWr += dlogitsᵀ xn2
  if (!w.lora_router_a.empty()) {
    const Tensor& u = a.moe_lora_router_u;
    be_.gemm(dlogits, true, u, false, w.dlora_router_b, s, 1.0f);   // dB += s·dlogitsᵀ u
    be_.gemm(dlogits, false, w.lora_router_b, false, u, s, 0.0f);   // u := du = s·dlogits B
    be_.gemm(u, true, a.xn2, false, w.dlora_router_a, 1.0f, 1.0f);  // dA += duᵀ xn2
    be_.gemm(u, false, w.lora_router_a, false, dxn, 1.0f, 1.0f);    // dxn += du A
  }
}

}  // namespace fitlm
