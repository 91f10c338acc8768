// Transformer: binding the arena, LoRA init, and the batch → device inputs step. The layer
// forward/backward live in transformer_layers.cpp, the loss head in transformer_loss.cpp.
#include "fitlm/model/transformer.h"

#include <cmath>
#include <cstring>
#include <map>
#include <random>
#include <tuple>

#include "fitlm/core/error.h"
#include "fitlm/core/host_memory.h"
#include "fitlm/model/transformer_impl.h"

namespace fitlm {
namespace {

// A trainable tensor's buffers as plan_transformer's add_trainable names them.
// `state`: where the master and moments are (the arena's, or with offload_optimizer the host
// block's buffers), by name; empty when there is none.
using StateLookup = std::function<Tensor(const std::string&)>;

Param param_in_arena(const Arena& a, const StateLookup& state, const std::string& name,
                     const RunShape& shape, bool decay) {
  Param p;
  p.name = name;
  // f32 without a sharded or offloaded optimizer: the value is the master.
  p.master = state(name + ".master");
  if (p.master.empty()) p.master = a.get(name);
  // Without a compute-dtype copy (LoRA cast per layer) the master is the value.
  p.value = a.contains(name) ? a.get(name) : p.master;
  p.shard = {0, p.value.numel()};
  if (shape.optimizer_shard && shape.optimizer_shard->world > 1)
    p.shard = shard_block(p.value.numel(), *shape.optimizer_shard);
  p.grad = a.get(name + ".grad");
  p.adam_m = state(name + ".adam_m");
  p.adam_v = state(name + ".adam_v");
  p.decay = decay;
  return p;
}

// The weights a 4-bit base keeps packed: the decoder's linears and a sparse layer's experts.
bool packed_kind(WeightKind k) {
  return k == WeightKind::kLinear || k == WeightKind::kExperts;
}

// A packed weight's buffers as plan_transformer's add_quant4_weight names them.
Quant4Tensor quant4_in_arena(const Arena& a, const std::string& name, const Shape& shape,
                             const Base4Layout& layout) {
  Quant4Tensor q;
  q.type = layout.type;
  q.blocksize = layout.blocksize;
  q.shape = shape;
  q.packed = a.get(name);
  q.absmax = a.get(name + ".absmax");
  if (layout.double_quant) {
    q.nested_absmax = a.get(name + ".nested_absmax");
    q.nested_map = a.get(name + ".nested_map");
  }
  return q;
}

}  // namespace

Transformer::Transformer(Backend& backend, ModelConfig config, TrainMode mode, LoraConfig lora,
                         RunShape shape)
    : backend_(backend),
      config_(std::move(config)),
      mode_(mode),
      lora_(mode == TrainMode::kLora ? lora_for_model(config_, std::move(lora)) : std::move(lora)),
      shape_(shape) {
  if (shape_.max_tokens <= 0) throw_input_error("model", "max_tokens must be positive");
  if (mode_ == TrainMode::kLora &&
      (lora_.r <= 0 || (lora_.targets.empty() && lora_.moe_targets.empty())))
    throw_input_error("lora", "LoRA needs r > 0 and at least one target module");
  if (mode_ != TrainMode::kFrozen && config_.moe.aux_loss && shape_.stage &&
      stage_layers(config_, shape_).size() < config_.num_layers)
    throw_input_error("model",
                      "config.json sets output_router_logits: true, but the load-balancing loss "
                      "over pipeline stages (each holding some layers' routers) is not built yet; "
                      "set it to false, or use another strategy");
  if (mode_ != TrainMode::kFrozen && config_.moe.router_jitter > 0.0)
    throw_input_error("model",
                      "config.json sets router_jitter_noise {}, which is not built yet for "
                      "training; set it to 0",
                      config_.moe.router_jitter);
  const DType compute = backend_.compute_dtype();
  AllocationPlan plan = plan_transformer(config_, mode_, lora_, shape_, compute);
  host_plan_ = plan_transformer_host(config_, mode_, lora_, shape_, compute);
  // Mapping the host buffers costs device memory too (Backend::host_mapping_bytes).
  const size_t mapping = backend_.host_mapping_bytes(host_plan_.total_bytes());
  if (shape_.max_memory && plan.total_bytes() + mapping > shape_.max_memory)
    throw Error(
        "plan",
        fmt::format("the plan needs {}{} but the memory cap is {}:\n{}",
                    format_bytes(plan.total_bytes()),
                    mapping ? fmt::format(" + {} to map host memory", format_bytes(mapping)) : "",
                    format_bytes(shape_.max_memory), plan.summary()),
        ExitCode::kNoFit);
  const std::optional<size_t> available = host_memory_available();
  if (available && host_plan_.total_bytes() > *available)
    throw Error("plan",
                fmt::format("the plan keeps {} in host memory but this machine has {} "
                            "available:\n{}",
                            format_bytes(host_plan_.total_bytes()), format_bytes(*available),
                            host_plan_.summary()),
                ExitCode::kNoFit);
  arena_ = std::make_unique<Arena>(backend_, std::move(plan));
  const Arena& a = *arena_;
  if (host_plan_.total_bytes() > 0)
    host_block_ = backend_.allocate_host_mapped(host_plan_.total_bytes());
  auto bind_param = [&](const std::string& name, bool decay) {
    params_.push_back(param_in_arena(a, optimizer_state(), name, shape_, decay));
    return params_.back().grad;
  };
  const bool full = mode_ == TrainMode::kFull;

  layers_.resize(config_.num_layers);
  const Tensor base4_layer = a.contains(kBase4Layer) ? a.get(kBase4Layer) : Tensor{};
  const Base4LayerLayout base4_layout = base4_layer_layout(config_);
  // A 4-bit base: layer l's projection p (a sparse layer's experts) is dequantized into its
  // slot of base4.layer.
  auto base4_at = [&](int64_t offset, const Shape& s) {
    return Tensor(static_cast<char*>(base4_layer.data) + offset * dtype_size(compute), compute, s,
                  base4_layer.device);
  };
  auto base4_view = [&](Projection p, const Shape& s) {
    return base4_at(base4_layout.offset[static_cast<size_t>(p)], s);
  };
  auto is_gate_up = [](const std::string& n) { return n.ends_with("gate_up_proj"); };
  const bool blobs = layer_blob_spec(shape_).has_value();
  const LayerRange range = stage_layers(config_, shape_);
  for (const WeightSpec& w : weight_specs(config_)) {
    if (!stage_keeps(config_, shape_, w)) continue;
    // ZeRO-3, offloaded layers: bound below to the blob the layer runs from.
    if (blobs && (w.kind == WeightKind::kLinear || w.kind == WeightKind::kBias)) continue;
    if (w.kind == WeightKind::kEmbed && embedding_on_host(config_, mode_, shape_)) {
      embed_ = host_buffer(w.name);
      continue;
    }
    if (shape_.base4 && w.kind == WeightKind::kLinear) {
      LinearWeights& lw = layers_[w.layer][w.projection];
      lw.w4 = quant4_in_arena(a, w.name, w.shape, *shape_.base4);
      lw.w = base4_view(w.projection, w.shape);
      continue;
    }
    if (shape_.base4 && w.kind == WeightKind::kExperts) {
      MoeWeights& m = layers_[w.layer].moe;
      const bool gate_up = is_gate_up(w.name);
      (gate_up ? m.gate_up4 : m.down4) = quant4_in_arena(a, w.name, w.shape, *shape_.base4);
      (gate_up ? m.gate_up : m.down) =
          base4_at(gate_up ? base4_layout.gate_up : base4_layout.down, w.shape);
      continue;
    }
    const Tensor t = a.get(w.name);
    const bool decay = w.kind != WeightKind::kNorm && w.kind != WeightKind::kBias;
    const Tensor g = full ? bind_param(w.name, decay) : Tensor{};
    const std::string& n = w.name;
    auto ends_with = [&](const char* s) {
      return n.size() >= std::strlen(s) &&
             n.compare(n.size() - std::strlen(s), std::string::npos, s) == 0;
    };
    switch (w.kind) {
      case WeightKind::kEmbed: embed_ = t, d_embed_ = g; break;
      case WeightKind::kLmHead: lm_head_ = t, d_lm_head_ = g; break;
      case WeightKind::kRouter:
        layers_[w.layer].moe.router = t, layers_[w.layer].moe.drouter = g;
        break;
      case WeightKind::kExperts: {
        MoeWeights& m = layers_[w.layer].moe;
        if (is_gate_up(n))
          m.gate_up = t, m.dgate_up = g;
        else
          m.down = t, m.ddown = g;
        break;
      }
      case WeightKind::kLinear:
        layers_[w.layer][w.projection].w = t;
        layers_[w.layer][w.projection].dw = g;
        break;
      case WeightKind::kBias:
        layers_[w.layer][w.projection].b = t;
        layers_[w.layer][w.projection].db = g;
        break;
      case WeightKind::kNorm: {
        if (w.layer < 0) {
          final_norm_ = t, d_final_norm_ = g;
          break;
        }
        LayerWeights& L = layers_[w.layer];
        if (ends_with("input_layernorm.weight"))
          L.input_norm = t, L.d_input_norm = g;
        else if (ends_with("post_attention_layernorm.weight"))
          L.post_norm = t, L.d_post_norm = g;
        else if (ends_with("q_norm.weight"))
          L.q_norm = t, L.d_q_norm = g;
        else
          L.k_norm = t, L.d_k_norm = g;
        break;
      }
    }
  }
  if (config_.tie_word_embeddings && stage_has_head(config_, shape_))
    lm_head_ = embed_, d_lm_head_ = d_embed_;
  if (blobs) {
    // Every layer's views of its blob's tensors point into the device buffer it runs from (the
    // same layout for every layer), which prepare_layer fills before the layer runs: the one
    // gathered blob, or with offloaded layers one of two buffers by the layer's parity, so that
    // consecutive layers (forward and backward alike) use different ones.
    const LayerShardLayout blob = layer_shard_layout(config_, shape_, compute);
    const std::vector<uint8_t> zeros(blob.shard_bytes, 0);   // the padding between tensors
    layer_shards_.resize(static_cast<size_t>(range.first));  // no shards of other stages' layers
    for (int l = range.first; l < range.end; ++l) {
      const bool odd = shape_.offload_layers && l % 2 == 1;
      const Tensor full = a.get(odd ? kShardLayerNext : kShardLayer);
      const std::string name = layer_shard_name(l);
      layer_shards_.push_back(shape_.offload_layers ? host_buffer(name) : a.get(name));
      backend_.upload(layer_shards_.back(), zeros.data(), DType::kU8);
      for (const LayerBlobEntry& e : blob.entries) {
        const Tensor v(static_cast<char*>(full.data) + e.offset, e.dtype, e.shape, full.device);
        LinearWeights& lw = layers_[static_cast<size_t>(l)][e.projection];
        switch (e.part) {
          case BlobPart::kWeight: lw.w = v; break;
          case BlobPart::kBias: lw.b = v; break;
          case BlobPart::kPacked: lw.w4.packed = v; break;
          case BlobPart::kAbsmax: lw.w4.absmax = v; break;
          case BlobPart::kNestedAbsmax: lw.w4.nested_absmax = v; break;
          case BlobPart::kNestedMap: lw.w4.nested_map = v; break;
        }
      }
      if (!shape_.base4) continue;
      for (Projection p : kAllProjections) {
        const auto [rows, cols] = projection_shape(config_, p);
        LinearWeights& lw = layers_[static_cast<size_t>(l)][p];
        lw.w4.type = shape_.base4->type;
        lw.w4.blocksize = shape_.base4->blocksize;
        lw.w4.shape = Shape{rows, cols};
        lw.w = base4_view(p, lw.w4.shape);
      }
    }
  }
  if (mode_ == TrainMode::kLora) bind_lora();
  impl_ = std::make_unique<Impl>(*this);
  const std::vector<float> inv = config_.rope_inv_freq();
  backend_.upload(a.get("input.inv_freq"), inv.data(), DType::kF32);
  if (mode_ == TrainMode::kLora) init_lora(0);
  zero_grads();
}

Transformer::~Transformer() {
  if (host_block_.host) backend_.deallocate_host_mapped(host_block_);
}

std::function<Tensor(const std::string&)> Transformer::optimizer_state() const {
  return [this](const std::string& name) {
    if (shape_.offload_optimizer) return host_plan_.contains(name) ? host_buffer(name) : Tensor{};
    return arena_->contains(name) ? arena_->get(name) : Tensor{};
  };
}

Tensor Transformer::host_buffer(const std::string& name) const {
  const BufferSpec& b = host_plan_.at(name);
  return Tensor(static_cast<char*>(host_block_.device) + b.offset, b.dtype, b.shape,
                backend_.device());
}

void Transformer::bind_lora() {
  const Param flat = param_in_arena(*arena_, optimizer_state(), kLoraFlat, shape_, /*decay=*/true);
  // Padding must hold zeros (the optimizer and the norm run over it).
  for (const Tensor& t : {flat.value, flat.master, flat.grad, flat.adam_m, flat.adam_v})
    if (!t.empty()) backend_.fill(t, 0.0f);
  flat_params_ = {flat};

  auto view = [](const Tensor& buf, const LoraSlot& s) {
    if (buf.empty()) return Tensor{};
    return Tensor(static_cast<char*>(buf.data) + s.offset * dtype_size(buf.dtype), buf.dtype,
                  s.shape, buf.device);
  };
  const LayerRange range = stage_layers(config_, shape_);
  const LoraLayout layout = lora_layout(config_, lora_, range);
  // Cast per layer: every layer's views of its adapters point into the one layer-sized buffer,
  // at the slot's offset within its layer (Impl::cast_lora fills it before the layer runs).
  const Tensor layer_buf = arena_->contains(kLoraLayer) ? arena_->get(kLoraLayer) : Tensor{};
  const int64_t per_layer = layout.total / range.size();
  // params() lists the adapters in (layer, target, A then B) order (init_lora draws in it),
  // whatever order the flat layout gives them (a group's As back to back, lora_layout); a
  // layer's MoE targets after its projections.
  std::map<std::string, const LoraSlot*> slot_of;
  for (const LoraSlot& s : layout.slots) slot_of[s.name] = &s;
  // A sparse layer has no dense MLP projection to adapt, a dense one no router or experts
  // (lora_layout).
  auto adapted = [&](int l, Projection p) {
    return !(config_.sparse_layer(l) && projection_in_mlp(p));
  };
  size_t expected = 0;
  for (int l = range.first; l < range.end; ++l) {
    for (Projection p : lora_.targets) expected += adapted(l, p) ? 2 : 0;
    if (config_.sparse_layer(l)) expected += 2 * lora_.moe_targets.size();
  }
  FITLM_CHECK(layout.slots.size() == expected && slot_of.size() == expected, "lora",
              "{} slots for {} adapter tensors", layout.slots.size(), expected);
  // Binds the slot named `name` as the next param; returns its value (the per-layer cast's view
  // when adapters are cast per layer) and its gradient.
  auto bind = [&](int l, const std::string& name, int64_t peft_experts) {
    const auto it = slot_of.find(name);
    FITLM_CHECK(it != slot_of.end(), "lora", "no slot for {}", name);
    const LoraSlot& s = *it->second;
    Param q;
    q.name = s.name;
    q.value = view(flat.value, s), q.grad = view(flat.grad, s);
    q.shard = {0, q.value.numel()};
    q.peft_experts = peft_experts;
    if (!flat.master_is_shard()) {  // a sharded master has no per-tensor views
      q.master = view(flat.master, s);
      q.adam_m = view(flat.adam_m, s), q.adam_v = view(flat.adam_v, s);
    }
    params_.push_back(q);
    Tensor value = q.value;
    if (!layer_buf.empty()) {
      LoraSlot in_layer = s;
      in_layer.offset -= (l - range.first) * per_layer;
      FITLM_CHECK(in_layer.offset >= 0 && in_layer.offset + s.shape.numel() <= per_layer, "lora",
                  "slot {} outside its layer", s.name);
      value = view(layer_buf, in_layer);
    }
    return std::pair<Tensor, Tensor>{value, q.grad};
  };
  for (int l = range.first; l < range.end; ++l) {
    for (Projection p : lora_.targets)
      for (bool is_b : {false, true}) {
        if (!adapted(l, p)) continue;
        LinearWeights& lw = layers_[l][p];
        std::tie(is_b ? lw.lora_b : lw.lora_a, is_b ? lw.dlora_b : lw.dlora_a) =
            bind(l, peft_tensor_name(l, p, is_b), 0);
      }
    if (!config_.sparse_layer(l)) continue;
    MoeWeights& mw = layers_[l].moe;
    for (MoeTarget m : lora_.moe_targets) {
      const int64_t experts = moe_lora_shape(config_, m, lora_.r).experts;
      Tensor *a = &mw.lora_router_a, *b = &mw.lora_router_b;
      Tensor *da = &mw.dlora_router_a, *db = &mw.dlora_router_b;
      if (m == MoeTarget::kExpertsGateUp)
        a = &mw.lora_gate_up_a, b = &mw.lora_gate_up_b, da = &mw.dlora_gate_up_a,
        db = &mw.dlora_gate_up_b;
      if (m == MoeTarget::kExpertsDown)
        a = &mw.lora_down_a, b = &mw.lora_down_b, da = &mw.dlora_down_a, db = &mw.dlora_down_b;
      std::tie(*a, *da) = bind(l, peft_moe_tensor_name(l, m, false, lora_), 0);
      std::tie(*b, *db) = bind(l, peft_moe_tensor_name(l, m, true, lora_), experts);
    }
  }
}

std::vector<std::pair<std::string, Tensor>> Transformer::named_weights() {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const WeightSpec& w : weight_specs(config_))
    if (arena_->contains(w.name) && !(shape_.base4 && packed_kind(w.kind)))
      out.emplace_back(w.name, arena_->get(w.name));
  return out;
}

