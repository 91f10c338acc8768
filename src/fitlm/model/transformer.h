// The decoder-only transformer (Llama / Mistral / Qwen2 / Qwen3) with explicit forward and
// backward over the Backend op set. One Transformer owns one Arena: weights, trainable
// parameters and their gradients, optimizer state, activations and scratch all come from the
// allocation plan built by `plan_transformer` — the same function `fitlm plan` reports.
#pragma once

#include <array>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "fitlm/adapters/lora.h"
#include "fitlm/backend/arena.h"
#include "fitlm/backend/backend.h"
#include "fitlm/core/quant4_tensor.h"
#include "fitlm/core/shard.h"
#include "fitlm/model/config.h"
#include "fitlm/text/batch.h"

namespace fitlm {

enum class TrainMode { kFrozen, kLora, kFull };
// save: keep every activation of every layer; full: keep only each layer's input and recompute
// the layer during backward (gradients are bit-identical either way). With kFull,
// RunShape::recompute_layers can limit recompute to the first n layers and keep the rest;
// fit_recompute() picks the smallest n that fits a memory cap.
enum class RecomputePolicy { kSave, kFull };

// A 4-bit base (QLoRA, core/quant4.h): every decoder linear weight, and a sparse layer's fused
// expert tensors, are kept packed in the arena (nibbles, absmax, nested absmax) and dequantized
// into one layer-sized 16-bit buffer, base4.layer, before their layer runs — in forward,
// recompute and backward alike. Embeddings, norms, biases, routers and lm_head stay 16-bit, as
// bitsandbytes leaves them.
struct Base4Layout {
  quant::QuantType type = quant::QuantType::kNF4;
  int64_t blocksize = 64;
  bool double_quant = true;
};

struct RunShape {
  int64_t max_tokens = 0;       // tokens of one micro-batch (all rows laid end to end)
  int64_t logits_chunk = 1024;  // rows of logits materialised at once in the loss
  RecomputePolicy recompute = RecomputePolicy::kSave;
  int recompute_layers = -1;    // kFull: layers 0..n−1 are recomputed, the rest kept; −1 = all
  bool with_optimizer = false;  // AdamW m and v for every trainable parameter
  size_t max_memory = 0;        // arena cap in bytes (0 = none): a plan over it is refused
  std::optional<Base4Layout> base4;  // a 4-bit base; nullopt: weights in the compute dtype
  // ZeRO-2 (dist/zero2.h): this rank keeps only its block (core/shard.h) of every trainable
  // tensor's f32 master and AdamW moments; values and gradients stay whole. nullopt or world 1:
  // everything whole.
  std::optional<ShardSpec> optimizer_shard;
  // Tests: give every buffer its own bytes, and on entering each phase fill every float buffer
  // that is not live in it with NaN, and check that those of the phase just left still hold NaN.
  // A lifetime declared too short then corrupts the results or throws, wherever buffers sit.
  bool check_lifetimes = false;
  // Tests: cast LoRA adapters per layer (lora_cast_per_layer) on an f32 backend too.
  bool cast_lora_per_layer_on_f32 = false;
  // Tests: run the LoRA products of every target on its own, as for a group that is not fully
  // targeted or with dropout (lora_groups), instead of once per group of targets sharing an input.
  bool lora_per_projection = false;
  // ZeRO-3 for LoRA and QLoRA: this rank (of `world`) keeps only its shard of every decoder
  // layer's large frozen tensors, and each layer is gathered from every rank just before it
  // runs (Transformer::set_layer_gather).
  // - Sharded, per layer: every linear projection's weight (in the compute dtype, or with base4
  //   its packed data: nibbles, absmax, nested absmax, nested map) and its bias if any, laid
  //   out as one byte blob of B bytes (layer_shard_layout, transformer_buffers.h: the same
  //   layout for every layer, each tensor 256-byte aligned, B a multiple of world·256). Rank r
  //   keeps bytes [r·B/world, (r+1)·B/world) of each layer's blob, layers.<l>.shard.
  // - Replicated as without it: the norms of every layer, the final norm and lm_head, the LoRA
  //   adapters and their state; the embedding too, but in host memory over several ranks
  //   (embedding_on_host) unless tied to lm_head.
  // - Per-layer cost on every rank: one gathered blob, shard.layer (B bytes), plus with base4
  //   the one dequantized layer base4.layer it already needs; both live while layers run
  //   (F N R M A) and share bytes with the loss head's buffers.
  // Full fine-tuning with it is an input error (the full model shards its optimizer state with
  // zero2 instead). Frozen mode (inference, the incremental decoder) works: every caller of
  // prepare_layer gathers. nullopt (or world 1 without a gather set) keeps today's layout.
  std::optional<ShardSpec> layer_shard;
  // Parameter offload (LoRA and QLoRA): every decoder layer's frozen weights, laid out as the
  // blob of layer_shard_layout with the whole blob as this process's shard, live in pinned
  // host memory (plan_transformer_host) instead of the device. prepare_layer copies a layer in
  // before it runs, on the backend's transfer queue (Backend::copy_async), and starts copying
  // the layer that runs next into the other of two device buffers (shard.layer,
  // shard.layer.next), so the copy of one layer overlaps the compute of another. The embedding
  // stays in host memory too (embedding_on_host). With layer_shard over several ranks: not
  // built (an input error).
  bool offload_layers = false;
  // Optimizer offload: the f32 master and AdamW moments of every trainable tensor (this rank's
  // block of them with optimizer_shard) live in pinned host memory, mapped into the device's
  // address space (plan_transformer_host); the optimizer's kernels read and write them there
  // (CUDA: over PCIe), values and gradients stay on the device. The master is then always its
  // own buffer, also in f32, and LoRA adapters keep their compute-dtype values whole.
  bool offload_optimizer = false;
  // Activation offload (training): every decoder layer's input — the residual stream the
  // backward pass needs for recompute and for the layer's own gradients — lives in pinned host
  // memory (plan_transformer_host). Layer inputs pass through two device buffers
  // (offload.x_in.even / .odd, by the layer's parity): forward copies each one out on the
  // backend's transfer queue while the next layer runs, backward copies layer l−1's input in
  // while layer l runs. Saves (layers − 2)·tokens·hidden values of device memory: what grows
  // with the context once every layer is recomputed. Inference (TrainMode::kFrozen) ignores it.
  bool offload_activations = false;
  // Pipeline stage: this process runs decoder layers [first_layer, end_layer) only and keeps only
  // their weights, adapters and activations. A stage after the first takes the hidden state
  // entering first_layer from the stage before (Transformer::stage_input) instead of the
  // embedding; a stage before the last hands the hidden state leaving end_layer on
  // (stage_output) instead of running the final norm, LM head and loss. Backward mirrors it:
  // ∂L/∂output comes in, ∂L/∂input goes out (stage_gradient). `in_flight` micro-batches may be
  // between their forward and their backward at once (a 1F1B schedule: the stage's distance to
  // the last stage, plus one): each has its own slot of layer inputs and saved activations.
  struct Stage {
    int first_layer = 0;
    int end_layer = 0;
    int in_flight = 1;
  };
  std::optional<Stage> stage;
};

// The decoder layers a job runs: [0, num_layers), or its stage's.
struct LayerRange {
  int first = 0, end = 0;
  bool contains(int l) const { return l >= first && l < end; }
  int size() const { return end - first; }
};
LayerRange stage_layers(const ModelConfig& config, const RunShape& shape);
// Whether the job's stage holds the token embedding (the first stage) and the final norm, LM
// head and loss (the last); both without stages.
bool stage_has_embedding(const RunShape& shape);
bool stage_has_head(const ModelConfig& config, const RunShape& shape);
// Micro-batches whose activations the job keeps at once (RunShape::Stage::in_flight, else 1).
int activation_slots(const RunShape& shape);

// Whether the job keeps its layer inputs in host memory (RunShape::offload_activations).
bool activations_offloaded(TrainMode mode, const RunShape& shape);

// Whether the decoder's linear weights are kept as per-layer byte blobs (ZeRO-3's shards or
// offloaded layers), and the part of each blob this process keeps: layer_shard, or the whole
// blob ({0, 1}) when only offload_layers asks for blobs.
std::optional<ShardSpec> layer_blob_spec(const RunShape& shape);

// One micro-batch on the host (text/batch.h): labels aligned with input_ids as in HF; the model
// shifts them inside each segment. Empty position_ids / cu_seqlens mean 0.. / one segment.
using HostBatch = TokenBatch;

struct LossResult {
  double loss_sum = 0.0;  // Σ over scored tokens of −log p
  int64_t tokens = 0;     // scored tokens
};

// A trainable tensor: `value` is what forward reads (compute dtype), `master` the f32 copy the
// optimizer updates (the same memory when the compute dtype is f32, and for LoRA adapters cast
// per layer, lora_cast_per_layer: forward then reads a per-layer cast of the master).
struct Param {
  std::string name;  // HF name (full) or PEFT name (LoRA)
  Tensor value, master, grad, adam_m, adam_v;
  bool decay = true;  // weight decay applies (not to norms and biases)
  // The elements of value/grad that master, adam_m and adam_v hold: all of them, or this rank's
  // block under RunShape::optimizer_shard (then master is a flat tensor of shard.size).
  ShardBlock shard;
  // An expert LoRA B kept as [E, out, r] (per expert contiguous) whose PEFT file layout is
  // [out, r·E] (expert_b_to_peft): E; 0 for every other tensor (the same layout in both).
  int64_t peft_experts = 0;
  bool master_is_shard() const { return master.numel() != value.numel(); }
  // The whole f32 values: the master, or — when only a block of it is kept — the gradient
  // buffer, which loaders fill before training (Transformer::commit_staged_masters) and
  // Strategy::gather_masters fills before saving.
  const Tensor& full_master() const { return master_is_shard() ? grad : master; }
};

struct LinearWeights {
  Tensor w, b;                              // [out, in], [out] (b may be empty); with a 4-bit
                                            // base, w is valid only while its layer runs, and
                                            // with layer_shard w and b are
  Quant4Tensor w4;                          // the 4-bit weight w is dequantized from, or empty
                                            // (with layer_shard, valid while its layer runs)
  Tensor dw, db;                            // full fine-tuning grads (f32), empty otherwise
  Tensor lora_a, lora_b, dlora_a, dlora_b;  // empty when not a LoRA target; with
                                            // lora_cast_per_layer, lora_a/b are valid only
                                            // while their layer runs
};

// A sparse layer's mixture of experts (WeightKind::kRouter, kExperts); empty in dense layers.
struct MoeWeights {
  Tensor router, gate_up, down;     // [E, H], [E, 2·I, H], [E, H, I]; with a 4-bit base,
                                    // gate_up and down view base4.layer (valid only while their
                                    // layer runs) and the router stays 16-bit
  Quant4Tensor gate_up4, down4;     // the 4-bit experts gate_up and down are dequantized from
                                    // (each fused tensor one flat array of blocks), or empty
  Tensor drouter, dgate_up, ddown;  // full fine-tuning grads (f32), empty otherwise
  // LoRA on the router and experts (LoraConfig::moe_targets; empty when not targeted), with
  // lora_cast_per_layer valid only while their layer runs: the router's A [r, H] and B [E, r];
  // gate_up's A [E·r, H] (expert e's A_e is rows e·r..e·r+r−1) and B [E, 2·I, r] (B_e's first I
  // rows adapt the gate, the next I the up rows); down's A [E·r, I] and B [E, H, r]. Grads f32.
  Tensor lora_router_a, lora_router_b, lora_gate_up_a, lora_gate_up_b, lora_down_a, lora_down_b;
  Tensor dlora_router_a, dlora_router_b, dlora_gate_up_a, dlora_gate_up_b, dlora_down_a,
      dlora_down_b;
};

struct LayerWeights {
  Tensor input_norm, post_norm, q_norm, k_norm;
  Tensor d_input_norm, d_post_norm, d_q_norm, d_k_norm;
  MoeWeights moe;
  std::array<LinearWeights, 7> proj;  // indexed by Projection (a sparse layer's gate, up and
                                      // down stay empty)
  LinearWeights& operator[](Projection p) { return proj[static_cast<int>(p)]; }
  const LinearWeights& operator[](Projection p) const { return proj[static_cast<int>(p)]; }
};

// The LoRA targets that exist in this model: a model whose layers are all sparse (mixture of
// experts) has no dense gate/up/down projections, so those targets are dropped (as PEFT finds no
// such module there); a mixed model keeps them for its dense layers. Nothing left is an input
// error. plan_transformer and Transformer apply it themselves.
LoraConfig lora_for_model(const ModelConfig& config, LoraConfig lora);

AllocationPlan plan_transformer(const ModelConfig& config, TrainMode mode, const LoraConfig& lora,
                                const RunShape& shape, DType compute);
// What the same job keeps in (pinned) host memory: the embedding with embedding_on_host, every
// layer's blob with RunShape::offload_layers, the masters and AdamW moments with
// offload_optimizer, the layer inputs with offload_activations. Buffers live for the whole job;
// empty plan when nothing is kept there.
AllocationPlan plan_transformer_host(const ModelConfig& config, TrainMode mode,
                                     const LoraConfig& lora, const RunShape& shape, DType compute);
// LoRA on a 16-bit compute dtype keeps no 16-bit copy of every adapter: before each layer runs
// (forward, recompute or backward), that layer's adapters are cast from the f32 masters into one
// layer-sized buffer, so the LoRA values take one layer's bytes instead of all layers'. Same
// values as a cast after each optimizer step, since the masters only change there.
bool lora_cast_per_layer(TrainMode mode, const RunShape& shape, DType compute);
// With a 4-bit base, ZeRO-3's sharded layers (layer_shard over several ranks) or offloaded
// layers (offload_layers), the token
// embedding stays in host memory (1 GiB of an 8B model, 2 GiB of a 70B one), pinned and mapped
// into the device's address space: the embedding op reads the micro-batch's rows there
// (T·hidden values over PCIe) instead of the table taking device memory — the jobs that shrink
// the layers to fit small GPUs should not keep a whole vocabulary table there. Only where the
// embedding is frozen and not also the LM head (untied).
bool embedding_on_host(const ModelConfig& config, TrainMode mode, const RunShape& shape);
// Whether layer l keeps its activations from forward to backward (false: recomputed).
bool layer_saved(const ModelConfig& config, TrainMode mode, const RunShape& shape, int l);
// `shape` with recompute = kFull and the fewest recomputed layers whose plan fits `cap` bytes
// (recomputing costs one extra layer forward each). Returns nullopt when even recomputing every
// layer does not fit.
std::optional<RunShape> fit_recompute(const ModelConfig& config, TrainMode mode,
                                      const LoraConfig& lora, RunShape shape, DType compute,
                                      size_t cap);
// As fit_recompute, but refuses (ExitCode::kNoFit, with the smallest plan's breakdown) when
// nothing fits.
RunShape fit_recompute_or_refuse(const ModelConfig& config, TrainMode mode, const LoraConfig& lora,
                                 RunShape shape, DType compute, size_t cap);
// The arena's share of a device memory cap: what the backend's own workspace leaves (input error
// when it leaves nothing). Every cap the user gives covers both.
size_t arena_cap(size_t device_cap, size_t backend_reserved);

class Transformer {
 public:
  Transformer(Backend& backend, ModelConfig config, TrainMode mode, LoraConfig lora,
              RunShape shape);
  ~Transformer();

