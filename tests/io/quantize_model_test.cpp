// Which checkpoint tensors `fitlm quantize` writes 4-bit: decoder linears, not embeddings, norms,
// routers or a mixture of experts' per-expert tensors (loading quantizes those itself).
#include "fitlm/io/quantize_model.h"

#include <gtest/gtest.h>

namespace fitlm {
namespace {

TEST(QuantizeModel, QuantizesDecoderLinearsOnly) {
  for (const char* name :
       {"model.layers.0.self_attn.q_proj.weight", "model.layers.11.self_attn.o_proj.weight",
        "model.layers.3.mlp.gate_proj.weight", "model.layers.3.mlp.down_proj.weight"})
    EXPECT_TRUE(is_quantized_linear(name)) << name;
  for (const char* name :
       {"model.embed_tokens.weight", "lm_head.weight", "model.layers.0.input_layernorm.weight",
        "model.layers.0.self_attn.q_proj.bias", "model.layers.1.mlp.gate.weight",
        "model.layers.1.mlp.experts.7.gate_proj.weight",
        "model.layers.1.mlp.experts.0.down_proj.weight",
        "model.layers.2.block_sparse_moe.experts.3.w1.weight",
        "model.layers.2.block_sparse_moe.gate.weight"})
    EXPECT_FALSE(is_quantized_linear(name)) << name;
}

}  // namespace
}  // namespace fitlm