std::vector<std::pair<std::string, Tensor>> Transformer::host_weights() {
  if (!embedding_on_host(config_, mode_, shape_)) return {};
  const std::string name = "model.embed_tokens.weight";
  const BufferSpec& b = host_plan_.at(name);
  return {{name, Tensor(static_cast<char*>(host_block_.host) + b.offset, b.dtype, b.shape)}};
}

std::vector<std::pair<std::string, Quant4Tensor*>> Transformer::quantized_weights() {
  if (layer_blob_spec(shape_)) return {};
  return packed_weights();
}

std::vector<std::pair<std::string, Quant4Tensor*>> Transformer::sharded_quantized_weights() {
  if (!layer_blob_spec(shape_)) return {};
  return packed_weights();
}

std::vector<std::pair<std::string, Quant4Tensor*>> Transformer::packed_weights() {
  std::vector<std::pair<std::string, Quant4Tensor*>> out;
  if (!shape_.base4) return out;
  for (const WeightSpec& w : weight_specs(config_)) {
    if (!packed_kind(w.kind) || !stage_keeps(config_, shape_, w)) continue;
    LayerWeights& L = layers_[w.layer];
    if (w.kind == WeightKind::kLinear)
      out.emplace_back(w.name, &L[w.projection].w4);
    else
      out.emplace_back(w.name, w.name.ends_with("gate_up_proj") ? &L.moe.gate_up4 : &L.moe.down4);
  }
  return out;
}

