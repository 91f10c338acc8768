// Next-token selection with the Hugging Face logits processors, applied in HF's order:
// repetition penalty, temperature, top-k, top-p; then argmax (temperature 0) or a draw from
// the softmax with a seeded, per-sequence generator.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace fitlm {

struct SamplingParams {
  float temperature = 0.0f;         // 0 = greedy
  int top_k = 0;                    // 0 = off
  float top_p = 1.0f;               // 1 = off
  float repetition_penalty = 1.0f;  // 1 = off
};

// splitmix64: tiny, fast, and the same sequence on every platform and standard library.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed = 0) : state_(seed) {}
  uint64_t next();
  double uniform() { return static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0); }

 private:
  uint64_t state_;
};

// HF RepetitionPenaltyLogitsProcessor: each token id seen in `previous` (prompt and generated)
// has its score divided by `penalty` when positive, multiplied when negative.
void apply_repetition_penalty(std::span<float> logits, std::span<const int32_t> previous,
                              float penalty);
// Temperature, top-k and top-p in place: removed tokens become −inf. Keeps at least one token.
void apply_temperature_top_k_top_p(std::span<float> logits, const SamplingParams& p);
// log softmax in place (ensembles average these).
void log_softmax(std::span<float> x);
int32_t argmax(std::span<const float> logits);

// The whole chain on one row of logits (modified in place); returns the chosen token.
int32_t sample_next(std::span<float> logits, std::span<const int32_t> previous,
                    const SamplingParams& p, SplitMix64& rng);

}  // namespace fitlm
