// Deterministic shuffles, eval splits and k-fold partitions.
#include "fitlm/text/dataset_split.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>

#include "fitlm/core/error.h"

namespace fitlm {
namespace {

TEST(DatasetSplit, Mt19937_64IsTheStandardSequence) {
  // The C++ standard fixes the 10000th output of a default-seeded mt19937_64; our shuffles rest
  // on that, not on implementation-defined distributions.
  std::mt19937_64 rng;
  rng.discard(9999);
  EXPECT_EQ(rng(), 9981545732273789042ull);
}

TEST(DatasetSplit, ShuffleIsAPermutationFixedBySeed) {
  const auto a = shuffled_indices(1000, 42);
  EXPECT_EQ(a, shuffled_indices(1000, 42));
  EXPECT_NE(a, shuffled_indices(1000, 43));
  std::vector<int64_t> sorted = a;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 1000; ++i) EXPECT_EQ(sorted[i], i);
  // Golden values: the result is fixed by the standard's mt19937_64 and the Fisher-Yates
  // written out in dataset_split.h, so it is the same with every compiler and standard library.
  EXPECT_EQ(shuffled_indices(10, 1234), (std::vector<int64_t>{0, 3, 4, 7, 9, 8, 5, 6, 1, 2}));
  EXPECT_EQ(assign_folds(10, 3, 7), (std::vector<int>{0, 0, 2, 2, 0, 1, 2, 0, 1, 1}));
}

TEST(DatasetSplit, UniformBelowStaysInRangeAndCoversIt) {
  std::mt19937_64 rng(5);
  std::vector<int> seen(7, 0);
  for (int i = 0; i < 7000; ++i) {
    const uint64_t r = uniform_below(rng, 7);
    ASSERT_LT(r, 7u);
    ++seen[r];
  }
  for (int c : seen) EXPECT_GT(c, 800);
  EXPECT_EQ(uniform_below(rng, 1), 0u);
}

TEST(DatasetSplit, FractionSplitIsDisjointCoveringAndDeterministic) {
  const SplitIndices s = split_by_fraction(100, 0.1, 3);
  EXPECT_EQ(s.eval.size(), 10u);
  EXPECT_EQ(s.train.size(), 90u);
  std::set<int64_t> all(s.train.begin(), s.train.end());
  for (int64_t i : s.eval) EXPECT_TRUE(all.insert(i).second);
  EXPECT_EQ(all.size(), 100u);
  EXPECT_EQ(split_by_fraction(100, 0.1, 3).eval, s.eval);
  EXPECT_NE(split_by_fraction(100, 0.1, 4).eval, s.eval);
  EXPECT_EQ(split_by_fraction(3, 0.01, 1).eval.size(), 1u);  // at least one each side
  EXPECT_THROW(split_by_fraction(10, 1.5, 1), Error);
}

TEST(DatasetSplit, KFoldPartitionsAreDisjointAndCovering) {
  const int k = 5;
  const int64_t n = 103;
  std::vector<int> seen(n, 0);
  for (int f = 0; f < k; ++f) {
    const SplitIndices s = kfold_split(n, k, f, 11);
    EXPECT_EQ(s.train.size() + s.eval.size(), static_cast<size_t>(n));
    EXPECT_GE(s.eval.size(), 20u);
    EXPECT_LE(s.eval.size(), 21u);
    std::set<int64_t> train(s.train.begin(), s.train.end());
    for (int64_t i : s.eval) {
      EXPECT_EQ(train.count(i), 0u);
      ++seen[i];
    }
  }
  for (int c : seen) EXPECT_EQ(c, 1);  // every example is in exactly one eval fold
  EXPECT_EQ(assign_folds(n, k, 11), assign_folds(n, k, 11));
  EXPECT_NE(assign_folds(n, k, 11), assign_folds(n, k, 12));
  EXPECT_THROW(kfold_split(n, k, 5, 11), Error);
  EXPECT_THROW(kfold_split(n, 1, 0, 11), Error);
}

TEST(DatasetSplit, StratifiedFoldsKeepClassProportions) {
  // 60 "a", 30 "b", 10 "c", interleaved.
  std::vector<std::string> strata;
  for (int i = 0; i < 100; ++i) strata.push_back(i % 10 < 6 ? "a" : i % 10 < 9 ? "b" : "c");
  const int k = 5;
  const std::vector<int> fold = assign_folds(100, k, 9, &strata);
  std::map<std::pair<int, std::string>, int> count;
  for (int i = 0; i < 100; ++i) ++count[{fold[i], strata[i]}];
  for (int f = 0; f < k; ++f) {
    EXPECT_EQ((count[{f, "a"}]), 12);
    EXPECT_EQ((count[{f, "b"}]), 6);
    EXPECT_EQ((count[{f, "c"}]), 2);
  }
  // Uneven classes: each fold within one of the exact proportion.
  strata.assign(23, "x");
  strata.resize(30, "y");
  const std::vector<int> f2 = assign_folds(30, 4, 1, &strata);
  for (int f = 0; f < 4; ++f) {
    int x = 0, y = 0;
    for (int i = 0; i < 30; ++i) (strata[i] == "x" ? x : y) += f2[i] == f;
    EXPECT_GE(x, 5);
    EXPECT_LE(x, 6);
    EXPECT_GE(y, 1);
    EXPECT_LE(y, 2);
  }
}

}  // namespace
}  // namespace fitlm