Tensor Transformer::layer_shard(int l) const {
  if (l < 0 || static_cast<size_t>(l) >= layer_shards_.size())
    throw_internal_error("model", "layer_shard({}) of a model with {} sharded layers", l,
                         layer_shards_.size());
  return layer_shards_[static_cast<size_t>(l)];
}

void Transformer::prepare_layer(int l) {
  if (l < 0 || l >= config_.num_layers)
    throw_internal_error("model", "prepare_layer({}) of a {}-layer model", l, config_.num_layers);
  impl_->prepare_layer(l, l + 1);  // callers run the layers in order
}

void Transformer::init_lora(uint64_t seed) {
  std::mt19937_64 rng(seed);
  // Params are bound in (layer, target, A then B) order; the host values go to the f32 master
  // and the compute-dtype value alike, so a bf16 value is the rounding of the f32 master. Every
  // layer's draws are made, a pipeline stage's kept, so each stage starts from the values the
  // whole model would.
  const LayerRange range = stage_layers(config_, shape_);
  // PEFT inits a parameter target's A (the router's [r, H], an expert target's [r·E, in]) as it
  // does a Linear's: Kaiming-uniform over its fan-in, U(−1/√in, 1/√in); B zeros.
  size_t index = 0;
  auto init_pair = [&](int l, const std::string& a_name, int64_t rows, int64_t in) {
    const float bound = 1.0f / std::sqrt(static_cast<float>(in));
    std::uniform_real_distribution<float> u(-bound, bound);
    std::vector<float> host(static_cast<size_t>(rows * in));
    for (auto& v : host) v = u(rng);
    if (!range.contains(l)) return;
    Param& a = params_[index++];
    Param& b = params_[index++];
    FITLM_CHECK(a.name == a_name && a.value.numel() == rows * in, "lora", "param order {}", a.name);
    backend_.upload(a.full_master(), host.data(), DType::kF32);
    backend_.fill(b.full_master(), 0.0f);
    if (a.full_master().data != a.value.data) {
      backend_.copy(a.full_master(), a.value);
      backend_.copy(b.full_master(), b.value);
    }
  };
  for (int l = 0; l < config_.num_layers; ++l) {
    for (Projection p : lora_.targets) {
      if (config_.sparse_layer(l) && projection_in_mlp(p)) continue;  // no such module there
      init_pair(l, peft_tensor_name(l, p, false), lora_.r, projection_shape(config_, p).second);
    }
    if (!config_.sparse_layer(l)) continue;
    for (MoeTarget m : lora_.moe_targets) {
      const Shape a = moe_lora_shape(config_, m, lora_.r).a;
      init_pair(l, peft_moe_tensor_name(l, m, false, lora_), a.dims[0], a.dims[1]);
    }
  }
  commit_staged_masters();
}