  const ModelConfig& config() const { return config_; }
  TrainMode mode() const { return mode_; }
  const LoraConfig& lora() const { return lora_; }
  const RunShape& shape() const { return shape_; }
  Backend& backend() { return backend_; }
  const Arena& arena() const { return *arena_; }
  // Bytes kept in pinned host memory (plan_transformer_host).
  size_t host_bytes() const { return host_plan_.total_bytes(); }

  // Base weights by HF tensor name ("model.layers.0.self_attn.q_proj.weight"), for loaders:
  // those in the compute dtype, and (4-bit base) the packed ones, whose host-side fields
  // (offset, round_to) the loader sets.
  std::vector<std::pair<std::string, Tensor>> named_weights();
  // With RunShape::layer_shard the decoder's linear weights and biases are in neither list
  // (quantized_weights() is empty): loaders fill layer_shard(l) (layer_shard_layout,
  // transformer_buffers.h) and set the host-side fields of sharded_quantized_weights().
  std::vector<std::pair<std::string, Quant4Tensor*>> quantized_weights();
  // With layer_shard and a 4-bit base: each decoder linear's packed weight by HF name. Its
  // tensors view the gathered blob shard.layer, which only prepare_layer writes: loaders set
  // only the host-side fields (offset, round_to).
  std::vector<std::pair<std::string, Quant4Tensor*>> sharded_quantized_weights();
  // With layer_shard: this rank's bytes of layer l's blob (U8, B / world bytes).
  Tensor layer_shard(int l) const;
  // With layer_shard: how prepare_layer gathers a layer. `full` (U8, world × shard bytes, the
  // buffer shard.layer) must receive every rank's shard of the layer whose `shard` this is,
  // concatenated in rank order: dist::Comm::all_gather(shard, full). Every rank calls
  // prepare_layer for the same layers in the same order, so the gather may be a collective.
  // What the backend runs after it on its stream (dequantize, the layer's GEMMs) must see
  // `full` complete: a gather on another stream orders itself before returning.
  // Needed before any forward when world > 1; with world 1 and none set, prepare_layer copies.
  using LayerGather = std::function<void(const Tensor& shard, Tensor full)>;
  void set_layer_gather(LayerGather gather) { layer_gather_ = std::move(gather); }
  // Those kept in host memory (embedding_on_host), in the compute dtype.
  std::vector<std::pair<std::string, Tensor>> host_weights();
  // Every trainable tensor by its HF/PEFT name (checkpoints, adapters, tests).
  std::vector<Param>& params() { return params_; }
  // The same parameters as the optimizer should see them: in LoRA mode one flat Param over all
  // adapter tensors (one AdamW launch, one norm, one zeroing); in full mode params().
  std::vector<Param>& optimizer_params() { return flat_params_.empty() ? params_ : flat_params_; }

