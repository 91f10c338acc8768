// Incremental decoding with a KV cache over a Transformer's weights.
//
// A Decoder owns one Arena of its own, planned up front (`plan_decoder`): the KV cache
// K and V per layer [max_batch, max_len, nKV·hd], the activations of one step for up to
// `step_rows` tokens, and the logits of the last token of each sequence [max_batch, V]. It reads
// the base weights of the Transformer it was built over (never copies them) and applies a list
// of LoRA adapters on the fly, so several decoders (an ensemble) share one set of base weights.
//
// Prefill runs each prompt through the same layer math as the training forward (segment
// attention over the prompt), writing K/V into the sequence's cache rows. A decode step computes
// q/k/v for one new token per sequence, appends k/v at the sequence's length and attends over
// its cache with Backend::attention_decode.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "fitlm/backend/arena.h"
#include "fitlm/infer/adapter_weights.h"
#include "fitlm/model/transformer.h"

namespace fitlm {

struct DecoderShape {
  int64_t max_batch = 1;  // sequences decoded together
  int64_t max_len = 0;    // prompt + generated tokens of one sequence
};

AllocationPlan plan_decoder(const ModelConfig& config, const DecoderShape& shape, int max_lora_r,
                            DType compute);

class Decoder {
 public:
  // `model` and the adapters must outlive the decoder. Adapters are summed (usually one).
  Decoder(Transformer& model, std::vector<const AdapterWeights*> adapters, DecoderShape shape);
  ~Decoder();

  const DecoderShape& shape() const { return shape_; }
  int64_t batch() const { return static_cast<int64_t>(lengths_.size()); }
  const std::vector<int32_t>& lengths() const { return lengths_; }
  const Arena& arena() const { return *arena_; }

  // Empties the cache and runs prompts (one per slot, 1 ≤ count ≤ max_batch, each non-empty).
  // Returns the logits predicting each sequence's next token, f32 [count, V] row-major.
  std::vector<float> prefill(const std::vector<std::vector<int32_t>>& prompts);
  // Appends one token per sequence (tokens.size() == batch()) and returns the next logits.
  std::vector<float> step(std::span<const int32_t> tokens);

 private:
  Tensor buf(const char* name, int64_t rows) const;
  // A sparse layer's scratch for t tokens (Transformer::moe_mlp_forward).
  Transformer::MoeScratch moe_scratch(int64_t t) const;
  // decode: one token for each of t sequences; otherwise the prompt (t tokens) of prefill_slot_.
  void layer_forward(int l, int64_t t, bool decode);
  void linear(int l, Projection p, const Tensor& x, Tensor y, int64_t t);
  std::vector<float> head(int64_t rows);

  Transformer& model_;
  Backend& be_;
  const ModelConfig& c_;
  std::vector<const AdapterWeights*> adapters_;
  DecoderShape shape_;
  int64_t step_rows_ = 0;
  std::unique_ptr<Arena> arena_;
  AttentionShape attn_;
  std::vector<int32_t> lengths_;  // tokens in each sequence's cache
  int64_t prefill_slot_ = 0;
};

}  // namespace fitlm
