// The allocation plan of a Transformer: every buffer it will touch, named and sized up front.
#include <fmt/format.h>

#include <algorithm>
#include <optional>
#include <tuple>

#include "fitlm/core/error.h"
#include "fitlm/model/transformer.h"
#include "fitlm/model/transformer_buffers.h"

namespace fitlm {

std::vector<WeightSpec> weight_specs(const ModelConfig& c) {
  const int64_t h = c.hidden_size, i = c.intermediate_size;
  std::vector<WeightSpec> specs;
  specs.push_back({"model.embed_tokens.weight", Shape{c.vocab_size, h}, -1, WeightKind::kEmbed});
  for (int l = 0; l < c.num_layers; ++l) {
    const std::string p = fmt::format("model.layers.{}.", l);
    specs.push_back({p + "input_layernorm.weight", Shape{h}, l, WeightKind::kNorm});
    specs.push_back({p + "post_attention_layernorm.weight", Shape{h}, l, WeightKind::kNorm});
    if (c.qk_norm) {
      specs.push_back({p + "self_attn.q_norm.weight", Shape{c.head_dim}, l, WeightKind::kNorm});
      specs.push_back({p + "self_attn.k_norm.weight", Shape{c.head_dim}, l, WeightKind::kNorm});
    }
    const bool sparse = c.sparse_layer(l);
    if (sparse) {
      const int64_t e = c.moe.num_experts, ie = c.moe.expert_intermediate_size;
      specs.push_back({p + "mlp.gate.weight", Shape{e, h}, l, WeightKind::kRouter});
      specs.push_back(
          {p + "mlp.experts.gate_up_proj", Shape{e, 2 * ie, h}, l, WeightKind::kExperts});
      specs.push_back({p + "mlp.experts.down_proj", Shape{e, h, ie}, l, WeightKind::kExperts});
    }
    for (Projection pr : kAllProjections) {
      if (sparse && projection_in_mlp(pr)) continue;  // the experts replace the dense MLP
      const auto [out, in] = projection_shape(c, pr);
      const std::string base = p + projection_module(pr);
      specs.push_back({base + ".weight", Shape{out, in}, l, WeightKind::kLinear, pr});
      if (projection_has_bias(c, pr))
        specs.push_back({base + ".bias", Shape{out}, l, WeightKind::kBias, pr});
    }
  }
  specs.push_back({"model.norm.weight", Shape{h}, -1, WeightKind::kNorm});
  if (!c.tie_word_embeddings)
    specs.push_back({"lm_head.weight", Shape{c.vocab_size, h}, -1, WeightKind::kLmHead});
  (void)i;
  return specs;
}

bool projection_in_mlp(Projection p) {
  return p == Projection::kGate || p == Projection::kUp || p == Projection::kDown;
}

std::pair<int64_t, int64_t> projection_shape(const ModelConfig& c, Projection p) {
  const int64_t h = c.hidden_size, i = c.intermediate_size;
  switch (p) {
    case Projection::kQ: return {c.q_dim(), h};
    case Projection::kK:
    case Projection::kV: return {c.kv_dim(), h};
    case Projection::kO: return {h, c.q_dim()};
    case Projection::kGate:
    case Projection::kUp: return {i, h};
    case Projection::kDown: return {h, i};
  }
  return {0, 0};
}

MoeLoraShape moe_lora_shape(const ModelConfig& c, MoeTarget t, int r) {
  const int64_t e = c.moe.num_experts, ie = c.moe.expert_intermediate_size, h = c.hidden_size;
  switch (t) {
    case MoeTarget::kRouter: return {Shape{r, h}, Shape{e, r}, Shape{e, r}, 0, e};
    case MoeTarget::kExpertsGateUp:
      return {Shape{e * r, h}, Shape{e, 2 * ie, r}, Shape{2 * ie, r * e}, e, 2 * ie};
    case MoeTarget::kExpertsDown: return {Shape{e * r, ie}, Shape{e, h, r}, Shape{h, r * e}, e, h};
  }
  return {};
}

std::string moe_lora_u_name(MoeTarget t) {
  switch (t) {
    case MoeTarget::kRouter: return "moe_lora_u.router";
    case MoeTarget::kExpertsGateUp: return "moe_lora_u.gate_up";
    case MoeTarget::kExpertsDown: return "moe_lora_u.down";
  }
  return "?";
}

bool projection_has_bias(const ModelConfig& c, Projection p) {
  switch (p) {
    case Projection::kQ:
    case Projection::kK:
    case Projection::kV: return c.qkv_bias;
    case Projection::kO: return c.o_bias;
    default: return c.mlp_bias;
  }
}

Lifetime live_in(std::initializer_list<Phase> phases) {
  Lifetime l{0};
  for (Phase p : phases) l.phases |= Lifetime::of({static_cast<int>(p)}).phases;
  return l;
}

std::vector<std::string> phase_names() {
  return {"F", "L", "N", "R", "M", "A"};
}

namespace {
constexpr Phase F = Phase::kForward, L = Phase::kLoss, N = Phase::kNormBackward,
                R = Phase::kRecompute, M = Phase::kMlpBackward, A = Phase::kAttnBackward;
// The shared recompute set: written by the forward (F, or R when a layer is recomputed), then read
// by the MLP block's backward only, or by the attention block's too (M runs between R and A).
const Lifetime kReadInMlp = live_in({F, R, M});
const Lifetime kReadInAttn = live_in({F, R, M, A});

// One packed weight: its nibbles and absmax (core/quant4_tensor.h), with the nested absmax and
// its code map under double quantization.
void add_quant4_weight(AllocationPlan& plan, const std::string& name, const Shape& shape,
                       const Base4Layout& q) {
  const int64_t n = shape.numel();
  plan.add(name, "weights.4bit", Shape{quant4_packed_bytes(n)}, DType::kU8);
  plan.add(name + ".absmax", "weights.4bit", Shape{quant4_blocks(n, q.blocksize)},
           q.double_quant ? DType::kU8 : DType::kF32);
  if (!q.double_quant) return;
  plan.add(name + ".nested_absmax", "weights.4bit", Shape{quant4_nested_blocks(n, q.blocksize)},
           DType::kF32);
  plan.add(name + ".nested_map", "weights.4bit", Shape{256}, DType::kF32);
}
}  // namespace

Base4LayerLayout base4_layer_layout(const ModelConfig& c) {
  constexpr int64_t kAlign = 64;
  auto aligned = [](int64_t n) { return (n + kAlign - 1) / kAlign * kAlign; };
  Base4LayerLayout out;
  int64_t at = 0, mlp = 0;
  for (Projection p : kAllProjections) {   // q, k, v, o, then gate, up, down
    if (p == Projection::kGate) mlp = at;  // the attention's end: where the MLPs start
    const auto [rows, cols] = projection_shape(c, p);
    out.offset[static_cast<size_t>(p)] = at;
    at += aligned(rows * cols);
  }
  out.total = c.has_dense_layers() ? at : mlp;
  if (c.has_sparse_layers()) {
    const int64_t e = c.moe.num_experts, ie = c.moe.expert_intermediate_size, h = c.hidden_size;
    out.gate_up = mlp;
    out.down = mlp + aligned(e * 2 * ie * h);
    out.total = std::max(out.total, out.down + aligned(e * h * ie));
  }
  return out;
}

std::string layer_input_name(int layer, int slot) {
  return slot == 0 ? fmt::format("layers.{}.x_in", layer)
                   : fmt::format("layers.{}.x_in@{}", layer, slot);
}

LayerRange stage_layers(const ModelConfig& c, const RunShape& shape) {
  if (!shape.stage) return {0, c.num_layers};
  return {shape.stage->first_layer, shape.stage->end_layer};
}

bool stage_has_embedding(const RunShape& shape) {
  return !shape.stage || shape.stage->first_layer == 0;
}

bool stage_has_head(const ModelConfig& c, const RunShape& shape) {
  return !shape.stage || shape.stage->end_layer == c.num_layers;
}

int activation_slots(const RunShape& shape) {
  return shape.stage ? shape.stage->in_flight : 1;
}

bool stage_keeps(const ModelConfig& c, const RunShape& shape, const WeightSpec& w) {
  if (w.layer >= 0) return stage_layers(c, shape).contains(w.layer);
  switch (w.kind) {
    case WeightKind::kEmbed:
      return stage_has_embedding(shape) || (c.tie_word_embeddings && stage_has_head(c, shape));
    default: return stage_has_head(c, shape);  // the final norm, lm_head
  }
}

bool activations_offloaded(TrainMode mode, const RunShape& shape) {
  return shape.offload_activations && mode != TrainMode::kFrozen;
}

std::string layer_shard_name(int layer) {
  return fmt::format("layers.{}.shard", layer);
}

std::optional<ShardSpec> layer_blob_spec(const RunShape& shape) {
  if (shape.layer_shard) return shape.layer_shard;
  if (shape.offload_layers) return ShardSpec{0, 1};
  return std::nullopt;
}

LayerShardLayout layer_shard_layout(const ModelConfig& c, const RunShape& shape, DType compute) {
  LayerShardLayout out;
  const std::optional<ShardSpec> spec = layer_blob_spec(shape);
  if (!spec) return out;
  out.spec = *spec;
  if (out.spec.world < 1 || out.spec.rank < 0 || out.spec.rank >= out.spec.world)
    throw_input_error("plan", "layer shard: rank {} of world {} is not a rank", out.spec.rank,
                      out.spec.world);
  auto align = [](size_t n, size_t a) { return (n + a - 1) / a * a; };
  auto add = [&](Projection p, BlobPart part, std::string suffix, DType dtype, Shape s) {
    out.entries.push_back({p, part, std::move(suffix), dtype, s, out.bytes});
    out.bytes = align(out.bytes + out.entries.back().bytes(), kLayerBlobAlign);
  };
  for (Projection p : kAllProjections) {
    const auto [rows, cols] = projection_shape(c, p);
    const std::string module = projection_module(p), w = module + ".weight";
    if (shape.base4) {  // add_quant4_weight's buffers, in its order
      const int64_t n = rows * cols, bs = shape.base4->blocksize;
      const bool dq = shape.base4->double_quant;
      add(p, BlobPart::kPacked, w, DType::kU8, Shape{quant4_packed_bytes(n)});
      add(p, BlobPart::kAbsmax, w + ".absmax", dq ? DType::kU8 : DType::kF32,
          Shape{quant4_blocks(n, bs)});
      if (dq) {
        add(p, BlobPart::kNestedAbsmax, w + ".nested_absmax", DType::kF32,
            Shape{quant4_nested_blocks(n, bs)});
        add(p, BlobPart::kNestedMap, w + ".nested_map", DType::kF32, Shape{256});
      }
    } else {
      add(p, BlobPart::kWeight, w, compute, Shape{rows, cols});
    }
    if (projection_has_bias(c, p)) add(p, BlobPart::kBias, module + ".bias", compute, Shape{rows});
  }
  out.bytes = align(out.bytes, kLayerBlobAlign * static_cast<size_t>(out.spec.world));
  out.shard_bytes = out.bytes / static_cast<size_t>(out.spec.world);
  return out;
}

std::vector<ActivationSpec> activation_specs(const ModelConfig& c, const LoraConfig& lora,
                                             TrainMode mode, int64_t t) {
  const int64_t h = c.hidden_size, i = c.intermediate_size, qd = c.q_dim(), kvd = c.kv_dim();
  const Lifetime at = kReadInAttn, mlp = kReadInMlp;
  std::vector<ActivationSpec> a = {
      {"xn1", Shape{t, h}, false, at},          {"rstd1", Shape{t}, true, at},
      {"q", Shape{t, qd}, false, at},           {"k", Shape{t, kvd}, false, at},
      {"v", Shape{t, kvd}, false, at},          {"att", Shape{t, qd}, false, at},
      {"lse", Shape{c.num_heads, t}, true, at}, {"x_mid", Shape{t, h}, false, mlp},
      {"xn2", Shape{t, h}, false, mlp},         {"rstd2", Shape{t}, true, mlp},
  };
  if (c.has_dense_layers())
    for (const char* n : {"gate", "up", "act"}) a.push_back({n, Shape{t, i}, false, mlp});
  // A sparse layer's routing and its experts' rows (one per token and chosen expert, grouped
  // by expert: model/transformer_moe.cpp). Buffers of whichever kind of MLP a layer has are left
  // unused by the other kind's layers (only models with both pay for both).
  if (c.has_sparse_layers()) {
    const int64_t e = c.moe.num_experts, k = c.moe.experts_per_token;
    const int64_t ie = c.moe.expert_intermediate_size;
    a.push_back({"router_logits", Shape{t, e}, false, mlp});
    a.push_back({"router_probs", Shape{t * e}, true, mlp});
    a.push_back({"route_weights", Shape{t * k}, true, mlp});
    a.push_back({"route_experts", Shape{t * k}, false, mlp, /*i32=*/true});
    a.push_back({"row_token", Shape{t * k}, false, mlp, true});
    a.push_back({"row_pair", Shape{t * k}, false, mlp, true});
    a.push_back({"row_of", Shape{t * k}, false, mlp, true});
    a.push_back({"row_weight", Shape{t * k}, true, mlp});
    a.push_back({"moe_x", Shape{t * k, h}, false, mlp});
    a.push_back({"moe_gate", Shape{t * k, ie}, false, mlp});
    a.push_back({"moe_up", Shape{t * k, ie}, false, mlp});
    a.push_back({"moe_act", Shape{t * k, ie}, false, mlp});
    a.push_back({"moe_y", Shape{t * k, h}, false, mlp});
  }
  if (c.qk_norm) {
    a.push_back({"q_raw", Shape{t, qd}, false, at});
    a.push_back({"k_raw", Shape{t, kvd}, false, at});
    a.push_back({"rstd_q", Shape{t * c.num_heads}, true, at});
    a.push_back({"rstd_k", Shape{t * c.num_kv_heads}, true, at});
  }
  // LoRA intermediates, transposed: uᵀ [g·r, T] per group (lora_groups); backward overwrites
  // them with duᵀ.
  if (mode == TrainMode::kLora)
    for (const LoraGroup& g : lora_groups(lora))
      a.push_back({"lora_u." + g.name, Shape{static_cast<int64_t>(g.members.size()) * lora.r, t},
                   false, projection_in_mlp(g.members.front()) ? mlp : at});
  // A sparse layer's LoRA intermediates, not transposed (row-major like the rows they come
  // from): the router's u = xn2·Aᵀ [T, r], and per expert row u = x·A_eᵀ [T·k, r] of gate_up
  // (x the row's input) and of down (x its SwiGLU); backward overwrites each with du.
  if (mode == TrainMode::kLora && c.has_sparse_layers()) {
    const int64_t k = c.moe.experts_per_token;
    for (MoeTarget m : lora.moe_targets)
      a.push_back(
          {moe_lora_u_name(m), Shape{m == MoeTarget::kRouter ? t : t * k, lora.r}, false, mlp});
  }
  return a;
}

// Lifetimes. A job runs these phases (Phase, transformer_buffers.h):
//
//   F  L  N  (R M A)(R M A) ... (R M A)      R only for recomputed layers; eval runs F L
//   forward, loss head, final-norm backward, then per layer l = N-1..0 its backward
//
// A buffer's set holds every phase in which it is written or read and every phase that runs
// between a write and a later read of the same value. R, M and A recur once per layer, so a value
// that crosses layers needs all three. Hence:
// - whole job: weights, trainable values/masters/grads/optimizer state, inputs, every layer's
//   input x_in (written in F, read by R and A of its layer), and the activations of saved layers
//   (written in F, read in M/A of their layer, after L, N and the other layers' phases);
// - the shared recompute set act.* (recomputed layers): its contents from F are never read
//   after F (R recomputes them), so it lives in F and from R to its last read, M or A (in M,
//   act.act, act.gate and act.up take dact, dgate and dup, and in M and A act.lora_u.* take
//   the LoRA gradients duᵀ: layer_backward);
// - lora.layer, base4.layer and shard.layer {F N R M A} (LoRA cast per layer, 4-bit base
//   dequantized per layer, ZeRO-3 layer gathered): each layer gathers its weights, casts its
//   adapters and dequantizes its weights before it runs, in forward and in backward; the
//   backward of layer l does so while N, or the A of layer l+1, is still the current phase;
// - layers.<l>.shard (ZeRO-3): this rank's bytes of layer l's weights, whole job;
// - offload.x_in.even / .odd {F N R M A} (offloaded activations, whose layers.<l>.x_in are in
//   the host plan): written by the embedding and each layer in F, copied back from N on;
// - final.x_in {F L N}: written by the last layer, read by the final norm and its backward;
// - final.xn, loss.* {L}; final.rstd {L N};
// - scratch.dxn {L N M A}: dlogits -> dxn in L, read in N; then each layer's M and A reuse it;
// - scratch.dres {N R M A}: dL/d(residual), carried from N through every layer (the embedding
//   backward reads it at the end of the last A);
// - per-block scratch: {A} (attention backward), {M A} (used by both blocks but never carried
//   from one to the next), {F R M A} (LoRA dropout input, rebuilt in forward and backward).
// Buffers with disjoint sets share bytes: loss.logits with the recompute set and the attention
// backward's scratch, final.x_in / final.xn with the recompute set.
namespace {
// Builds the device plan, and the host plan when `host` is given (plan_transformer_host):
// one walk over the job's buffers, so the two never disagree on what is where.
AllocationPlan plan_job(const ModelConfig& c, TrainMode mode, const LoraConfig& lora,
                        const RunShape& shape, DType compute, AllocationPlan* host);
}  // namespace

AllocationPlan plan_transformer(const ModelConfig& c, TrainMode mode, const LoraConfig& lora,
                                const RunShape& shape, DType compute) {
  return plan_job(c, mode, lora, shape, compute, nullptr);
}

AllocationPlan plan_transformer_host(const ModelConfig& c, TrainMode mode, const LoraConfig& lora,
                                     const RunShape& shape, DType compute) {
  AllocationPlan host;
  plan_job(c, mode, lora, shape, compute, &host);
  host.finalize();
  return host;
}

LoraConfig lora_for_model(const ModelConfig& c, LoraConfig lora) {
  if (!lora.moe_targets.empty() && !c.has_sparse_layers())
    throw_input_error("lora",
                      "LoRA target '{}' is a mixture-of-experts router or experts tensor; this "
                      "model ({}) has no sparse layers",
                      moe_target_parameter(lora.moe_targets.front()), c.architecture_name);
  // PEFT refuses dropout on parameter targets (which the router and experts are to it): its
  // ParamWrapper adds ΔW to the weight and cannot drop out the input of the LoRA path alone.
  if (!lora.moe_targets.empty() && lora.dropout > 0.0f)
    throw_input_error("lora",
                      "lora_dropout {} with router/experts targets: LoRA dropout is not supported "
                      "on the router and experts (PEFT refuses it on parameter targets); set "
                      "lora_dropout to 0",
                      lora.dropout);
  if (c.has_dense_layers()) return lora;
  const size_t before = lora.targets.size();
  std::erase_if(lora.targets, projection_in_mlp);
  if (lora.targets.empty() && lora.moe_targets.empty() && before > 0)
    throw_input_error("lora",
                      "the LoRA targets are all MLP projections (gate_proj, up_proj, down_proj), "
                      "which this mixture-of-experts model ({}) does not have: its MLPs are "
                      "experts; target q_proj, k_proj, v_proj, o_proj",
                      c.architecture_name);
  return lora;
}

namespace {
AllocationPlan plan_job(const ModelConfig& c, TrainMode mode, const LoraConfig& lora_in,
                        const RunShape& shape, DType compute, AllocationPlan* host) {
  const LoraConfig lora = mode == TrainMode::kLora ? lora_for_model(c, lora_in) : lora_in;
  AllocationPlan plan;
  // Where a buffer kept in host memory goes: the host plan, or nowhere (the device plan only).
  AllocationPlan discard;
  AllocationPlan& on_host = host ? *host : discard;
  const int64_t t = shape.max_tokens;
  const int64_t h = c.hidden_size, i = c.intermediate_size, qd = c.q_dim(), kvd = c.kv_dim();
  const bool training = mode != TrainMode::kFrozen;
  // compute_copy = false: no compute-dtype value beside the f32 master (LoRA cast per layer).
  // optimizer_shard: the master and moments hold only this rank's block (a separate master
  // even in f32, since the value stays whole).
  const bool sharded = shape.optimizer_shard && shape.optimizer_shard->world > 1;
  // offload_optimizer: the master and moments go to the host plan.
  AllocationPlan& state = shape.offload_optimizer ? on_host : plan;
  auto add_trainable = [&](const std::string& name, Shape s, const char* value_group,
                           bool compute_copy = true) {
    const Shape kept = sharded ? Shape{shard_block(s.numel(), *shape.optimizer_shard).size} : s;
    if (compute == DType::kF32 && !sharded && !shape.offload_optimizer) {
      plan.add(name, value_group, s, compute);  // the value is the master
    } else {
      if (compute_copy) plan.add(name, value_group, s, compute);
      state.add(name + ".master", "master", kept, DType::kF32);
    }
    plan.add(name + ".grad", "grads", s, DType::kF32);
    if (shape.with_optimizer) {
      state.add(name + ".adam_m", "optimizer", kept, DType::kF32);
      state.add(name + ".adam_v", "optimizer", kept, DType::kF32);
    }
  };

  if (shape.base4 && mode == TrainMode::kFull)
    throw_input_error("plan",
                      "full fine-tuning of a 4-bit base is not supported: train LoRA on it "
                      "(adapter: qlora), or load the base in 16 bits");
  if (shape.layer_shard && mode == TrainMode::kFull)
    throw_input_error("plan",
                      "ZeRO-3 shards frozen weights (LoRA, QLoRA); full fine-tuning shards with "
                      "zero2");
  if (shape.offload_layers && mode == TrainMode::kFull)
    throw_input_error("plan",
                      "offload: weights keeps frozen layers in host memory (LoRA, QLoRA); full "
                      "fine-tuning trains those weights on the device");
  if (shape.offload_layers && shape.layer_shard && shape.layer_shard->world > 1)
    throw_input_error("plan",
                      "offload: weights with zero3 (sharded layers in host memory) is not "
                      "built: use one of them");
  if (c.has_sparse_layers() && layer_blob_spec(shape))
    throw_input_error("plan",
                      "zero3 and offload: weights are not built yet for mixture-of-experts "
                      "models: use ddp, zero2 or pipeline");
  const LayerRange layers = stage_layers(c, shape);
  if (shape.stage) {
    const RunShape::Stage& st = *shape.stage;
    if (st.first_layer < 0 || st.first_layer >= st.end_layer || st.end_layer > c.num_layers ||
        st.in_flight < 1)
      throw_input_error("plan",
                        "pipeline stage: layers [{}, {}) with {} in flight of a {}-layer model",
                        st.first_layer, st.end_layer, st.in_flight, c.num_layers);
    if (mode == TrainMode::kFull && c.tie_word_embeddings && layers.size() < c.num_layers)
      throw_input_error("plan",
                        "full fine-tuning of a model with tied embeddings over pipeline stages is "
                        "not built (the first and last stage would each train a copy)");
    if (shape.layer_shard && shape.layer_shard->world > 1)
      throw_input_error("plan", "zero3 within a pipeline stage is not built");
  }
  const bool host_embedding = embedding_on_host(c, mode, shape);
  if (host_embedding)
    for (const WeightSpec& w : weight_specs(c))
      if (w.kind == WeightKind::kEmbed) on_host.add(w.name, "embedding", w.shape, compute);
  if (shape.offload_layers) {
    const LayerShardLayout layout = layer_shard_layout(c, shape, compute);
    for (int l = layers.first; l < layers.end; ++l)
      on_host.add(layer_shard_name(l), "weights.offload", Shape{static_cast<int64_t>(layout.bytes)},
                  DType::kU8);
  }
  // ZeRO-3: a layer's linear weights and biases are its blob's bytes (layer_shard_layout), of
  // which this rank keeps its shard; the layer about to run is gathered into shard.layer, read
  // wherever a layer runs, as base4.layer.
  // Offloaded layers: the blobs are in the host plan, and the layer that runs next is copied
  // into shard.layer.next while one runs (both live wherever layers run).
  const LayerShardLayout blob = layer_shard_layout(c, shape, compute);
  const bool blobs = layer_blob_spec(shape).has_value();
  if (blobs) {
    if (!shape.offload_layers)
      for (int l = layers.first; l < layers.end; ++l)
        plan.add(layer_shard_name(l), "weights.shard",
                 Shape{static_cast<int64_t>(blob.shard_bytes)}, DType::kU8);
    const Shape whole{static_cast<int64_t>(blob.bytes)};
    plan.add(kShardLayer, shape.offload_layers ? "offload" : "gather", whole, DType::kU8,
             live_in({F, N, R, M, A}));
    if (shape.offload_layers)
      plan.add(kShardLayerNext, "offload", whole, DType::kU8, live_in({F, N, R, M, A}));
  }
  for (const WeightSpec& w : weight_specs(c)) {
    if (!stage_keeps(c, shape, w)) continue;
    if (host_embedding && w.kind == WeightKind::kEmbed) continue;
    if (blobs && (w.kind == WeightKind::kLinear || w.kind == WeightKind::kBias)) continue;
    // A 4-bit base packs the decoder's linear weights and a sparse layer's experts (each
    // fused tensor one flat array of blocks, as a dense weight). The router (kRouter) stays in
    // the compute dtype, as bitsandbytes leaves it: its logits make a top-k choice that 4-bit
    // noise would flip for tokens near a tie, and it is [E, H], a tiny part of the layer.
    if (shape.base4 && (w.kind == WeightKind::kLinear || w.kind == WeightKind::kExperts))
      add_quant4_weight(plan, w.name, w.shape, *shape.base4);
    else if (mode == TrainMode::kFull)
      add_trainable(w.name, w.shape, "weights");
    else
      plan.add(w.name, "weights", w.shape, compute);
  }
  // The dequantized layer is read wherever a layer runs (F, R, M, A); the backward of layer l
  // dequantizes while N, or the A of layer l+1, is still the current phase. It shares its bytes
  // with the loss head's logits.
  if (shape.base4)
    plan.add(kBase4Layer, "dequant", Shape{base4_layer_layout(c).total}, compute,
             live_in({F, N, R, M, A}));
  if (mode == TrainMode::kLora) {
    const int64_t total = lora_layout(c, lora, layers).total;
    const bool per_layer = lora_cast_per_layer(mode, shape, compute);
    add_trainable(kLoraFlat, Shape{total}, "lora", /*compute_copy=*/!per_layer);
    if (per_layer)
      plan.add(kLoraLayer, "lora", Shape{total / layers.size()}, compute, live_in({F, N, R, M, A}));
  }

  // Inputs of one micro-batch.
  plan.add("input.ids", "inputs", Shape{t}, DType::kI32);
  plan.add("input.positions", "inputs", Shape{t}, DType::kI32);
  plan.add("input.targets", "inputs", Shape{t}, DType::kI32);
  plan.add("input.cu_seqlens", "inputs", Shape{t + 1}, DType::kI32);
  plan.add("input.inv_freq", "inputs", Shape{c.head_dim / 2}, DType::kF32);

  // Residual stream: the input of every layer and of the final norm is kept for backward; with
  // offloaded activations in host memory, passing through two device buffers that live wherever
  // layers run (backward starts fetching the last layer's input in N). A pipeline stage keeps
  // one slot of inputs (and of saved layers' activations) per micro-batch in flight.
  const int slots = activation_slots(shape);
  if (activations_offloaded(mode, shape)) {
    for (int s = 0; s < slots; ++s)
      for (int l = layers.first; l < layers.end; ++l)
        on_host.add(layer_input_name(l, s), "activations.offload", Shape{t, h}, compute);
    for (const char* name : {kLayerInputEven, kLayerInputOdd})
      plan.add(name, "activations", Shape{t, h}, compute, live_in({F, N, R, M, A}));
  } else {
    for (int s = 0; s < slots; ++s)
      for (int l = layers.first; l < layers.end; ++l)
        plan.add(layer_input_name(l, s), "activations", Shape{t, h}, compute);
  }
  const bool head = stage_has_head(c, shape);
  // A stage before the last hands its output on after its forward: kept until the next one.
  if (head)
    plan.add("final.x_in", "activations", Shape{t, h}, compute, live_in({F, L, N}));
  else
    plan.add(kStageOutput, "activations", Shape{t, h}, compute);
  // One activation set per kept layer, plus the set that recomputed layers (and inference)
  // share.
  bool any_recomputed = false;
  for (int l = layers.first; l < layers.end; ++l) any_recomputed |= !layer_saved(c, mode, shape, l);
  if (any_recomputed)
    for (const ActivationSpec& a : activation_specs(c, lora, mode, t))
      plan.add(activation_buffer_name(-1, a.name), "activations", a.shape, a.dtype(compute),
               a.shared_lifetime);
  for (int s = 0; s < slots; ++s)
    for (int l = layers.first; l < layers.end; ++l) {
      if (!layer_saved(c, mode, shape, l)) continue;
      for (const ActivationSpec& a : activation_specs(c, lora, mode, t))
        plan.add(activation_buffer_name(l, a.name, s), "activations", a.shape, a.dtype(compute),
                 Lifetime::whole_job());
    }

  // Loss head (the last stage's).
  if (head) {
    plan.add("final.xn", "activations", Shape{t, h}, compute, live_in({L}));
    plan.add("final.rstd", "activations", Shape{t}, DType::kF32, live_in({L, N}));
    plan.add("loss.logits", "logits", Shape{std::min(t, shape.logits_chunk), c.vocab_size}, compute,
             live_in({L}));
    plan.add("loss.losses", "logits", Shape{t}, DType::kF32, live_in({L}));
  }

  // LoRA dropout scratch: the input and, in backward, the gradient of the dropped-out input.
  const int64_t widest = std::max({h, i, qd});
  if (mode == TrainMode::kLora && lora.dropout > 0.0f) {
    plan.add("scratch.drop_x", "scratch", Shape{t, widest}, compute, live_in({F, R, M, A}));
    plan.add("scratch.drop_dx", "scratch", Shape{t, widest}, compute, live_in({M, A}));
  }
  if (training) {
    const Lifetime attn = live_in({A}), both = live_in({M, A});
    for (const auto& [name, s, life] : std::vector<std::tuple<const char*, Shape, Lifetime>>{
             {"scratch.dres", Shape{t, h}, live_in({N, R, M, A})},
             {"scratch.dtmp", Shape{t, h}, both},
             {"scratch.dxn", Shape{t, h}, live_in({L, N, M, A})},
             {"scratch.dq", Shape{t, qd}, attn},
             {"scratch.dk", Shape{t, kvd}, attn},
             {"scratch.dv", Shape{t, kvd}, attn},
             {"scratch.datt", Shape{t, qd}, attn}})
      plan.add(name, "scratch", s, compute, life);
    if (c.has_sparse_layers()) {
      const int64_t e = c.moe.num_experts, k = c.moe.experts_per_token;
      plan.add("scratch.moe_dweights", "scratch", Shape{t * k}, DType::kF32, live_in({M}));
      plan.add("scratch.moe_dlogits", "scratch", Shape{t, e}, compute, live_in({M}));
      if (c.moe.aux_loss)
        plan.add("scratch.moe_aux_dprobs", "scratch", Shape{t, e}, DType::kF32, live_in({M}));
    }
    if (c.qk_norm) {
      plan.add("scratch.dq_raw", "scratch", Shape{t, qd}, compute, attn);
      plan.add("scratch.dk_raw", "scratch", Shape{t, kvd}, compute, attn);
    }
    // attention_backward's f32 workspace (see attention_workspace_cols).
    const AttentionShape attn_shape{c.num_heads, c.num_kv_heads, c.head_dim};
    plan.add("scratch.attn_ws", "scratch", Shape{t, attention_workspace_cols(attn_shape)},
             DType::kF32, attn);
  }
  plan.set_phase_names(phase_names());
  plan.finalize(/*share_bytes=*/!shape.check_lifetimes);
  return plan;
}
}  // namespace

std::vector<LoraGroup> lora_groups(const LoraConfig& lora) {
  using P = Projection;
  const std::vector<std::pair<const char*, std::vector<P>>> by_input = {
      {"qkv", {P::kQ, P::kK, P::kV}},
      {nullptr, {P::kO}},
      {"gate_up", {P::kGate, P::kUp}},
      {nullptr, {P::kDown}}};
  std::vector<LoraGroup> out;
  for (const auto& [name, members] : by_input) {
    if (name && std::all_of(members.begin(), members.end(),
                            [&](P p) { return lora.targets_projection(p); })) {
      out.push_back({name, members});
      continue;
    }
    for (P p : members)
      if (lora.targets_projection(p)) out.push_back({projection_name(p), {p}});
  }
  return out;
}

LoraLayout lora_layout(const ModelConfig& c, const LoraConfig& lora, LayerRange layers) {
  constexpr int64_t kAlign = 64;
  LoraLayout out;
  auto place = [&](int l, Projection p, bool is_b, Shape shape) {
    out.slots.push_back({peft_tensor_name(l, p, is_b), shape, out.total, l, p, is_b});
    out.total += shape.numel();
  };
  auto align = [&] { out.total = (out.total + kAlign - 1) / kAlign * kAlign; };
  const std::vector<LoraGroup> groups = lora_groups(lora);
  for (int l = layers.first; l < layers.end; ++l) {
    for (const LoraGroup& g : groups) {
      if (c.sparse_layer(l) && projection_in_mlp(g.members.front())) {
        // A sparse layer has no dense MLP projections to adapt: their place stays empty (zero,
        // never read), so that every layer's slice of the flat buffer has the same size
        // (lora.layer, lora_cast_per_layer).
        const size_t first = out.slots.size();
        for (Projection p : g.members)
          place(l, p, false, Shape{lora.r, projection_shape(c, p).second});
        align();
        for (Projection p : g.members) {
          place(l, p, true, Shape{projection_shape(c, p).first, lora.r});
          align();
        }
        out.slots.resize(first);
        continue;
      }
      // The As back to back, one [g·r, in] matrix (the members share their input); then the Bs.
      for (Projection p : g.members)
        place(l, p, false, Shape{lora.r, projection_shape(c, p).second});
      align();
      for (Projection p : g.members) {
        place(l, p, true, Shape{projection_shape(c, p).first, lora.r});
        align();
      }
    }
    // The MoE targets, A then B each; a dense layer keeps their place empty too.
    for (MoeTarget m : lora.moe_targets) {
      const size_t first = out.slots.size();
      const MoeLoraShape s = moe_lora_shape(c, m, lora.r);
      for (bool is_b : {false, true}) {
        out.slots.push_back({peft_moe_tensor_name(l, m, is_b, lora), is_b ? s.b : s.a, out.total, l,
                             Projection::kQ, is_b, m});
        out.total += (is_b ? s.b : s.a).numel();
        align();
      }
      if (!c.sparse_layer(l)) out.slots.resize(first);
    }
  }
  return out;
}

bool lora_cast_per_layer(TrainMode mode, const RunShape& shape, DType compute) {
  // The cast reads the whole f32 master, which a sharded optimizer does not keep.
  if (shape.optimizer_shard && shape.optimizer_shard->world > 1) return false;
  // An offloaded master would be read over PCIe before every layer: keep the values whole.
  if (shape.offload_optimizer) return false;
  return mode == TrainMode::kLora && (compute != DType::kF32 || shape.cast_lora_per_layer_on_f32);
}

bool embedding_on_host(const ModelConfig& c, TrainMode mode, const RunShape& shape) {
  const bool sharded = shape.layer_shard && shape.layer_shard->world > 1;
  return (shape.base4 || sharded || shape.offload_layers) && mode != TrainMode::kFull &&
         !c.tie_word_embeddings && stage_has_embedding(shape);
}

bool layer_saved(const ModelConfig& c, TrainMode mode, const RunShape& shape, int l) {
  if (mode == TrainMode::kFrozen) return false;
  if (shape.recompute == RecomputePolicy::kSave) return true;
  const int n = shape.recompute_layers < 0 ? c.num_layers : shape.recompute_layers;
  return l >= n;
}

std::optional<RunShape> fit_recompute(const ModelConfig& c, TrainMode mode, const LoraConfig& lora,
                                      RunShape shape, DType compute, size_t cap) {
  shape.recompute = RecomputePolicy::kFull;
  auto fits = [&](int n) {
    shape.recompute_layers = n;
    return plan_transformer(c, mode, lora, shape, compute).total_bytes() <= cap;
  };
  if (!fits(c.num_layers)) return std::nullopt;
  int lo = 0, hi = c.num_layers;  // fits(hi); find the smallest n that fits
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (fits(mid))
      hi = mid;
    else
      lo = mid + 1;
  }
  shape.recompute_layers = hi;
  return shape;
}