  // PEFT init for every LoRA pair: A ~ U(−1/√in, 1/√in) from `seed`, B = 0.
  void init_lora(uint64_t seed);
  void zero_grads();
  // After loaders wrote whole f32 values into Param::full_master() (and the values): a sharded
  // master takes its block from there, and the gradients are zeroed. Nothing to do otherwise.
  void commit_staged_masters();
  // Seed for dropout masks of the next forward (set once per optimizer micro-step).
  void set_dropout_seed(uint64_t seed) { dropout_seed_ = seed; }

  // Loss only (no gradients).
  LossResult forward_loss(const HostBatch& batch);
  // Loss and gradients: grads += grad_scale · ∂(Σ token losses)/∂param.
  LossResult forward_backward(const HostBatch& batch, float grad_scale);
  // Full logits [T, V] on the host (tests, generation): row t predicts token t+1.
  std::vector<float> logits(const HostBatch& batch);

  // Pipeline stages (RunShape::stage). The last stage runs forward_loss / forward_backward as
  // any model, its input taken from stage_input(0); a stage before it runs stage_forward, then
  // — once the stage after it has sent ∂L/∂stage_output into stage_gradient — stage_backward,
  // for the same micro-batch in the same slot (0 .. in_flight − 1) with the same dropout seed.
  // The hidden state entering this stage for the micro-batch in `slot`: a stage after the
  // first receives it here first ([tokens, hidden], compute dtype).
  Tensor stage_input(int slot, int64_t tokens);
  // The hidden state leaving a stage before the last: valid after stage_forward until the next.
  Tensor stage_output(int64_t tokens);
  // Before stage_backward: receives ∂L/∂stage_output. After stage_backward or a last stage's
  // forward_backward: holds ∂L/∂stage_input, which a stage after the first sends back.
  Tensor stage_gradient(int64_t tokens);
  // This stage's layers for `batch` (the first stage embeds it first); keeps what backward
  // needs in `slot` when `keep_for_backward`.
  void stage_forward(const HostBatch& batch, int slot, bool keep_for_backward);
  // Gradients += ∂L/∂param through this stage's layers, from stage_gradient.
  void stage_backward(const HostBatch& batch, int slot);

