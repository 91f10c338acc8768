// Internal to the model: the named weight and activation buffers of a Transformer.
#pragma once

#include <array>
#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

#include "fitlm/model/transformer.h"

namespace fitlm {

// The phase kinds of a Transformer job, in execution order. The lifetimes plan_transformer gives
// its buffers are sets of these (Lifetime, core/allocation_plan.h); its comment says which buffer
// lives where and why. The runtime marks each phase (Transformer::Impl::enter_phase).
enum class Phase : int {
  kForward,       // F: embedding, then every layer's forward
  kLoss,          // L: final norm, LM-head GEMMs, cross-entropy, dlogits -> dxn (row chunks)
  kNormBackward,  // N: the final norm's backward, dxn -> dres
  kRecompute,     // R: per layer l = N-1..0, the forward of layer l again when it is not saved
  kMlpBackward,   // M: per layer, down / SwiGLU / gate / up / post-attention norm backward
  kAttnBackward,  // A: per layer, o-proj / attention / RoPE / q-k norm / q-k-v / input norm
                  //    backward; the embedding backward closes the last one
};
Lifetime live_in(std::initializer_list<Phase> phases);
std::vector<std::string> phase_names();  // one letter each, in Phase order

// kRouter: a sparse layer's router [E, H] (mlp.gate.weight); kExperts: its experts' weights as
// transformers 5 fuses them, mlp.experts.gate_up_proj [E, 2·I, H] (each expert's gate rows,
// then its up rows) and mlp.experts.down_proj [E, H, I] (model/transformer_moe.cpp).
enum class WeightKind { kEmbed, kNorm, kLinear, kBias, kLmHead, kRouter, kExperts };

struct WeightSpec {
  std::string name;  // HF tensor name
  Shape shape;
  int layer;  // −1 for embed / final norm / lm_head
  WeightKind kind;
  Projection projection = Projection::kQ;  // for kLinear / kBias
};

struct ActivationSpec {
  std::string name;
  Shape shape;
  bool f32;                  // statistics (rstd, lse) are f32 on every backend
  Lifetime shared_lifetime;  // in the shared recompute set (saved layers keep theirs throughout)
  bool i32 = false;          // indices (the MoE routing)
  DType dtype(DType compute) const { return i32 ? DType::kI32 : f32 ? DType::kF32 : compute; }
};

std::vector<WeightSpec> weight_specs(const ModelConfig& c);
// Whether the job's stage keeps weight `w` (RunShape::stage): its layers' weights, the embedding
// on the first stage (and on the last when tied to lm_head), the final norm and lm_head on the
// last. Without stages every weight.
bool stage_keeps(const ModelConfig& c, const RunShape& shape, const WeightSpec& w);
std::pair<int64_t, int64_t> projection_shape(const ModelConfig& c, Projection p);  // {out, in}
bool projection_in_mlp(Projection p);                                              // gate, up, down
// A MoE LoRA target's matrices as fitlm keeps them (MoeWeights): A, B, and B as PEFT writes it
// (the same as b for the router); experts: E for the expert targets (B permuted on save and
// load, expert_b_to_peft), 0 for the router.
struct MoeLoraShape {
  Shape a, b, peft_b;
  int64_t experts = 0, out = 0;
};
MoeLoraShape moe_lora_shape(const ModelConfig& c, MoeTarget t, int r);
bool projection_has_bias(const ModelConfig& c, Projection p);
// A sparse layer's saved LoRA intermediate of target t (activation_specs): "moe_lora_u.router",
// "moe_lora_u.gate_up", "moe_lora_u.down".
std::string moe_lora_u_name(MoeTarget t);
std::vector<ActivationSpec> activation_specs(const ModelConfig& c, const LoraConfig& lora,
                                             TrainMode mode, int64_t tokens);
// LoRA targets that read the same input form a group when all of them are targets: q, k, v
// (the input norm's output) and gate, up (the post-attention norm's). Every other target (o,
// down, or q and v without k) is a group of one. A group's A matrices lie back to back in the
// flat layout, one [g·r, in] matrix, and its intermediates are one transposed buffer
// lora_u.<name> [g·r, T] (row block i: uᵀ = A_i·xᵀ of member i; backward overwrites it with
// duᵀ), so the rank-r products that read x or accumulate into dx run once per group: uᵀ = A·xᵀ,
// dA += duᵀ·x and dx += (duᵀ)ᵀ·A. Only the B products stay per member. With dropout (a mask per
// member) or RunShape::lora_per_projection, the members run one by one over the same buffers.
struct LoraGroup {
  std::string name;                 // "qkv", "gate_up", or the one member's "o_proj", ...
  std::vector<Projection> members;  // in Projection order
};
std::vector<LoraGroup> lora_groups(const LoraConfig& lora);  // in Projection order
// Every LoRA tensor lives in one flat buffer per role (value, master, grad, adam m/v), so the
// optimizer, gradient zeroing and norm are one op each instead of one per tensor (448 for an
// 8B model with seven targets). Each group's A block and each B starts on a 64-element boundary
// (GEMM alignment); the padding stays zero. Checkpoints and adapters go by tensor name
// (Transformer::params()), so they do not depend on this order.
struct LoraSlot {
  std::string name;  // PEFT name
  Shape shape;
  int64_t offset;  // elements into the flat buffer
  int layer;
  Projection projection;  // when moe is empty
  bool is_b;
  std::optional<MoeTarget> moe = std::nullopt;  // a sparse layer's router or experts
};
struct LoraLayout {
  // Per layer, per group (lora_groups): its As, then its Bs; then the layer's MoE targets
  // (kAllMoeTargets order), A then B each.
  std::vector<LoraSlot> slots;
  int64_t total = 0;  // elements, padding included
};
LoraLayout lora_layout(const ModelConfig& c, const LoraConfig& lora, LayerRange layers);
inline LoraLayout lora_layout(const ModelConfig& c, const LoraConfig& lora) {
  return lora_layout(c, lora, {0, c.num_layers});
}
inline constexpr const char* kLoraFlat = "lora.flat";
// With lora_cast_per_layer: one layer's slice of the flat layout (every layer's is the same
// size), in the compute dtype, cast from the masters before the layer runs.
inline constexpr const char* kLoraLayer = "lora.layer";

// 4-bit base (RunShape::base4): one layer's 4-bit weights dequantized, in the compute dtype,
// each at its offset (64-element aligned), filled before the layer runs. The attention
// projections come first; after them a dense layer's gate, up and down, or in the same place a
// sparse layer's experts (gate_up [E, 2·I, H], then down [E, H, I]): a layer has one kind of
// MLP, so the buffer is the attention plus the larger of the MLPs the model has.
inline constexpr const char* kBase4Layer = "base4.layer";
struct Base4LayerLayout {
  std::array<int64_t, 7> offset{};  // elements, by Projection
  int64_t gate_up = 0, down = 0;    // elements: a sparse layer's experts (mixture of experts)
  int64_t total = 0;
};
Base4LayerLayout base4_layer_layout(const ModelConfig& c);

// ZeRO-3 (RunShape::layer_shard): one decoder layer's sharded tensors as one byte blob, the
// same layout for every layer. Per projection (kAllProjections order) its weight — in the
// compute dtype, or with a 4-bit base its packed parts in add_quant4_weight's order (nibbles,
// absmax, nested absmax, nested map) — then its bias if any. Each tensor starts on a
// kLayerBlobAlign boundary (so views of the gathered blob are aligned), and the blob is padded
// to a multiple of world·kLayerBlobAlign so that every rank's shard (shard_block, core/shard.h)
// has the same size and is aligned too.
inline constexpr const char* kShardLayer = "shard.layer";  // the gathered blob of one layer
// Offloaded layers: the blob of the layer that runs next, copied in while one runs.
inline constexpr const char* kShardLayerNext = "shard.layer.next";
inline constexpr size_t kLayerBlobAlign = 256;
// Offloaded activations: the device buffers layer inputs pass through, by the layer's parity.
inline constexpr const char* kLayerInputEven = "offload.x_in.even";
inline constexpr const char* kLayerInputOdd = "offload.x_in.odd";
// "layers.<l>.x_in" (slot 0) or "layers.<l>.x_in@<slot>" (pipeline stages: the micro-batch
// in flight in that slot); in host memory when offloaded.
std::string layer_input_name(int layer, int slot = 0);
// A stage before the last: where its last layer writes the hidden state it hands on.
inline constexpr const char* kStageOutput = "stage.output";
std::string layer_shard_name(int layer);  // "layers.<l>.shard": rank's bytes of layer l
enum class BlobPart { kWeight, kBias, kPacked, kAbsmax, kNestedAbsmax, kNestedMap };
struct LayerBlobEntry {
  Projection projection;
  BlobPart part;
  std::string suffix;  // name after "model.layers.<l>.": "self_attn.q_proj.weight", its bias,
                       // or a packed part as the plan names it ("...weight.absmax")
  DType dtype;
  Shape shape;
  size_t offset = 0;  // bytes into the blob
  size_t bytes() const { return static_cast<size_t>(shape.numel()) * dtype_size(dtype); }
};
struct LayerShardLayout {
  std::vector<LayerBlobEntry> entries;  // in blob order
  size_t bytes = 0;                     // B, padding included
  size_t shard_bytes = 0;               // B / world
  ShardSpec spec;
  // Rank's byte range of the blob: shard_block(B, spec) (every block is shard_bytes long).
  ShardBlock range() const { return shard_block(static_cast<int64_t>(bytes), spec); }
};
// Empty (bytes 0) without layer blobs (layer_blob_spec).
LayerShardLayout layer_shard_layout(const ModelConfig& c, const RunShape& shape, DType compute);

// layer −1: the shared set used with RecomputePolicy::kFull. A saved layer's set per slot
// (RunShape::Stage::in_flight), like its input.
std::string activation_buffer_name(int layer, const std::string& name, int slot = 0);

}  // namespace fitlm
