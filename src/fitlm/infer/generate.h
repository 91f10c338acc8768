// Batched generation over one Decoder, or an ensemble of decoders (one per adapter over the same
// base weights) whose next-token log-probabilities are averaged before sampling.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "fitlm/infer/decoder.h"
#include "fitlm/infer/sampling.h"

namespace fitlm {

struct GenerationOptions {
  SamplingParams sampling;
  int64_t max_new_tokens = 128;
  std::vector<int32_t> eos_ids;   // generation ends when one is produced (not part of the text)
  std::vector<std::string> stop;  // generation ends when the text contains one (text cut before)
  uint64_t seed = 0;
};

struct GenerationResult {
  std::vector<int32_t> tokens;  // generated ids (the EOS id included when it ended the sequence)
  std::string text;             // decoded generated tokens, without EOS / the stop string
  std::string finish_reason;    // "eos", "stop" or "length"
};

// Decodes generated ids to text (skip special tokens); may be empty when no tokenizer is at hand
// (then stop strings are not checked and text stays empty).
using Detokenizer = std::function<std::string(std::span<const int32_t>)>;

// Generates for `prompts` (at most each decoder's max_batch; every decoder is reset). Sequence i
// draws from its own generator seeded with (seed, first_index + i), so a prompt's sample does not
// depend on which batch it lands in.
std::vector<GenerationResult> generate(std::span<Decoder* const> decoders,
                                       const std::vector<std::vector<int32_t>>& prompts,
                                       const GenerationOptions& options,
                                       const Detokenizer& detokenize, uint64_t first_index = 0);

// Mean of the log-softmax of each row set (ensemble combination), [rows, V] each.
std::vector<float> average_log_probs(const std::vector<std::vector<float>>& logits, int64_t vocab);

}  // namespace fitlm
