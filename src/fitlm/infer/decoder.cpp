// Decoder: the KV-cache plan, prefill over each prompt and one-token decode steps. The layer
// math mirrors model/transformer_layers.cpp op for op so that cached decoding reproduces the
// training forward's logits.
#include "fitlm/infer/decoder.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "fitlm/core/error.h"

namespace fitlm {
namespace {

constexpr const char* kComponent = "decoder";

// A contiguous view `shape` starting `elems` elements into `base`.
Tensor view_at(const Tensor& base, int64_t elems, Shape shape) {
  return Tensor(static_cast<std::byte*>(base.data) + elems * dtype_size(base.dtype), base.dtype,
                shape, base.device);
}
// [T, heads·hd] viewed as [T·heads, hd] so per-head RMSNorm is a plain row norm.
Tensor per_head(const Tensor& x, int head_dim) {
  return x.reshape(Shape{x.numel() / head_dim, head_dim});
}
std::string cache_name(int l, char kv) {
  return fmt::format("kv.{}.{}", l, kv);
}
int64_t step_rows(const DecoderShape& s) {
  return std::max(s.max_len, s.max_batch);
}

}  // namespace

AllocationPlan plan_decoder(const ModelConfig& c, const DecoderShape& s, int max_lora_r, DType dt) {
  const int64_t t = step_rows(s), b = s.max_batch, h = c.hidden_size, i = c.intermediate_size;
  AllocationPlan plan;
  for (int l = 0; l < c.num_layers; ++l)
    for (char kv : {'k', 'v'})
      plan.add(cache_name(l, kv), "kv_cache", Shape{b, s.max_len, c.kv_dim()}, dt);
  plan.add("in.ids", "inputs", Shape{t}, DType::kI32);
  plan.add("in.positions", "inputs", Shape{t}, DType::kI32);
  plan.add("in.cu_seqlens", "inputs", Shape{2}, DType::kI32);
  plan.add("in.lengths", "inputs", Shape{b}, DType::kI32);
  plan.add("in.inv_freq", "inputs", Shape{c.head_dim / 2}, DType::kF32);
  // Step activations: every layer reuses them (inference keeps nothing for backward).
  for (const char* n : {"x", "xn", "proj"}) plan.add(n, "activations", Shape{t, h}, dt);
  for (const char* n : {"q", "q_raw", "att"}) plan.add(n, "activations", Shape{t, c.q_dim()}, dt);
  for (const char* n : {"k", "k_raw", "v"}) plan.add(n, "activations", Shape{t, c.kv_dim()}, dt);
  if (c.has_dense_layers())
    for (const char* n : {"gate", "up", "act"}) plan.add(n, "activations", Shape{t, i}, dt);
  if (c.has_sparse_layers()) {  // Transformer::MoeScratch: routing and the experts' rows
    const int64_t e = c.moe.num_experts, k = c.moe.experts_per_token;
    const int64_t ie = c.moe.expert_intermediate_size;
    plan.add("router_logits", "activations", Shape{t, e}, dt);
    plan.add("router_probs", "activations", Shape{t, e}, DType::kF32);
    plan.add("route_weights", "activations", Shape{t, k}, DType::kF32);
    plan.add("route_experts", "activations", Shape{t, k}, DType::kI32);
    plan.add("row_of", "activations", Shape{t, k}, DType::kI32);
    for (const char* n : {"row_token", "row_pair"})
      plan.add(n, "activations", Shape{t * k}, DType::kI32);
    plan.add("row_weight", "activations", Shape{t * k}, DType::kF32);
    for (const char* n : {"moe_x", "moe_y"}) plan.add(n, "activations", Shape{t * k, h}, dt);
    for (const char* n : {"moe_gate", "moe_up", "moe_act"})
      plan.add(n, "activations", Shape{t * k, ie}, dt);
  }
  plan.add("lora_u", "activations", Shape{t, std::max(1, max_lora_r)}, dt);
  plan.add("rstd", "activations", Shape{t}, DType::kF32);
  plan.add("rstd_qk", "activations", Shape{t * c.num_heads}, DType::kF32);
  plan.add("lse", "activations", Shape{t * c.num_heads}, DType::kF32);
  plan.add("last", "head", Shape{b, h}, dt);
  plan.add("last_xn", "head", Shape{b, h}, dt);
  plan.add("last_rstd", "head", Shape{b}, DType::kF32);
  plan.add("logits", "head", Shape{b, c.vocab_size}, dt);
  plan.finalize();
  return plan;
}

Decoder::Decoder(Transformer& model, std::vector<const AdapterWeights*> adapters,
                 DecoderShape shape)
    : model_(model),
      be_(model.backend()),
      c_(model.config()),
      adapters_(std::move(adapters)),
      shape_(shape),
      step_rows_(step_rows(shape)) {
  if (shape_.max_batch < 1 || shape_.max_len < 1)
    throw_input_error(kComponent, "max_batch ({}) and max_len ({}) must be positive",
                      shape_.max_batch, shape_.max_len);
  if (c_.sliding_window > 0 && shape_.max_len > c_.sliding_window)
    throw_input_error(kComponent,
                      "max_len {} exceeds the sliding window of {}; sliding-window attention is "
                      "not implemented",
                      shape_.max_len, c_.sliding_window);
  int max_r = 0;
  for (const AdapterWeights* a : adapters_) {
    FITLM_CHECK(a && static_cast<int>(a->layers.size()) == c_.num_layers, kComponent,
                "adapter does not match the model's {} layers", c_.num_layers);
    max_r = std::max(max_r, a->r);
  }
  arena_ = std::make_unique<Arena>(be_, plan_decoder(c_, shape_, max_r, be_.compute_dtype()));
  const std::vector<float> inv = c_.rope_inv_freq();
  be_.upload(arena_->get("in.inv_freq"), inv.data(), DType::kF32);
  attn_.n_heads = c_.num_heads;
  attn_.n_kv_heads = c_.num_kv_heads;
  attn_.head_dim = c_.head_dim;
  attn_.scale = 1.0f / std::sqrt(static_cast<float>(c_.head_dim));
}

Decoder::~Decoder() = default;

Tensor Decoder::buf(const char* name, int64_t rows) const {
  const Tensor b = arena_->get(name);
  if (b.ndim() == 1) return view_at(b, 0, Shape{rows});
  return b.slice_rows(0, rows);
}

Transformer::MoeScratch Decoder::moe_scratch(int64_t t) const {
  const int64_t k = c_.moe.experts_per_token;
  Transformer::MoeScratch s;
  s.router_logits = buf("router_logits", t), s.router_probs = buf("router_probs", t);
  s.route_weights = buf("route_weights", t), s.route_experts = buf("route_experts", t);
  s.row_of = buf("row_of", t), s.row_token = buf("row_token", t * k);
  s.row_pair = buf("row_pair", t * k), s.row_weight = buf("row_weight", t * k);
  s.moe_x = buf("moe_x", t * k), s.moe_gate = buf("moe_gate", t * k);
  s.moe_up = buf("moe_up", t * k), s.moe_act = buf("moe_act", t * k);
  s.moe_y = buf("moe_y", t * k);
  return s;
}

void Decoder::linear(int l, Projection p, const Tensor& x, Tensor y, int64_t t) {
  const LinearWeights& lw = model_.layer(l)[p];
  be_.gemm(x, false, lw.w, true, y);  // y = x Wᵀ
  if (!lw.b.empty()) be_.add_bias(y, lw.b);
  for (const AdapterWeights* a : adapters_) {
    const LoraPair& pair = a->layers[l][static_cast<int>(p)];
    if (pair.a.empty()) continue;
    Tensor u = view_at(arena_->get("lora_u"), 0, Shape{t, pair.a.dim(0)});
    be_.gemm(x, false, pair.a, true, u);                  // u = x Aᵀ
    be_.gemm(u, false, pair.b, true, y, a->scale, 1.0f);  // y += s·u Bᵀ
  }
}

// slot ≥ 0: prefill of that sequence (t prompt tokens, empty cache); slot −1: a decode step
// with one token for each of the t sequences.
void Decoder::layer_forward(int l, int64_t t, bool decode) {
  model_.prepare_layer(l);  // a 4-bit base: this layer's weights dequantized
  const LayerWeights& L = model_.layer(l);
  const float eps = static_cast<float>(c_.rms_norm_eps);
  const int hd = c_.head_dim;
  Tensor x = buf("x", t), xn = buf("xn", t), rstd = buf("rstd", t);
  Tensor q = buf("q", t), k = buf("k", t), v = buf("v", t), att = buf("att", t);
  const Tensor positions = buf("in.positions", t), inv_freq = arena_->get("in.inv_freq");

  be_.rmsnorm_forward(x, L.input_norm, eps, xn, rstd);
  if (c_.qk_norm) {
    Tensor q_raw = buf("q_raw", t), k_raw = buf("k_raw", t);
    linear(l, Projection::kQ, xn, q_raw, t);
    linear(l, Projection::kK, xn, k_raw, t);
    be_.rmsnorm_forward(per_head(q_raw, hd), L.q_norm, eps, per_head(q, hd),
                        buf("rstd_qk", t * c_.num_heads));
    be_.rmsnorm_forward(per_head(k_raw, hd), L.k_norm, eps, per_head(k, hd),
                        buf("rstd_qk", t * c_.num_kv_heads));
  } else {
    linear(l, Projection::kQ, xn, q, t);
    linear(l, Projection::kK, xn, k, t);
  }
  linear(l, Projection::kV, xn, v, t);
  be_.rope(q, c_.num_heads, hd, positions, inv_freq, false);
  be_.rope(k, c_.num_kv_heads, hd, positions, inv_freq, false);

  const Tensor kc = arena_->get(cache_name(l, 'k')), vc = arena_->get(cache_name(l, 'v'));
  const int64_t row = shape_.max_len * c_.kv_dim();  // elements of one sequence's cache
  if (!decode) {
    const int64_t slot = prefill_slot_;
    be_.copy(k, view_at(kc, slot * row, Shape{t, c_.kv_dim()}));
    be_.copy(v, view_at(vc, slot * row, Shape{t, c_.kv_dim()}));
    Tensor lse = view_at(arena_->get("lse"), 0, Shape{c_.num_heads, t});
    be_.attention_forward(q, k, v, arena_->get("in.cu_seqlens"), attn_, att, lse);
  } else {
    for (int64_t b = 0; b < t; ++b) {  // append at position lengths_[b] − 1 (already bumped)
      const int64_t at = b * row + (lengths_[b] - 1) * c_.kv_dim();
      be_.copy(k.slice_rows(b, b + 1), view_at(kc, at, Shape{1, c_.kv_dim()}));
      be_.copy(v.slice_rows(b, b + 1), view_at(vc, at, Shape{1, c_.kv_dim()}));
    }
    const Shape cache{t, shape_.max_len, c_.kv_dim()};
    be_.attention_decode(q, view_at(kc, 0, cache), view_at(vc, 0, cache), buf("in.lengths", t),
                         attn_, att);
  }
  Tensor proj = buf("proj", t);
  linear(l, Projection::kO, att, proj, t);
  be_.add(x, proj, x);  // x is now the attention block's residual output
  be_.rmsnorm_forward(x, L.post_norm, eps, xn, rstd);
  if (c_.sparse_layer(l)) {
    model_.moe_mlp_forward(l, xn, moe_scratch(t), x);  // adds into the residual stream
    return;
  }
  Tensor gate = buf("gate", t), up = buf("up", t), act = buf("act", t);
  linear(l, Projection::kGate, xn, gate, t);
  linear(l, Projection::kUp, xn, up, t);
  be_.swiglu_forward(gate, up, act);
  linear(l, Projection::kDown, act, proj, t);
  be_.add(x, proj, x);
}

std::vector<float> Decoder::head(int64_t rows) {
  Tensor last = buf("last", rows), xn = buf("last_xn", rows), logits = buf("logits", rows);
  be_.rmsnorm_forward(last, model_.final_norm_weight(), static_cast<float>(c_.rms_norm_eps), xn,
                      buf("last_rstd", rows));
  be_.gemm(xn, false, model_.lm_head_weight(), true, logits);
  std::vector<float> out(static_cast<size_t>(logits.numel()));
  be_.download(logits, out.data());
  return out;
}

std::vector<float> Decoder::prefill(const std::vector<std::vector<int32_t>>& prompts) {
  const int64_t n = static_cast<int64_t>(prompts.size());
  if (n < 1 || n > shape_.max_batch)
    throw_input_error(kComponent, "{} prompts for a decoder of batch {}", n, shape_.max_batch);
  lengths_.assign(static_cast<size_t>(n), 0);
  for (int64_t s = 0; s < n; ++s) {
    const auto& ids = prompts[s];
    const int64_t t = static_cast<int64_t>(ids.size());
    if (t < 1 || t > shape_.max_len)
      throw_input_error(kComponent, "prompt {} has {} tokens; 1 to {} fit the KV cache", s, t,
                        shape_.max_len);
    for (int32_t id : ids)
      if (id < 0 || id >= c_.vocab_size)
        throw_input_error(kComponent, "token id {} is outside the vocabulary [0, {})", id,
                          c_.vocab_size);
    std::vector<int32_t> pos(static_cast<size_t>(t));
    for (int64_t i = 0; i < t; ++i) pos[i] = static_cast<int32_t>(i);
    const int32_t cu[2] = {0, static_cast<int32_t>(t)};
    be_.upload(buf("in.ids", t), ids.data(), DType::kI32);
    be_.upload(buf("in.positions", t), pos.data(), DType::kI32);
    be_.upload(arena_->get("in.cu_seqlens"), cu, DType::kI32);
    be_.embedding_forward(buf("in.ids", t), model_.embed_weight(), buf("x", t));
    prefill_slot_ = s;
    for (int l = 0; l < c_.num_layers; ++l) layer_forward(l, t, false);
    // Only the last position predicts the next token: keep its hidden state for the head.
    be_.copy(buf("x", t).slice_rows(t - 1, t), arena_->get("last").slice_rows(s, s + 1));
    lengths_[s] = static_cast<int32_t>(t);
  }
  return head(n);
}

std::vector<float> Decoder::step(std::span<const int32_t> tokens) {
  const int64_t n = batch();
  if (static_cast<int64_t>(tokens.size()) != n)
    throw_input_error(kComponent, "{} tokens for {} sequences", tokens.size(), n);
  std::vector<int32_t> pos(lengths_.begin(), lengths_.end());
  for (int64_t b = 0; b < n; ++b) {
    if (lengths_[b] >= shape_.max_len)
      throw_input_error(kComponent, "sequence {} is full: the KV cache holds {} tokens", b,
                        shape_.max_len);
    if (tokens[b] < 0 || tokens[b] >= c_.vocab_size)
      throw_input_error(kComponent, "token id {} is outside the vocabulary [0, {})", tokens[b],
                        c_.vocab_size);
    ++lengths_[b];
  }
  be_.upload(buf("in.ids", n), tokens.data(), DType::kI32);
  be_.upload(buf("in.positions", n), pos.data(), DType::kI32);
  be_.upload(buf("in.lengths", n), lengths_.data(), DType::kI32);
  be_.embedding_forward(buf("in.ids", n), model_.embed_weight(), buf("x", n));
  for (int l = 0; l < c_.num_layers; ++l) layer_forward(l, n, true);
  be_.copy(buf("x", n), buf("last", n));
  return head(n);
}

}  // namespace fitlm
