// Decoder layer forward and backward, written out op by op.
// Gradient rule (backend.h): parameter grads +=, activation grads =.
#include <algorithm>
#include <cmath>

#include "fitlm/core/error.h"
#include "fitlm/model/transformer_impl.h"

namespace fitlm {
namespace {
// [T, heads·hd] viewed as [T·heads, hd] so per-head RMSNorm is a plain row norm.
Tensor per_head(const Tensor& x, int head_dim) {
  return x.reshape(Shape{x.numel() / head_dim, head_dim});
}
// The first shape.numel() elements of buf, as `shape`.
Tensor prefix(const Tensor& buf, Shape shape) {
  return Tensor(buf.data, buf.dtype, shape, buf.device);
}
// `rows` rows starting at `first`'s, which the caller knows to be contiguous with it.
Tensor stacked(const Tensor& first, int64_t rows) {
  return prefix(first, Shape{rows, first.cols()});
}
// Block i of a matrix cut into blocks of `rows` rows.
Tensor row_block(const Tensor& m, size_t i, int64_t rows) {
  const int64_t begin = static_cast<int64_t>(i) * rows;
  return m.slice_rows(begin, begin + rows);
}
}  // namespace

Transformer::Impl::Impl(Transformer& model)
    : m_(model), be_(model.backend_), c_(model.config_), layers_(stage_layers(c_, model.shape_)) {
  for (int l = 0; l < c_.num_layers; ++l)
    saved_.push_back(layer_saved(c_, model.mode_, model.shape_, l));
  attn_.n_heads = c_.num_heads;
  attn_.n_kv_heads = c_.num_kv_heads;
  attn_.head_dim = c_.head_dim;
  attn_.scale = 1.0f / std::sqrt(static_cast<float>(c_.head_dim));
  if (m_.arena_->contains(kLoraLayer)) lora_layer_ = m_.arena_->get(kLoraLayer);
  if (m_.arena_->contains(kShardLayer)) shard_layer_ = m_.arena_->get(kShardLayer);
  if (m_.arena_->contains(kShardLayerNext)) shard_layer_next_ = m_.arena_->get(kShardLayerNext);
  if (m_.arena_->contains(kLayerInputEven))
    x_ring_ = {m_.arena_->get(kLayerInputEven), m_.arena_->get(kLayerInputOdd)};
  // A 4-bit base: each layer's (packed, destination) pairs, built once for prepare_layer: its
  // seven projections, or a sparse layer's four attention projections and two expert tensors
  // (its MLP projections are empty). Layers of other pipeline stages have none.
  if (m_.shape_.base4)
    for (const LayerWeights& layer : m_.layers_) {
      auto& work = base4_work_.emplace_back();
      for (Projection p : kAllProjections)
        if (!layer[p].w4.empty()) work.emplace_back(&layer[p].w4, layer[p].w);
      for (const auto& [q, out] : {std::pair{&layer.moe.gate_up4, layer.moe.gate_up},
                                   std::pair{&layer.moe.down4, layer.moe.down}})
        if (!q->empty()) work.emplace_back(q, out);
    }
  if (m_.mode_ == TrainMode::kLora) {
    lora_groups_ = lora_groups(m_.lora_);
    batch_lora_ = m_.lora_.dropout == 0.0f && !m_.shape_.lora_per_projection;
    // A batched run reads a group's As (and dAs) as one matrix: lora_layout puts them back to
    // back. Checked once here rather than on every call.
    for (int l = layers_.first; batch_lora_ && l < layers_.end; ++l)
      for (const LoraGroup& g : lora_groups_) {
        if (c_.sparse_layer(l) && projection_in_mlp(g.members.front())) continue;  // none there
        const LinearWeights& first = m_.layers_[l][g.members.front()];
        for (size_t k = 1; k < g.members.size(); ++k) {
          const LinearWeights& lw = m_.layers_[l][g.members[k]];
          FITLM_CHECK(
              lw.lora_a.data == static_cast<char*>(first.lora_a.data) + k * first.lora_a.bytes() &&
                  lw.dlora_a.data ==
                      static_cast<char*>(first.dlora_a.data) + k * first.dlora_a.bytes(),
              "model", "LoRA group {}: A matrices not adjacent", g.name);
        }
      }
  }
}

void Transformer::Impl::prepare_layer(int l, int next) {
  if (!shard_layer_next_.empty())
    fetch_offloaded_layer(l, next);
  else if (!shard_layer_.empty())
    gather_layer(l);
  if (!base4_work_.empty())
    be_.dequantize4_many(base4_work_[static_cast<size_t>(l)]);  // one launch on CUDA
  cast_lora(l);
}

void Transformer::Impl::gather_layer(int l) {
  const Tensor& shard = m_.layer_shards_[static_cast<size_t>(l)];
  if (m_.layer_gather_) {
    m_.layer_gather_(shard, shard_layer_);
    return;
  }
  const int world = m_.shape_.layer_shard->world;
  if (world != 1)
    throw_internal_error("model",
                         "layer {} is sharded over {} ranks but no gather is set "
                         "(Transformer::set_layer_gather)",
                         l, world);
  be_.copy(shard, shard_layer_);  // one rank: its shard is the whole blob
}

void Transformer::Impl::fetch_offloaded_layer(int l, int next) {
  auto buffer = [&](int layer) { return layer % 2 ? shard_layer_next_ : shard_layer_; };
  auto start = [&](int layer) {
    // Queued after everything the compute stream holds so far, so after the last reads of the
    // buffer by the layer before (the one with the same parity).
    const size_t slot = static_cast<size_t>(layer % 2);
    fetch_copy_[slot] = be_.copy_async(m_.layer_shards_[static_cast<size_t>(layer)], buffer(layer));
    fetched_[slot] = layer;
  };
  if (fetched_[static_cast<size_t>(l % 2)] != l) start(l);
  // Layer l's copy is complete before its first op (not the copies queued after it: the next
  // layer's, activations on their way out).
  be_.wait_transfer(fetch_copy_[static_cast<size_t>(l % 2)]);
  if (layers_.contains(next) && next % 2 != l % 2 &&
      fetched_[static_cast<size_t>(next % 2)] != next)
    start(next);
}

void Transformer::Impl::cast_lora(int l) {
  if (lora_layer_.empty()) return;
  const Tensor& master = m_.flat_params_.front().master;  // f32, every layer's slice alike
  const int64_t n = lora_layer_.numel();
  const int64_t index = l - layers_.first;
  be_.copy(Tensor(static_cast<char*>(master.data) + index * n * dtype_size(master.dtype),
                  master.dtype, Shape{n}, master.device),
           lora_layer_);
}

Tensor Transformer::Impl::rows(const std::string& name, int64_t t) const {
  const Tensor buf = m_.arena_->get(name);
  const int64_t t_max = m_.shape_.max_tokens;
  if (buf.ndim() == 1)  // per-token statistics, possibly several per token
    return Tensor(buf.data, buf.dtype, Shape{buf.numel() / t_max * t}, buf.device);
  return buf.slice_rows(0, t);
}

Tensor Transformer::Impl::layer_input(int l, int64_t t, int slot) const {
  if (x_ring_[0].empty()) return rows(layer_input_name(l, slot < 0 ? slot_ : slot), t);
  return x_ring_[static_cast<size_t>(l % 2)].slice_rows(0, t);
}

Tensor Transformer::Impl::host_layer_input(int l, int64_t t) const {
  return m_.host_buffer(layer_input_name(l, slot_)).slice_rows(0, t);
}

Tensor Transformer::Impl::token_columns(const std::string& name, int64_t t) const {
  const Tensor buf = m_.arena_->get(name);
  return prefix(buf, Shape{buf.dim(0), t});
}

LayerActivations Transformer::Impl::activations(int layer, int64_t t) const {
  const int l = saved_[static_cast<size_t>(layer)] ? layer : -1;
  auto get = [&](const char* n) { return rows(activation_buffer_name(l, n, slot_), t); };
  LayerActivations a;
  a.xn1 = get("xn1"), a.rstd1 = get("rstd1"), a.q = get("q"), a.k = get("k"), a.v = get("v");
  a.att = get("att"), a.x_mid = get("x_mid"), a.xn2 = get("xn2"), a.rstd2 = get("rstd2");
  if (c_.sparse_layer(layer)) {
    const int64_t e = c_.moe.num_experts, k = c_.moe.experts_per_token;
    auto matrix = [&](const char* n, int64_t cols) {
      const Tensor v = get(n);
      return v.reshape(Shape{t, cols});
    };
    a.router_logits = get("router_logits");
    a.router_probs = matrix("router_probs", e);
    a.route_weights = matrix("route_weights", k);
    a.route_experts = matrix("route_experts", k);
    a.row_token = get("row_token"), a.row_pair = get("row_pair");
    a.row_of = matrix("row_of", k), a.row_weight = get("row_weight");
    auto rows_of = [&](const char* n) {
      const Tensor buf = m_.arena_->get(activation_buffer_name(l, n, slot_));
      return buf.slice_rows(0, t * k);
    };
    a.moe_x = rows_of("moe_x"), a.moe_gate = rows_of("moe_gate"), a.moe_up = rows_of("moe_up");
    a.moe_act = rows_of("moe_act"), a.moe_y = rows_of("moe_y");
    for (MoeTarget m :
         m_.mode_ == TrainMode::kLora ? m_.lora_.moe_targets : std::vector<MoeTarget>{}) {
      const std::string n = moe_lora_u_name(m);
      const Tensor buf = m_.arena_->get(activation_buffer_name(l, n, slot_));
      (m == MoeTarget::kRouter          ? a.moe_lora_router_u
       : m == MoeTarget::kExpertsGateUp ? a.moe_lora_gate_up_u
                                        : a.moe_lora_down_u) =
          buf.slice_rows(0, m == MoeTarget::kRouter ? t : t * k);
    }
  } else {
    a.gate = get("gate"), a.up = get("up"), a.act = get("act");
  }
  const Tensor lse = m_.arena_->get(activation_buffer_name(l, "lse", slot_));
  a.lse = Tensor(lse.data, DType::kF32, Shape{c_.num_heads, t}, lse.device);
  if (c_.qk_norm) {
    a.q_raw = get("q_raw"), a.k_raw = get("k_raw"), a.rstd_q = get("rstd_q"),
    a.rstd_k = get("rstd_k");
  }
  for (size_t g = 0; g < lora_groups_.size(); ++g)
    a.lora_u[g] =
        token_columns(activation_buffer_name(l, "lora_u." + lora_groups_[g].name, slot_), t);
  return a;
}

uint64_t Transformer::Impl::dropout_seed(int layer, Projection p) const {
  return m_.dropout_seed_ * 0x100000001b3ull + static_cast<uint64_t>(layer) * 8 +
         static_cast<uint64_t>(p);
}

std::vector<Transformer::Impl::LoraRun> Transformer::Impl::lora_runs(
    int l, const LayerActivations& a, std::initializer_list<ProjectionIO> io) const {
  const LayerWeights& L = m_.layers_[l];
  const int64_t r = m_.lora_.r;
  std::vector<LoraRun> runs;
  size_t members = 0;
  for (size_t g = 0; g < lora_groups_.size(); ++g) {
    const std::vector<Projection>& group = lora_groups_[g].members;
    const auto* first = std::find_if(io.begin(), io.end(),
                                     [&](const ProjectionIO& o) { return o.p == group.front(); });
    if (first == io.end()) continue;
    // A group's members read one input: the caller lists them together, in order.
    FITLM_CHECK(static_cast<size_t>(io.end() - first) >= group.size() &&
                    std::equal(group.begin(), group.end(), first,
                               [](Projection p, const ProjectionIO& o) { return p == o.p; }),
                "model", "LoRA group {} needs all its members", lora_groups_[g].name);
    members += group.size();
    const size_t n = batch_lora_ ? group.size() : 1;
    for (size_t i = 0; i < group.size(); i += n) {
      const LinearWeights& lw = L[group[i]];  // the constructor checked the As are adjacent
      const int64_t rows = static_cast<int64_t>(n) * r;
      runs.push_back({stacked(lw.lora_a, rows), stacked(lw.dlora_a, rows),
                      row_block(a.lora_u[g], i / n, rows),
                      std::vector<ProjectionIO>(first + i, first + i + n)});
    }
  }
  FITLM_CHECK(members == static_cast<size_t>(std::count_if(
                             io.begin(), io.end(),
                             [&](const ProjectionIO& o) { return !L[o.p].lora_a.empty(); })),
              "model", "a LoRA target outside every group");
  return runs;
}

Tensor Transformer::Impl::lora_input(int l, const LoraRun& r, const Tensor& x, int64_t t) {
  if (m_.lora_.dropout <= 0.0f) return x;
  // With dropout every run is one member (batch_lora_ is false): one mask per projection.
  FITLM_CHECK(r.io.size() == 1, "model", "LoRA dropout on a batched group");
  Tensor xin = prefix(m_.arena_->get("scratch.drop_x"), Shape{t, x.cols()});
  be_.dropout(x, xin, m_.lora_.dropout, dropout_seed(l, r.io.front().p));
  return xin;
}

// For each projection p of io: y = x Wᵀ (+ b) (+ s·(x Aᵀ) Bᵀ), or y += that with accumulate_y
// (the residual add). An empty y skips the base GEMM and the B product: only the LoRA
// intermediate is computed. The intermediates are kept transposed, uᵀ = A·xᵀ, so that those of
// a group come from one GEMM over its stacked As and read x once.
void Transformer::Impl::linear_forward(int l, const LayerActivations& a, const Tensor& x,
                                       std::initializer_list<ProjectionIO> io, int64_t t,
                                       bool accumulate_y) {
  for (const ProjectionIO& o : io) {
    if (o.y.empty()) continue;
    const LinearWeights& lw = m_.layers_[l][o.p];
    be_.gemm(x, false, lw.w, true, o.y, 1.0f, accumulate_y ? 1.0f : 0.0f);  // y (+)= x Wᵀ
    if (!lw.b.empty()) be_.add_bias(o.y, lw.b);
  }
  const float s = m_.lora_.scale();
  const int64_t r = m_.lora_.r;
  for (const LoraRun& run : lora_runs(l, a, io)) {
    be_.gemm(run.a, false, lora_input(l, run, x, t), true, run.u);  // uᵀ = A drop(x)ᵀ
    for (size_t i = 0; i < run.io.size(); ++i) {
      const ProjectionIO& o = run.io[i];
      if (o.y.empty()) continue;
      const Tensor u = row_block(run.u, i, r);
      be_.gemm(u, true, m_.layers_[l][o.p].lora_b, true, o.y, s, 1.0f);  // y += s·u Bᵀ
    }
  }
}

// io holds each projection's dy. Aliasing: dx may be x itself (the down projection writes dact
// over act, which nothing reads afterwards): every read of x — dW, the LoRA dA and the dropout
// mask applied to x — comes before the first write of dx. No dy may alias dx. The LoRA
// gradients duᵀ overwrite the intermediates uᵀ, once dB has read them.
void Transformer::Impl::linear_backward(int l, const LayerActivations& a, const Tensor& x,
                                        std::initializer_list<ProjectionIO> io, Tensor dx,
                                        bool accumulate_dx, int64_t t) {
  const float s = m_.lora_.scale();
  const int64_t r = m_.lora_.r;
  const std::vector<LoraRun> runs = lora_runs(l, a, io);
  // Everything that reads x.
  for (const ProjectionIO& o : io) {
    const LinearWeights& lw = m_.layers_[l][o.p];
    if (!lw.dw.empty()) be_.gemm(o.y, true, x, false, lw.dw, 1.0f, 1.0f);  // dW += dyᵀ x
    if (!lw.db.empty()) be_.bias_backward(o.y, lw.db);
  }
  for (const LoraRun& run : runs) {
    for (size_t i = 0; i < run.io.size(); ++i) {
      const ProjectionIO& o = run.io[i];
      const LinearWeights& lw = m_.layers_[l][o.p];
      const Tensor u = row_block(run.u, i, r);
      be_.gemm(o.y, true, u, true, lw.dlora_b, s, 1.0f);  // dB += s·dyᵀ u
      be_.gemm(lw.lora_b, true, o.y, true, u, s, 0.0f);   // duᵀ = s·Bᵀ dyᵀ, over uᵀ
    }
    be_.gemm(run.u, false, lora_input(l, run, x, t), false, run.da, 1.0f, 1.0f);  // dA += duᵀ x
  }
  // Then dx.
  for (const ProjectionIO& o : io) {
    be_.gemm(o.y, false, m_.layers_[l][o.p].w, false, dx, 1.0f,
             accumulate_dx ? 1.0f : 0.0f);  // dx (+)= dy W
    accumulate_dx = true;
  }
  for (const LoraRun& run : runs) {
    if (m_.lora_.dropout > 0.0f) {
      Tensor dxin = prefix(m_.arena_->get("scratch.drop_dx"), Shape{t, x.cols()});
      be_.gemm(run.u, true, run.a, false, dxin);
      be_.dropout(dxin, dxin, m_.lora_.dropout, dropout_seed(l, run.io.front().p));
      be_.axpy(1.0f, dxin, dx);
    } else {
      be_.gemm(run.u, true, run.a, false, dx, 1.0f, 1.0f);  // dx += (duᵀ)ᵀ A
    }
  }
}

void Transformer::Impl::layer_forward(int l, const LayerActivations& a, const Tensor& x, Tensor y,
                                      int64_t t) {
  const LayerWeights& L = m_.layers_[l];
  const float eps = static_cast<float>(c_.rms_norm_eps);
  const Tensor positions = rows("input.positions", t);
  const Tensor inv_freq = m_.arena_->get("input.inv_freq");
  using P = Projection;

  be_.rmsnorm_forward(x, L.input_norm, eps, a.xn1, a.rstd1);
  linear_forward(
      l, a, a.xn1,
      {{P::kQ, c_.qk_norm ? a.q_raw : a.q}, {P::kK, c_.qk_norm ? a.k_raw : a.k}, {P::kV, a.v}}, t);
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
  linear_forward(l, a, a.att, {{P::kO, a.x_mid}}, t, /*accumulate_y=*/true);
  be_.rmsnorm_forward(a.x_mid, L.post_norm, eps, a.xn2, a.rstd2);
  if (c_.sparse_layer(l)) {
    if (!y.empty()) be_.copy(a.x_mid, y);
    moe_forward(l, a, y, t, moe_counts(l));
    return;
  }
  linear_forward(l, a, a.xn2, {{P::kGate, a.gate}, {P::kUp, a.up}}, t);
  be_.swiglu_forward(a.gate, a.up, a.act);
  // On recompute (y empty) the layer output is not needed, only the down projection's LoRA
  // intermediate for backward: an empty output skips the base GEMM.
  if (!y.empty()) be_.copy(a.x_mid, y);
  linear_forward(l, a, a.act, {{P::kDown, y}}, t, /*accumulate_y=*/true);
}

void Transformer::Impl::layer_backward(int l, const LayerActivations& a, const Tensor& x,
                                       Tensor dres, int64_t t) {
  const LayerWeights& L = m_.layers_[l];
  const Tensor positions = rows("input.positions", t);
  const Tensor inv_freq = m_.arena_->get("input.inv_freq");
  using P = Projection;
  Tensor dtmp = rows("scratch.dtmp", t), dxn = rows("scratch.dxn", t);

  // MLP block: dres holds ∂L/∂(layer output). Gradients overwrite the activations they belong
  // to once nothing reads those any more: dact over act (linear_backward reads x before writing
  // dx), dgate over gate and dup over up (swiglu_backward runs in place, backend.h), and the
  // LoRA duᵀ over uᵀ (linear_backward).
  enter_phase(Phase::kMlpBackward);
  if (c_.sparse_layer(l)) {
    moe_backward(l, a, dres, dxn, t);
  } else {
    Tensor dact = a.act, dgate = a.gate, dup = a.up;
    linear_backward(l, a, a.act, {{P::kDown, dres}}, dact, false, t);
    be_.swiglu_backward(dact, a.gate, a.up, dgate, dup);
    linear_backward(l, a, a.xn2, {{P::kGate, dgate}, {P::kUp, dup}}, dxn, false, t);
  }
  be_.rmsnorm_backward(dxn, a.x_mid, L.post_norm, a.rstd2, dtmp, L.d_post_norm);
  be_.add(dres, dtmp, dres);  // now ∂L/∂x_mid

  // Attention block.
  enter_phase(Phase::kAttnBackward);
  Tensor datt = rows("scratch.datt", t), dq = rows("scratch.dq", t), dk = rows("scratch.dk", t),
         dv = rows("scratch.dv", t);
  linear_backward(l, a, a.att, {{P::kO, dres}}, datt, false, t);
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
  linear_backward(l, a, a.xn1, {{P::kQ, dq}, {P::kK, dk}, {P::kV, dv}}, dxn, false, t);
  be_.rmsnorm_backward(dxn, x, L.input_norm, a.rstd1, dtmp, L.d_input_norm);
  be_.add(dres, dtmp, dres);  // now ∂L/∂x (the layer input)
}

}  // namespace fitlm
