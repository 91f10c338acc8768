#include "fitlm/infer/sampling.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <unordered_set>

namespace fitlm {
namespace {
constexpr float kNegInf = -std::numeric_limits<float>::infinity();
}

uint64_t SplitMix64::next() {
  uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

void apply_repetition_penalty(std::span<float> logits, std::span<const int32_t> previous,
                              float penalty) {
  if (penalty == 1.0f) return;
  // HF gathers once per distinct id (a repeated id is penalised once, not per occurrence).
  std::unordered_set<int32_t> seen(previous.begin(), previous.end());
  for (int32_t id : seen) {
    if (id < 0 || static_cast<size_t>(id) >= logits.size()) continue;
    float& s = logits[static_cast<size_t>(id)];
    s = s < 0.0f ? s * penalty : s / penalty;
  }
}

void apply_temperature_top_k_top_p(std::span<float> logits, const SamplingParams& p) {
  const size_t v = logits.size();
  if (p.temperature > 0.0f && p.temperature != 1.0f)
    for (float& s : logits) s /= p.temperature;
  if (p.top_k > 0 && static_cast<size_t>(p.top_k) < v) {
    // HF: remove scores < the k-th largest (ties with it survive).
    std::vector<float> sorted(logits.begin(), logits.end());
    std::nth_element(sorted.begin(), sorted.begin() + (p.top_k - 1), sorted.end(),
                     std::greater<float>());
    const float kth = sorted[static_cast<size_t>(p.top_k - 1)];
    for (float& s : logits)
      if (s < kth) s = kNegInf;
  }
  if (p.top_p < 1.0f) {
    // HF TopPLogitsWarper: sort ascending, drop tokens whose cumulative probability is
    // <= 1 − top_p, always keep the most likely one.
    std::vector<size_t> order(v);
    std::iota(order.begin(), order.end(), size_t{0});
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return logits[a] < logits[b]; });
    const float mx = logits[order.back()];
    double sum = 0.0;
    for (float s : logits) sum += std::exp(static_cast<double>(s) - mx);
    double cum = 0.0;
    for (size_t i = 0; i + 1 < v; ++i) {
      cum += std::exp(static_cast<double>(logits[order[i]]) - mx) / sum;
      if (cum <= 1.0 - static_cast<double>(p.top_p)) logits[order[i]] = kNegInf;
    }
  }
}

void log_softmax(std::span<float> x) {
  const float mx = *std::max_element(x.begin(), x.end());
  double sum = 0.0;
  for (float s : x) sum += std::exp(static_cast<double>(s) - mx);
  const float lse = mx + static_cast<float>(std::log(sum));
  for (float& s : x) s -= lse;
}

int32_t argmax(std::span<const float> logits) {
  return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

int32_t sample_next(std::span<float> logits, std::span<const int32_t> previous,
                    const SamplingParams& p, SplitMix64& rng) {
  apply_repetition_penalty(logits, previous, p.repetition_penalty);
  if (p.temperature <= 0.0f) return argmax(logits);
  apply_temperature_top_k_top_p(logits, p);
  const float mx = *std::max_element(logits.begin(), logits.end());
  std::vector<double> prob(logits.size());
  double sum = 0.0;
  for (size_t i = 0; i < logits.size(); ++i)
    sum += (prob[i] = std::exp(static_cast<double>(logits[i]) - mx));
  const double u = rng.uniform() * sum;
  double cum = 0.0;
  int32_t last = argmax(logits);  // fallback against rounding at the top end
  for (size_t i = 0; i < prob.size(); ++i) {
    if (prob[i] == 0.0) continue;
    cum += prob[i];
    last = static_cast<int32_t>(i);
    if (u < cum) return last;
  }
  return last;
}

}  // namespace fitlm