  // Makes layer l's weights readable through layer(l): gathers its shards into shard.layer
  // (layer_shard), dequantizes a 4-bit base into base4.layer and casts LoRA adapters kept per
  // layer (nothing otherwise). Every layer shares
  // those buffers, so the views hold until the next call. The forward and backward passes call
  // it themselves; the incremental decoder calls it before each layer.
  void prepare_layer(int l);

  // The incremental decoder's sparse-layer MLP (after prepare_layer(l)): y += layer l's mixture
  // of experts over xn [T, H], through the decoder's own scratch, the shapes LayerActivations
  // documents for T tokens. The same ops and order as the training forward.
  struct MoeScratch {
    Tensor router_logits, router_probs, route_weights, route_experts;
    Tensor row_token, row_pair, row_of, row_weight;
    Tensor moe_x, moe_gate, moe_up, moe_act, moe_y;
  };
  void moe_mlp_forward(int l, const Tensor& xn, const MoeScratch& s, Tensor y);

  // Read-only weight views for the incremental decoder (infer/), which reuses these weights
  // with its own KV cache and activations instead of planning a second copy.
  const LayerWeights& layer(int l) const { return layers_[static_cast<size_t>(l)]; }
  // With embedding_on_host: the backend's mapped view of the host table (ops read it in place).
  const Tensor& embed_weight() const { return embed_; }
  const Tensor& final_norm_weight() const { return final_norm_; }
  const Tensor& lm_head_weight() const { return lm_head_; }  // = embed when tied

