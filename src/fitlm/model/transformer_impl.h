// Internal to the model: the per-step machinery of a Transformer (views of the arena for the
// current token count, layer forward/backward, loss head).
#pragma once

#include <array>
#include <initializer_list>
#include <optional>
#include <vector>

#include "fitlm/model/transformer.h"
#include "fitlm/model/transformer_buffers.h"

namespace fitlm {

// Saved activations of one layer (or the shared recompute set), viewed for T tokens.
struct LayerActivations {
  Tensor xn1, rstd1, q, k, v, att, lse, x_mid, xn2, rstd2, gate, up, act;
  Tensor q_raw, k_raw, rstd_q, rstd_k;  // Qwen3 q/k norm only
  std::array<Tensor, 7> lora_u;         // uᵀ [g·r, T] per LoRA group, in lora_groups order
  // A sparse layer's (model/transformer_moe.cpp): router logits [T, E], probabilities f32 [T, E],
  // the chosen weights f32 [T, k] and experts i32 [T, k]; per row of the expert computation (T·k
  // rows grouped by expert) its token, its (token, choice) pair and its weight, and each pair's
  // row; the rows' inputs [T·k, H], gate, up and SwiGLU [T·k, I], and outputs [T·k, H].
  Tensor router_logits, router_probs, route_weights, route_experts;
  Tensor row_token, row_pair, row_of, row_weight;
  Tensor moe_x, moe_gate, moe_up, moe_act, moe_y;
  // LoRA on the router and experts (LoraConfig::moe_targets): the router's u = xn2·Aᵀ [T, r] and
  // the rows' u = x·A_eᵀ of gate_up and down [T·k, r]; empty when not targeted.
  Tensor moe_lora_router_u, moe_lora_gate_up_u, moe_lora_down_u;
};

// One projection of a layer in linear_forward / linear_backward: its output y (forward; empty
// skips the base GEMM) or the gradient dy of that output (backward).
struct ProjectionIO {
  Projection p;
  Tensor y;
};

struct Transformer::Impl {
  explicit Impl(Transformer& model);

  int64_t upload_batch(const HostBatch& batch);  // returns T
  void forward(int64_t t, bool keep_for_backward);
  LossResult loss(int64_t t, float grad_scale, bool backward);
  void backward(int64_t t);
  std::vector<float> full_logits(int64_t t);
  // Marks the start of a phase (nullopt: the end of a pass). Only RunShape::check_lifetimes acts
  // on it: it checks that the buffers dead in the phase that ends were not written, and poisons
  // (NaN) those dead in the next.
  void enter_phase(std::optional<Phase> next);

  // Before layer l runs: (layer_shard) its blob gathered from every rank into shard.layer, or
  // (offload_layers) copied from host memory into its buffer; its 4-bit weights dequantized
  // into base4.layer, and (lora_cast_per_layer) its adapters cast from the f32 masters into
  // lora.layer. Every layer's LinearWeights::w, b, w4 and lora_a/b view those buffers.
  // `next`: the layer the caller runs after this one (−1: none), whose copy from host memory
  // may start now.
  void prepare_layer(int l, int next);

  // Where layer l reads its input (t tokens) for the micro-batch in `slot` (−1: slot_):
  // layers.<l>.x_in[@slot], or its ring buffer.
  Tensor layer_input(int l, int64_t t, int slot = -1) const;
  Tensor rows(const std::string& name, int64_t t) const;  // first t rows of a [T_max, C] buffer
  // Pipeline stages: the activation slot the passes read and write (0 otherwise).
  int slot_ = 0;
  // Transformer::moe_mlp_forward: layer l's experts over a.xn2 into y, outside any training
  // pass (no load-balancing statistics, the training counts untouched).
  void moe_decode(int l, const LayerActivations& a, Tensor y);

