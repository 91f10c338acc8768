// Micro-batches: segments, position ids, cu_seqlens, the first label of each segment, padding,
// packing strategies, determinism and exact resume from a stream position.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <numeric>

#include "fitlm/core/error.h"
#include "fitlm/text/dataset.h"
#include "fitlm/text/pack.h"

namespace fitlm {
namespace {

// Example i has length lengths[i]; ids encode (i, t) so every token can be traced back.
std::vector<Example> make_examples(const std::vector<int64_t>& lengths) {
  std::vector<Example> ex(lengths.size());
  for (size_t i = 0; i < lengths.size(); ++i)
    for (int64_t t = 0; t < lengths[i]; ++t) {
      ex[i].input_ids.push_back(static_cast<int32_t>(1000 * (i + 1) + t));
      ex[i].labels.push_back(t % 3 == 0 ? kIgnoreLabel : static_cast<int32_t>(1000 * (i + 1) + t));
    }
  return ex;
}

std::vector<int64_t> lengths_of_ten() {
  return {5, 17, 3, 9, 12, 1, 16, 7, 8, 2};
}

// Checks the structural rules and returns, per example index, how often it appeared.
std::map<int64_t, int> check_batch(const TokenBatch& b, const std::vector<Example>& ex,
                                   int32_t pad_id) {
  b.check_consistent();
  std::map<int64_t, int> seen;
  for (int64_t s = 0; s < b.n_segments(); ++s) {
    const int32_t begin = b.cu_seqlens[s], end = b.cu_seqlens[s + 1];
    EXPECT_EQ(b.labels[begin], kIgnoreLabel) << "first label of segment " << s;
    if (b.input_ids[begin] == pad_id) {  // the padding segment
      for (int32_t t = begin; t < end; ++t) EXPECT_EQ(b.labels[t], kIgnoreLabel);
      continue;
    }
    const int64_t i = b.input_ids[begin] / 1000 - 1;
    ++seen[i];
    EXPECT_EQ(end - begin, static_cast<int32_t>(ex[i].input_ids.size()));
    for (int32_t t = begin + 1; t < end; ++t) {
      EXPECT_EQ(b.input_ids[t], ex[i].input_ids[t - begin]);
      EXPECT_EQ(b.labels[t], ex[i].labels[t - begin]);
    }
  }
  return seen;
}

TEST(Batch, ScoredTokensIgnoresSegmentStarts) {
  TokenBatch b;
  b.input_ids = {1, 2, 3, 4, 5};
  b.labels = {1, 2, 3, 4, -100};
  b.position_ids = {0, 1, 2, 0, 1};
  b.cu_seqlens = {0, 3, 5};
  EXPECT_EQ(b.scored_tokens(), 2);  // labels[1], labels[2]; labels[3] starts a segment
  b.cu_seqlens.clear();
  EXPECT_EQ(b.scored_tokens(), 3);  // one segment: labels[1..3]
}

TEST(Pack, UnpackedOneSegmentPerExampleNoPadding) {
  const auto ex = make_examples(lengths_of_ten());
  BatchOptions opt;
  opt.sequence_len = 32;
  opt.micro_batch_size = 3;
  Batcher batcher(ex, opt);
  EXPECT_EQ(batcher.batches_in_epoch(0), 4);
  std::map<int64_t, int> all;
  int64_t scored = 0;
  for (int i = 0; i < 4; ++i) {
    const TokenBatch b = batcher.next();
    EXPECT_EQ(b.n_segments(), i < 3 ? 3 : 1);
    for (auto [k, v] : check_batch(b, ex, -1)) all[k] += v;
    scored += b.scored_tokens();
  }
  EXPECT_EQ(all.size(), ex.size());
  for (auto [k, v] : all) EXPECT_EQ(v, 1);
  int64_t expected = 0;
  for (const auto& e : ex) expected += count_scored(e.labels);
  EXPECT_EQ(scored, expected);
  EXPECT_EQ(batcher.position(), (StreamPosition{1, 0}));
}

TEST(Pack, UnpackedPaddedToSequenceLen) {
  const auto ex = make_examples(lengths_of_ten());
  BatchOptions opt;
  opt.sequence_len = 20;
  opt.micro_batch_size = 2;
  opt.pad_to_sequence_len = true;
  opt.pad_id = 7;
  Batcher batcher(ex, opt);
  for (int i = 0; i < batcher.batches_in_epoch(0); ++i) {
    const TokenBatch b = batcher.next();
    EXPECT_EQ(b.size(), 40);
    check_batch(b, ex, 7);
  }
}

class PackStrategy : public ::testing::TestWithParam<PackingStrategy> {};

TEST_P(PackStrategy, RowsHoldWholeExamplesAndLoseNone) {
  std::vector<int64_t> lengths;
  for (int i = 0; i < 200; ++i) lengths.push_back(1 + (i * 37) % 64);
  const auto ex = make_examples(lengths);
  BatchOptions opt;
  opt.sequence_len = 64;
  opt.sample_packing = true;
  opt.packing = GetParam();
  opt.micro_batch_size = 2;
  opt.pad_to_sequence_len = true;
  opt.pad_id = 0;
  Batcher batcher(ex, opt);
  const auto& rows = batcher.rows_of_epoch(0);
  int64_t total = std::accumulate(lengths.begin(), lengths.end(), int64_t{0});
  EXPECT_GE(static_cast<int64_t>(rows.size()), (total + 63) / 64);
  for (const auto& row : rows) {
    int64_t used = 0;
    for (int64_t i : row) used += lengths[i];
    EXPECT_LE(used, 64);
  }
  std::map<int64_t, int> all;
  const int64_t n_batches = batcher.batches_in_epoch(0);
  for (int64_t i = 0; i < n_batches; ++i) {
    const TokenBatch b = batcher.next();
    EXPECT_LE(b.size(), 128);
    EXPECT_EQ(b.size() % 64, 0);
    for (auto [k, v] : check_batch(b, ex, 0)) all[k] += v;
  }
  EXPECT_EQ(all.size(), ex.size());
  for (auto [k, v] : all) EXPECT_EQ(v, 1) << "example " << k;
}

INSTANTIATE_TEST_SUITE_P(Both, PackStrategy,
                         ::testing::Values(PackingStrategy::kFirstFitDecreasing,
                                           PackingStrategy::kSequential));

TEST(Pack, FirstFitDecreasingIsTight) {
  // 6+4, 5+5, 3+3+2+2: FFD fills three rows of 10 exactly.
  const std::vector<int64_t> lengths = {3, 5, 2, 6, 4, 5, 3, 2};
  std::vector<int64_t> order(lengths.size());
  std::iota(order.begin(), order.end(), 0);
  const auto rows = pack_rows(lengths, order, 10, PackingStrategy::kFirstFitDecreasing);
  EXPECT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0], (std::vector<int64_t>{3, 4}));  // 6, then the first 4 that fits
  const auto seq = pack_rows(lengths, order, 10, PackingStrategy::kSequential);
  EXPECT_EQ(seq[0], (std::vector<int64_t>{0, 1, 2}));  // 3+5+2
}