RunShape fit_recompute_or_refuse(const ModelConfig& c, TrainMode mode, const LoraConfig& lora,
                                 RunShape shape, DType compute, size_t cap) {
  if (auto fit = fit_recompute(c, mode, lora, shape, compute, cap)) return *fit;
  shape.recompute = RecomputePolicy::kFull;
  shape.recompute_layers = -1;
  const AllocationPlan smallest = plan_transformer(c, mode, lora, shape, compute);
  throw Error(
      "plan",
      fmt::format("even recomputing every layer needs {}, over the cap of {}:\n{}",
                  format_bytes(smallest.total_bytes()), format_bytes(cap), smallest.summary()),
      ExitCode::kNoFit);
}

size_t arena_cap(size_t device_cap, size_t backend_reserved) {
  if (device_cap <= backend_reserved)
    throw_input_error("plan", "memory cap {} is below the backend's own workspace ({})",
                      format_bytes(device_cap), format_bytes(backend_reserved));
  return device_cap - backend_reserved;
}

std::string activation_buffer_name(int layer, const std::string& name, int slot) {
  if (layer < 0) return "act." + name;
  return slot == 0 ? fmt::format("layers.{}.act.{}", layer, name)
                   : fmt::format("layers.{}.act.{}@{}", layer, name, slot);
}

}  // namespace fitlm