 private:
  struct Activations;
  struct Impl;
  void bind_lora();  // flat LoRA buffers → per-tensor views
  std::vector<std::pair<std::string, Quant4Tensor*>> packed_weights();  // every layer's w4
  Backend& backend_;
  ModelConfig config_;
  TrainMode mode_;
  LoraConfig lora_;
  RunShape shape_;
  std::unique_ptr<Arena> arena_;
  std::vector<LayerWeights> layers_;
  std::vector<Tensor> layer_shards_;  // layer_shard: layers.<l>.shard
  LayerGather layer_gather_;
  Tensor embed_, final_norm_, lm_head_, d_embed_, d_final_norm_, d_lm_head_;
  // plan_transformer_host's buffers, in one pinned block mapped into the device's address
  // space (the embedding table with embedding_on_host, offloaded layer blobs).
  AllocationPlan host_plan_;
  Backend::HostMapped host_block_;
  Tensor host_buffer(const std::string& name) const;  // its device-side (mapped) view
  // A trainable tensor's master or moment by buffer name, where the plan put it (empty: none).
  std::function<Tensor(const std::string&)> optimizer_state() const;
  std::vector<Param> params_;
  std::vector<Param> flat_params_;  // LoRA: the single flat parameter
  uint64_t dropout_seed_ = 0;
  std::unique_ptr<Impl> impl_;
};

}  // namespace fitlm
