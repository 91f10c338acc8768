// KV-cache decoding against the full-sequence forward of the same Transformer: every position's
// logits (prefill and decode steps), batched sequences of different lengths, greedy generation
// step by step, seeded sampling, and a two-adapter ensemble.
#include "fitlm/infer/decoder.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "fitlm/infer/generate.h"
#include "infer_test_util.h"

using namespace fitlm;
using fitlm::testing::tiny_model;

namespace {

std::vector<float> full_logits(Transformer& m, const std::vector<int32_t>& ids) {
  HostBatch b;
  b.input_ids = ids;
  return m.logits(b);
}

void expect_rows_near(const float* got, const float* want, int64_t v, const std::string& what) {
  float scale = 1.0f, err = 0.0f;
  for (int64_t i = 0; i < v; ++i) {
    scale = std::max(scale, std::abs(want[i]));
    err = std::max(err, std::abs(got[i] - want[i]));
  }
  EXPECT_LE(err, 1e-5f * scale) << what;
}

const std::vector<int32_t> kSeq = {3, 17, 42, 5, 59, 0, 8, 33, 21, 7, 11, 50};

class DecoderParity : public ::testing::TestWithParam<std::string> {};

TEST_P(DecoderParity, DecodeStepsMatchFullForwardAtEveryPosition) {
  auto tm = tiny_model(GetParam(), 16);
  const int64_t v = tm.model->config().vocab_size, n = static_cast<int64_t>(kSeq.size());
  const auto ref = full_logits(*tm.model, kSeq);
  const AdapterWeights adapter = AdapterWeights::from_model(*tm.model);
  Decoder dec(*tm.model, {&adapter}, DecoderShape{1, n});
  auto got = dec.prefill({{kSeq[0]}});
  expect_rows_near(got.data(), ref.data(), v, "position 0 (prefill)");
  for (int64_t t = 1; t < n; ++t) {
    got = dec.step(std::span(&kSeq[t], 1));
    expect_rows_near(got.data(), ref.data() + t * v, v, fmt::format("position {}", t));
  }
  EXPECT_EQ(dec.lengths().front(), n);
  EXPECT_THROW(dec.step(std::span(&kSeq[0], 1)), Error);  // the cache is full
}

TEST_P(DecoderParity, BatchedPrefillOfDifferentLengthsThenDecode) {
  auto tm = tiny_model(GetParam(), 16);
  const int64_t v = tm.model->config().vocab_size;
  const std::vector<int32_t> a(kSeq.begin(), kSeq.begin() + 9), b = {9, 1, 2, 40, 4, 30};
  const auto ref_a = full_logits(*tm.model, a), ref_b = full_logits(*tm.model, b);
  const AdapterWeights adapter = AdapterWeights::from_model(*tm.model);
  Decoder dec(*tm.model, {&adapter}, DecoderShape{3, 10});
  const int pa = 5, pb = 2;  // prompt lengths; the rest is fed step by step
  auto got = dec.prefill({{a.begin(), a.begin() + pa}, {b.begin(), b.begin() + pb}});
  expect_rows_near(got.data(), ref_a.data() + (pa - 1) * v, v, "a prefill");
  expect_rows_near(got.data() + v, ref_b.data() + (pb - 1) * v, v, "b prefill");
  for (int s = 0; s < 4; ++s) {
    const int32_t toks[2] = {a[pa + s], b[pb + s]};
    got = dec.step(toks);
    expect_rows_near(got.data(), ref_a.data() + (pa + s) * v, v, fmt::format("a step {}", s));
    expect_rows_near(got.data() + v, ref_b.data() + (pb + s) * v, v, fmt::format("b step {}", s));
  }
}

TEST_P(DecoderParity, GreedyGenerationIsArgmaxOfFullForwardStepByStep) {
  auto tm = tiny_model(GetParam(), 16);
  const int64_t v = tm.model->config().vocab_size;
  const AdapterWeights adapter = AdapterWeights::from_model(*tm.model);
  Decoder dec(*tm.model, {&adapter}, DecoderShape{1, 16});
  Decoder* ds[] = {&dec};
  GenerationOptions o;
  o.max_new_tokens = 8;
  std::vector<int32_t> seq = {3, 17, 42};
  const auto r = generate(ds, {seq}, o, nullptr);
  ASSERT_EQ(r.size(), 1u);
  ASSERT_EQ(r[0].tokens.size(), 8u);
  EXPECT_EQ(r[0].finish_reason, "length");
  for (int32_t tok : r[0].tokens) {
    const auto ref = full_logits(*tm.model, seq);
    EXPECT_EQ(tok, argmax(std::span(ref.data() + (seq.size() - 1) * v, v)));
    seq.push_back(tok);
  }
}

INSTANTIATE_TEST_SUITE_P(Archs, DecoderParity,
                         ::testing::Values("LlamaForCausalLM", "Qwen3ForCausalLM",
                                           "MixtralForCausalLM", "Qwen3MoeForCausalLM"));

TEST(Generate, SamplingIsDeterministicBySeedAndIndependentOfBatching) {
  auto tm = tiny_model("LlamaForCausalLM", 16);
  const AdapterWeights adapter = AdapterWeights::from_model(*tm.model);
  Decoder dec(*tm.model, {&adapter}, DecoderShape{2, 24});
  Decoder* ds[] = {&dec};
  GenerationOptions o;
  o.max_new_tokens = 12;
  o.sampling.temperature = 1.5f;
  o.sampling.top_k = 30;
  o.sampling.top_p = 0.95f;
  o.seed = 7;
  const std::vector<int32_t> p0 = {3, 17, 42}, p1 = {8, 9};
  const auto a = generate(ds, {p0, p1}, o, nullptr);
  const auto b = generate(ds, {p0, p1}, o, nullptr);
  EXPECT_EQ(a[0].tokens, b[0].tokens);
  EXPECT_EQ(a[1].tokens, b[1].tokens);
  // Sequence 1 alone (index 1) draws the same tokens as inside the batch.
  const auto alone = generate(ds, {p1}, o, nullptr, /*first_index=*/1);
  EXPECT_EQ(alone[0].tokens, a[1].tokens);
  o.seed = 8;
  const auto c = generate(ds, {p0, p1}, o, nullptr);
  EXPECT_NE(a[0].tokens, c[0].tokens);  // 12 draws at temperature 1.5 out of ~30 tokens
}

TEST(Generate, EnsembleOfTwoIdenticalAdaptersEqualsOneAdapter) {
  auto tm = tiny_model("Qwen3ForCausalLM", 16);
  const AdapterWeights adapter = AdapterWeights::from_model(*tm.model);
  Decoder d1(*tm.model, {&adapter}, DecoderShape{1, 20}), d2(*tm.model, {&adapter}, {1, 20});
  GenerationOptions o;
  o.max_new_tokens = 10;
  o.sampling.temperature = 1.0f;
  o.seed = 3;
  Decoder* single[] = {&d1};
  Decoder* pair[] = {&d1, &d2};
  const auto a = generate(single, {{5, 6, 7}}, o, nullptr);
  const auto b = generate(pair, {{5, 6, 7}}, o, nullptr);
  EXPECT_EQ(a[0].tokens, b[0].tokens);
  // The averaged log-probs are the single adapter's log-softmax.
  const auto logits = d1.prefill({{5, 6, 7}});
  std::vector<float> ls = logits;
  log_softmax(ls);
  const auto avg = average_log_probs({logits, logits}, static_cast<int64_t>(logits.size()));
  for (size_t i = 0; i < ls.size(); ++i) EXPECT_NEAR(avg[i], ls[i], 1e-6f);
}

TEST(Generate, EosEndsASequenceAndStopStringsCutTheText) {
  auto tm = tiny_model("LlamaForCausalLM", 16);
  const AdapterWeights adapter = AdapterWeights::from_model(*tm.model);
  Decoder dec(*tm.model, {&adapter}, DecoderShape{1, 16});
  Decoder* ds[] = {&dec};
  GenerationOptions o;
  o.max_new_tokens = 6;
  const auto free_run = generate(ds, {{3, 17, 42}}, o, nullptr);
  o.eos_ids = {free_run[0].tokens[2]};
  const auto eos = generate(ds, {{3, 17, 42}}, o, nullptr);
  EXPECT_EQ(eos[0].finish_reason, "eos");
  EXPECT_LE(eos[0].tokens.size(), 3u);
  EXPECT_EQ(eos[0].tokens.back(), free_run[0].tokens[2]);
  // A detokenizer spelling ids as "<id>": stop at the text of the second token.
  o.eos_ids.clear();
  o.stop = {fmt::format("<{}>", free_run[0].tokens[1])};
  const Detokenizer detok = [](std::span<const int32_t> ids) {
    std::string s;
    for (int32_t i : ids) s += fmt::format("<{}>", i);
    return s;
  };
  const auto stop = generate(ds, {{3, 17, 42}}, o, detok);
  EXPECT_EQ(stop[0].finish_reason, "stop");
  EXPECT_EQ(stop[0].text.find(o.stop[0]), std::string::npos);
}

}  // namespace
