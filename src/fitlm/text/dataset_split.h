// Deterministic shuffles and splits. Every result depends only on the seed and the inputs, on
// every platform: the generator is std::mt19937_64 (its output sequence is fixed by the C++
// standard) and the bounded draws and Fisher-Yates are written out here, because
// std::uniform_int_distribution and std::shuffle are implementation-defined.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace fitlm {

// Uniform integer in [0, bound) from `rng` by rejection (no modulo bias). bound >= 1.
uint64_t uniform_below(std::mt19937_64& rng, uint64_t bound);

// Mixes a seed with a stream number (e.g. the epoch) so that streams are independent
// (SplitMix64 finaliser).
uint64_t mix_seed(uint64_t seed, uint64_t stream);

// Fisher-Yates from the last element down: for i = n-1 .. 1, swap(v[i], v[uniform_below(i+1)]).
template <typename T>
void shuffle_in_place(std::vector<T>& v, uint64_t seed) {
  std::mt19937_64 rng(seed);
  for (size_t i = v.size(); i > 1; --i) {
    const size_t j = static_cast<size_t>(uniform_below(rng, i));
    std::swap(v[i - 1], v[j]);
  }
}

// 0..n-1 shuffled by seed.
std::vector<int64_t> shuffled_indices(int64_t n, uint64_t seed);

struct SplitIndices {
  std::vector<int64_t> train;  // ascending
  std::vector<int64_t> eval;   // ascending
};

// Holds out round(eval_fraction * n) examples chosen by seed (0 < eval_fraction < 1; at least
// one example each side when n >= 2).
SplitIndices split_by_fraction(int64_t n, double eval_fraction, uint64_t seed);

// Fold of each example for k-fold cross-validation (k >= 2). Without strata: a seeded shuffle
// dealt round-robin, so fold sizes differ by at most one. With strata (one label per example,
// e.g. the value of a class field): each stratum (in sorted label order) is shuffled and dealt
// round-robin continuing where the previous stratum stopped, so every fold holds each class in
// proportion (within one example) and fold sizes still differ by at most one.
std::vector<int> assign_folds(int64_t n, int k, uint64_t seed,
                              const std::vector<std::string>* strata = nullptr);

// Fold `fold` as the eval set, the others as train.
SplitIndices kfold_split(int64_t n, int k, int fold, uint64_t seed,
                         const std::vector<std::string>* strata = nullptr);

// v[indices[0]], v[indices[1]], ...
template <typename T>
std::vector<T> select_indices(const std::vector<T>& v, const std::vector<int64_t>& indices) {
  std::vector<T> out;
  out.reserve(indices.size());
  for (int64_t i : indices) out.push_back(v[static_cast<size_t>(i)]);
  return out;
}

}  // namespace fitlm