 private:
  LayerActivations activations(int layer, int64_t t) const;
  // A transposed [R, T_max] buffer (one column per token) for t tokens: its first R·t elements
  // as [R, t] (a contiguous view, not the first t columns).
  Tensor token_columns(const std::string& name, int64_t t) const;
  void layer_forward(int l, const LayerActivations& a, const Tensor& x, Tensor y, int64_t t);
  void layer_backward(int l, const LayerActivations& a, const Tensor& x, Tensor dres, int64_t t);
  // A sparse layer's MLP (transformer_moe.cpp). Forward: routes a.xn2, runs the experts and
  // adds their weighted outputs to y (empty y on recompute: the activations only). Backward:
  // dres holds ∂L/∂(layer output); writes ∂L/∂xn2 into dxn (and the grads of the router and
  // experts in full fine-tuning).
  // counts: rows per expert, filled here (moe_counts(l) in training).
  void moe_forward(int l, const LayerActivations& a, Tensor y, int64_t t,
                   std::vector<int64_t>& counts);
  void moe_backward(int l, const LayerActivations& a, const Tensor& dres, Tensor dxn, int64_t t);
  // Rows per expert of layer l's micro-batch in slot_ (moe_permute's counts; host side).
  std::vector<int64_t>& moe_counts(int l);
  // The projections `io` that read x (q, k, v; o; gate, up; down), base and LoRA.
  void linear_forward(int l, const LayerActivations& a, const Tensor& x,
                      std::initializer_list<ProjectionIO> io, int64_t t, bool accumulate_y = false);
  void linear_backward(int l, const LayerActivations& a, const Tensor& x,
                       std::initializer_list<ProjectionIO> io, Tensor dx, bool accumulate_dx,
                       int64_t t);
  // LoRA products that share their input and run as one: a whole group (lora_groups), or one
  // member when groups do not batch (dropout, RunShape::lora_per_projection).
  struct LoraRun {
    Tensor a, da, u;               // the members' A [n·r, in] as one matrix, dA, uᵀ [n·r, T]
    std::vector<ProjectionIO> io;  // the members, in order
  };
  std::vector<LoraRun> lora_runs(int l, const LayerActivations& a,
                                 std::initializer_list<ProjectionIO> io) const;
  // x, or x with run r's dropout mask applied (in scratch.drop_x): the input of its A product.
  Tensor lora_input(int l, const LoraRun& r, const Tensor& x, int64_t t);
  uint64_t dropout_seed(int layer, Projection p) const;
  Tensor cu_seqlens() const;  // the current batch's [n_segments + 1] offsets
  void cast_lora(int l);
  void gather_layer(int l);
  void fetch_offloaded_layer(int l, int next);

  Transformer& m_;
  Backend& be_;
  const ModelConfig& c_;
  LayerRange layers_;  // the layers this model runs (a pipeline stage's)
  AttentionShape attn_;
  std::vector<bool> saved_;  // per layer: activations kept (true) or recomputed in backward
  std::vector<int32_t> host_targets_;  // shifted labels of the current batch
  int64_t n_segments_ = 0;
  std::optional<Phase> phase_;  // check_lifetimes only
  Tensor lora_layer_;           // lora.layer, or empty when the LoRA values are kept whole
  Tensor shard_layer_;          // shard.layer (layer blobs), or empty
  Tensor shard_layer_next_;     // shard.layer.next (offload_layers), or empty
  // offload_layers: the layer whose copy was started into each buffer (even layers run from
  // shard.layer, odd ones from shard.layer.next) in this pass, or −1. Reset at every pass's
  // start and end: between passes other buffers may share their bytes.
  std::array<int, 2> fetched_{-1, -1};
  std::array<TransferTicket, 2> fetch_copy_{};  // the copy into each buffer, for wait_transfer
  // offload_activations: the two device buffers layer inputs pass through (layer l's is
  // [l % 2]), and the last copy between each and host memory, or empty.
  std::array<Tensor, 2> x_ring_;
  std::array<TransferTicket, 2> x_ring_copy_{};
  Tensor host_layer_input(int l, int64_t t) const;  // offload_activations: its host copy
  // 4-bit base: per layer, its projections' packed weights and their base4.layer views.
  std::vector<std::vector<std::pair<const Quant4Tensor*, Tensor>>> base4_work_;
  std::vector<std::vector<int64_t>> moe_counts_;  // per (slot, layer): moe_counts
  // The load-balancing loss (MoeConfig::aux_loss) of the micro-batch being trained, gathered
  // by the forward pass over every sparse layer (transformer_moe.cpp): rows chosen per expert,
  // Σ of each expert's probability, rows routed; then, from the loss head, ∂L/∂probs per expert
  // (the same for every row).
  bool aux_collect_ = false;
  std::vector<double> aux_counts_, aux_prob_sums_, aux_dprobs_;
  int64_t aux_rows_ = 0;
  void start_aux_loss(bool training_pass);
  // Adds the term to r.loss_sum (weighted by the micro-batch's scored tokens) and sets
  // aux_dprobs_ for backward.
  void finish_aux_loss(LossResult& r, float grad_scale);
  std::vector<LoraGroup> lora_groups_;  // LoRA mode only
  bool batch_lora_ = false;             // a group's products run as one (else member by member)
};

}  // namespace fitlm
