#include "fitlm/infer/generate.h"

#include <algorithm>

#include "fitlm/core/error.h"

namespace fitlm {

std::vector<float> average_log_probs(const std::vector<std::vector<float>>& logits, int64_t vocab) {
  std::vector<float> mean(logits.front().size(), 0.0f);
  const float w = 1.0f / static_cast<float>(logits.size());
  std::vector<float> row(static_cast<size_t>(vocab));
  for (const auto& l : logits)
    for (size_t r0 = 0; r0 < l.size(); r0 += static_cast<size_t>(vocab)) {
      row.assign(l.begin() + r0, l.begin() + r0 + vocab);
      log_softmax(row);
      for (int64_t i = 0; i < vocab; ++i) mean[r0 + i] += w * row[i];
    }
  return mean;
}

std::vector<GenerationResult> generate(std::span<Decoder* const> decoders,
                                       const std::vector<std::vector<int32_t>>& prompts,
                                       const GenerationOptions& o, const Detokenizer& detokenize,
                                       uint64_t first_index) {
  FITLM_CHECK(!decoders.empty(), "generate", "no decoder");
  const size_t n = prompts.size();
  std::vector<GenerationResult> out(n);
  if (n == 0 || o.max_new_tokens <= 0) {
    for (auto& r : out) r.finish_reason = "length";
    return out;
  }
  std::vector<SplitMix64> rng;
  std::vector<std::vector<int32_t>> history(prompts);  // prompt + generated: repetition penalty
  std::vector<bool> done(n, false);
  for (size_t i = 0; i < n; ++i) rng.emplace_back(o.seed * 0x9e3779b97f4a7c15ull + first_index + i);

  std::vector<std::vector<float>> logits;
  for (Decoder* d : decoders) logits.push_back(d->prefill(prompts));
  const int64_t vocab = static_cast<int64_t>(logits.front().size() / n);
  std::vector<int32_t> next(n, 0);
  for (int64_t step = 0;; ++step) {
    std::vector<float> scores =
        decoders.size() == 1 ? std::move(logits.front()) : average_log_probs(logits, vocab);
    size_t active = 0;
    for (size_t i = 0; i < n; ++i) {
      if (done[i]) continue;
      std::span<float> row(scores.data() + i * vocab, static_cast<size_t>(vocab));
      const int32_t tok = sample_next(row, history[i], o.sampling, rng[i]);
      next[i] = tok;
      history[i].push_back(tok);
      GenerationResult& r = out[i];
      r.tokens.push_back(tok);
      if (std::find(o.eos_ids.begin(), o.eos_ids.end(), tok) != o.eos_ids.end()) {
        done[i] = true, r.finish_reason = "eos";
        std::vector<int32_t> text_ids(r.tokens.begin(), r.tokens.end() - 1);
        if (detokenize) r.text = detokenize(text_ids);
        continue;
      }
      if (detokenize) {
        r.text = detokenize(r.tokens);
        for (const std::string& s : o.stop) {
          const size_t at = s.empty() ? std::string::npos : r.text.find(s);
          if (at != std::string::npos) {
            r.text.resize(at);
            done[i] = true, r.finish_reason = "stop";
            break;
          }
        }
        if (done[i]) continue;
      }
      if (static_cast<int64_t>(r.tokens.size()) >= o.max_new_tokens) {
        done[i] = true, r.finish_reason = "length";
        continue;
      }
      ++active;
    }
    if (active == 0) break;
    // Finished sequences keep being fed (their last token) so the batch stays rectangular;
    // their results no longer change.
    logits.clear();
    for (Decoder* d : decoders) logits.push_back(d->step(next));
  }
  return out;
}

}  // namespace fitlm
