#include "fitlm/text/dataset_split.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "fitlm/core/error.h"

namespace fitlm {

uint64_t uniform_below(std::mt19937_64& rng, uint64_t bound) {
  FITLM_CHECK(bound >= 1, "split", "bound {}", bound);
  // Reject the low values that would make r % bound favour small results: 2^64 mod bound of
  // them, i.e. (-bound) % bound in unsigned arithmetic.
  const uint64_t threshold = (0 - bound) % bound;
  while (true) {
    const uint64_t r = rng();
    if (r >= threshold) return r % bound;
  }
}

uint64_t mix_seed(uint64_t seed, uint64_t stream) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * (stream + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

std::vector<int64_t> shuffled_indices(int64_t n, uint64_t seed) {
  std::vector<int64_t> idx(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) idx[i] = i;
  shuffle_in_place(idx, seed);
  return idx;
}

SplitIndices split_by_fraction(int64_t n, double eval_fraction, uint64_t seed) {
  if (!(eval_fraction > 0.0 && eval_fraction < 1.0))
    throw_input_error("dataset", "eval fraction must be in (0, 1), found {}", eval_fraction);
  int64_t n_eval = static_cast<int64_t>(std::llround(eval_fraction * static_cast<double>(n)));
  if (n >= 2)
    n_eval = std::clamp<int64_t>(n_eval, 1, n - 1);
  else
    n_eval = 0;
  const std::vector<int64_t> order = shuffled_indices(n, seed);
  SplitIndices s;
  s.eval.assign(order.begin(), order.begin() + n_eval);
  s.train.assign(order.begin() + n_eval, order.end());
  std::sort(s.eval.begin(), s.eval.end());
  std::sort(s.train.begin(), s.train.end());
  return s;
}

std::vector<int> assign_folds(int64_t n, int k, uint64_t seed,
                              const std::vector<std::string>* strata) {
  if (k < 2) throw_input_error("dataset", "k-fold needs k >= 2, found {}", k);
  if (strata && static_cast<int64_t>(strata->size()) != n)
    throw_internal_error("split", "{} strata for {} examples", strata->size(), n);
  std::vector<int> fold(static_cast<size_t>(n), 0);
  // Groups in sorted label order (std::map) so that the result does not depend on row order
  // beyond the indices themselves.
  std::map<std::string, std::vector<int64_t>> groups;
  for (int64_t i = 0; i < n; ++i) groups[strata ? (*strata)[i] : std::string()].push_back(i);
  int64_t dealt = 0;
  uint64_t stream = 0;
  for (auto& [label, members] : groups) {
    shuffle_in_place(members, mix_seed(seed, stream++));
    for (int64_t i : members) fold[static_cast<size_t>(i)] = static_cast<int>(dealt++ % k);
  }
  return fold;
}

SplitIndices kfold_split(int64_t n, int k, int fold, uint64_t seed,
                         const std::vector<std::string>* strata) {
  if (fold < 0 || fold >= k)
    throw_input_error("dataset", "fold index must be in [0, {}), found {}", k, fold);
  const std::vector<int> f = assign_folds(n, k, seed, strata);
  SplitIndices s;
  for (int64_t i = 0; i < n; ++i) (f[i] == fold ? s.eval : s.train).push_back(i);
  return s;
}

}  // namespace fitlm