void Transformer::commit_staged_masters() {
  bool staged = false;
  for (Param& p : optimizer_params()) {
    if (!p.master_is_shard()) continue;
    staged = true;
    if (p.shard.size > 0) backend_.copy(p.grad.flat_range(p.shard.offset, p.shard.end()), p.master);
  }
  if (staged) zero_grads();
}

void Transformer::zero_grads() {
  for (Param& p : optimizer_params()) backend_.fill(p.grad, 0.0f);
}

LossResult Transformer::forward_loss(const HostBatch& batch) {
  if (!stage_has_head(config_, shape_))
    throw_internal_error("model", "the loss is the last pipeline stage's: use stage_forward");
  impl_->slot_ = 0;
  const int64_t t = impl_->upload_batch(batch);
  impl_->forward(t, /*keep_for_backward=*/false);
  const LossResult r = impl_->loss(t, 0.0f, /*backward=*/false);
  impl_->enter_phase(std::nullopt);
  return r;
}

LossResult Transformer::forward_backward(const HostBatch& batch, float grad_scale) {
  if (!stage_has_head(config_, shape_))
    throw_internal_error("model", "the loss is the last pipeline stage's: use stage_forward");
  impl_->slot_ = 0;
  if (mode_ == TrainMode::kFrozen)
    throw_internal_error("model", "forward_backward on a model built with TrainMode::kFrozen");
  const int64_t t = impl_->upload_batch(batch);
  impl_->forward(t, /*keep_for_backward=*/true);
  LossResult r = impl_->loss(t, grad_scale, /*backward=*/true);
  impl_->backward(t);
  impl_->enter_phase(std::nullopt);
  return r;
}