TEST(Pack, PackedSegmentsHaveRestartingPositionsAndMaskedFirstLabel) {
  const auto ex = make_examples({4, 3});
  BatchOptions opt;
  opt.sequence_len = 10;
  opt.sample_packing = true;
  opt.shuffle = false;
  opt.pad_to_sequence_len = true;
  opt.pad_id = 0;
  Batcher batcher(ex, opt);
  const TokenBatch b = batcher.next();
  EXPECT_EQ(b.cu_seqlens, (std::vector<int32_t>{0, 4, 7, 10}));
  EXPECT_EQ(b.position_ids, (std::vector<int32_t>{0, 1, 2, 3, 0, 1, 2, 0, 1, 2}));
  EXPECT_EQ(b.input_ids, (std::vector<int32_t>{1000, 1001, 1002, 1003, 2000, 2001, 2002, 0, 0, 0}));
  EXPECT_EQ(b.labels,
            (std::vector<int32_t>{-100, 1001, 1002, -100, -100, 2001, 2002, -100, -100, -100}));
  EXPECT_EQ(b.scored_tokens(), 4);
}

TEST(Pack, DeterministicBySeedAndEpochsDiffer) {
  const auto ex = make_examples(lengths_of_ten());
  BatchOptions opt;
  opt.sequence_len = 32;
  opt.sample_packing = true;
  Batcher a(ex, opt), b(ex, opt);
  EXPECT_EQ(a.rows_of_epoch(0), b.rows_of_epoch(0));
  const auto e0 = a.rows_of_epoch(0);
  EXPECT_NE(e0, a.rows_of_epoch(1));
  opt.seed = 43;
  Batcher c(ex, opt);
  EXPECT_EQ(a.fingerprint(), b.fingerprint());
  EXPECT_NE(a.fingerprint(), c.fingerprint());
}

TEST(Pack, ResumeFromStreamPositionGivesTheSameBatches) {
  const auto ex = make_examples(lengths_of_ten());
  BatchOptions opt;
  opt.sequence_len = 24;
  opt.micro_batch_size = 2;
  opt.sample_packing = true;
  opt.packing = PackingStrategy::kSequential;
  Batcher run(ex, opt);
  std::vector<TokenBatch> reference;
  StreamPosition saved;
  for (int i = 0; i < 9; ++i) {
    if (i == 5) saved = run.position();
    reference.push_back(run.next());
  }
  Batcher resumed(ex, opt);
  resumed.seek(saved);
  for (int i = 5; i < 9; ++i) {
    const TokenBatch b = resumed.next();
    EXPECT_EQ(b.input_ids, reference[i].input_ids) << "batch " << i;
    EXPECT_EQ(b.labels, reference[i].labels);
    EXPECT_EQ(b.cu_seqlens, reference[i].cu_seqlens);
  }
  EXPECT_EQ(resumed.position(), run.position());
  EXPECT_THROW(resumed.seek({0, 1000}), Error);
}

}  // namespace
}  // namespace fitlm

namespace fitlm {
namespace {

TEST(Pack, EmptyDatasetHasNoBatches) {
  const std::vector<Example> none;
  Batcher batcher(none, BatchOptions{});
  EXPECT_EQ(batcher.batches_in_epoch(0), 0);
  batcher.seek({0, 0});
  EXPECT_THROW(batcher.next(), Error);
}

}  // namespace
}  // namespace fitlm
