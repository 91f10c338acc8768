// ZeRO-3 for LoRA and QLoRA: zero2's sharded masters and AdamW moments, and the frozen base
// sharded too. Rank r keeps only its bytes of every decoder layer's weight blob
// (RunShape::layer_shard, transformer.h: the 16-bit linear weights, or a 4-bit base's packed
// bytes and absmax as they are), so the base's layers take 1/N of their memory on every rank
// and each rank loads only its bytes. Before a layer runs — forward, recompute, backward — the
// model calls the gather this strategy sets: an all_gather of the layer's shards into the one
// layer-sized buffer the plan holds for it (then a 4-bit base is dequantized from there as
// without sharding). Replicated: norms, final norm and lm_head; the frozen untied embedding
// stays in host memory (embedding_on_host).
// Each layer is gathered twice per micro-batch (forward and backward), blocking: prefetching the
// next layer on a communication stream is not built. Full fine-tuning is refused (plan): its
// trainable weights would need per-layer gradient reduce-scatter; zero2 shards its optimizer.
#pragma once

#include "fitlm/dist/zero2.h"

namespace fitlm::dist {

class Zero3Strategy final : public Zero2Strategy {
 public:
  explicit Zero3Strategy(Comm& comm) : Zero2Strategy(comm) {}
  std::string name() const override { return "zero3"; }
  void shape(RunShape& s) const override;
  void attach(Transformer& model) override;
};

}  // namespace fitlm::dist