namespace {
const RunShape::Stage& stage_of(const RunShape& shape, const char* what) {
  if (!shape.stage)
    throw_internal_error("model", "{} on a model that is not a pipeline stage", what);
  return *shape.stage;
}
}  // namespace

Tensor Transformer::stage_input(int slot, int64_t tokens) {
  const RunShape::Stage& s = stage_of(shape_, "stage_input");
  if (slot < 0 || slot >= s.in_flight || tokens <= 0 || tokens > shape_.max_tokens)
    throw_internal_error("model", "stage_input: slot {} of {}, {} tokens of {}", slot, s.in_flight,
                         tokens, shape_.max_tokens);
  return impl_->layer_input(s.first_layer, tokens, slot);
}

Tensor Transformer::stage_output(int64_t tokens) {
  stage_of(shape_, "stage_output");
  if (stage_has_head(config_, shape_))
    throw_internal_error("model", "stage_output on the last stage (it computes the loss)");
  return impl_->rows(kStageOutput, tokens);
}

Tensor Transformer::stage_gradient(int64_t tokens) {
  stage_of(shape_, "stage_gradient");
  return impl_->rows("scratch.dres", tokens);
}

void Transformer::stage_forward(const HostBatch& batch, int slot, bool keep_for_backward) {
  const RunShape::Stage& s = stage_of(shape_, "stage_forward");
  if (stage_has_head(config_, shape_) || slot < 0 || slot >= s.in_flight)
    throw_internal_error("model", "stage_forward: slot {} of {} on {} stage", slot, s.in_flight,
                         stage_has_head(config_, shape_) ? "the last" : "a");
  impl_->slot_ = slot;
  const int64_t t = impl_->upload_batch(batch);
  impl_->forward(t, keep_for_backward);
  impl_->enter_phase(std::nullopt);
}

void Transformer::stage_backward(const HostBatch& batch, int slot) {
  const RunShape::Stage& s = stage_of(shape_, "stage_backward");
  if (mode_ == TrainMode::kFrozen || stage_has_head(config_, shape_) || slot < 0 ||
      slot >= s.in_flight)
    throw_internal_error("model", "stage_backward: slot {} of {} (frozen or last stage?)", slot,
                         s.in_flight);
  impl_->slot_ = slot;
  const int64_t t = impl_->upload_batch(batch);
  impl_->backward(t);
  impl_->enter_phase(std::nullopt);
}

std::vector<float> Transformer::logits(const HostBatch& batch) {
  if (!stage_has_head(config_, shape_))
    throw_internal_error("model", "the loss is the last pipeline stage's: use stage_forward");
  impl_->slot_ = 0;
  const int64_t t = impl_->upload_batch(batch);
  impl_->forward(t, false);
  std::vector<float> out = impl_->full_logits(t);
  impl_->enter_phase(std::nullopt);
  return out;
}

}  // namespace fitlm
