// Shared set-up of the CPU model tests: random weights in the usual ranges.
#pragma once

#include <functional>
#include <random>
#include <string>
#include <vector>

#include "fitlm/backend/quant4_upload.h"
#include "fitlm/model/transformer.h"

namespace fitlm::model_test {

// Weights ~ N(0, 0.1), norm weights ~ 1 + N(0, 0.1), and every trainable parameter's master
// ~ N(0, 0.1) — a non-zero LoRA B, so that every LoRA gradient is non-zero. Draws from `rng`
// in that order, so the caller's later draws (batches) continue the same sequence.
// `skip(name)`: named weights left alone (and drawing nothing), for a caller that fills them.
inline void randomize_weights(Backend& be, Transformer& m, std::mt19937& rng,
                              const std::function<bool(const std::string&)>& skip = {}) {
  std::normal_distribution<float> n(0.0f, 0.1f);
  for (auto& [name, t] : m.named_weights()) {
    if (skip && skip(name)) continue;
    std::vector<float> h(static_cast<size_t>(t.numel()));
    for (float& v : h) v = name.find("norm") != std::string::npos ? 1.0f + n(rng) : n(rng);
    be.upload(t, h.data(), DType::kF32);
  }
  for (Param& p : m.params()) {
    std::vector<float> h(static_cast<size_t>(p.master.numel()));
    for (float& v : h) v = n(rng);
    be.upload(p.master, h.data(), DType::kF32);
  }
}

// With a 4-bit base (RunShape::base4): the weights randomize_weights does not reach, from `rng`
// — the host-side embedding ~ N(0, 0.1), then every packed weight (decoder linears, experts)
// quantized on the host from N(0, 0.1) values, its dequantized values rounded to bf16.
inline void randomize_base4_weights(Backend& be, Transformer& m, std::mt19937& rng) {
  std::normal_distribution<float> n(0.0f, 0.1f);
  for (auto& [name, t] : m.host_weights()) {  // host memory, which is the CPU backend's
    std::vector<float> h(static_cast<size_t>(t.numel()));
    for (float& v : h) v = n(rng);
    be.upload(t, h.data(), DType::kF32);
  }
  for (auto& [name, q] : m.quantized_weights()) {
    std::vector<float> w(static_cast<size_t>(q->numel()));
    for (float& v : w) v = n(rng);
    upload_quant4(be, quant::quantize4(w, q->type, q->blocksize, q->double_quant()), *q, name,
                  "test");
    q->round_to = DType::kBF16;
  }
}

}  // namespace fitlm::model_test
