// Answer-only masks with a fake tokenizer and a ChatML template: which tokens are scored, how
// boundaries inside a token are handled, and the rules for BOS/EOS. The same properties are
// checked with the real Llama-3/Qwen3/Llama-2/Gemma-3 tokenizers in dataset_mask_real_test.cpp.
#include "fitlm/text/dataset_mask.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "dataset_test_util.h"
#include "fitlm/text/batch.h"

namespace fitlm {
namespace {

using testing::chatml;
using testing::FakeCodec;

// The decoded text of each maximal run of scored tokens.
std::vector<std::string> scored_runs(const MaskedTokens& m, const TextCodec& codec) {
  std::vector<std::string> runs;
  std::vector<int32_t> run;
  for (size_t t = 0; t <= m.labels.size(); ++t) {
    if (t < m.labels.size() && m.labels[t] != kIgnoreLabel) {
      EXPECT_EQ(m.labels[t], m.input_ids[t]) << "a scored label must be its own input id";
      run.push_back(m.input_ids[t]);
    } else if (!run.empty()) {
      runs.push_back(codec.decode(run));
      run.clear();
    }
  }
  return runs;
}

Sample chat(std::vector<ChatMessage> messages) {
  Sample s;
  s.messages = std::move(messages);
  return s;
}

TEST(DatasetMask, ChatScoresAssistantTurnsAndEndOfTurnOnly) {
  FakeCodec codec;
  const Sample s = chat({{"system", "Be brief"},
                         {"user", "Hi"},
                         {"assistant", "Hello there"},
                         {"user", "Bye"},
                         {"assistant", "Ciao"}});
  const MaskedTokens m = tokenize_sample(s, codec, chatml, {});
  EXPECT_EQ(m.rendered, chatml(s.messages, false));
  // Exactly the whole rendering, tokenized once, without a BOS from the post-processor.
  EXPECT_EQ(m.input_ids, codec.encode(m.rendered, false));
  EXPECT_EQ(scored_runs(m, codec),
            (std::vector<std::string>{"Hello there<|im_end|>", "Ciao<|im_end|>"}));
  EXPECT_EQ(m.inexact_boundaries, 0);
}

TEST(DatasetMask, TemplateThatRendersTheLastAnswerDifferently) {
  // Like Qwen3: the last assistant message gets a think block, earlier ones do not, so
  // render(messages[0..i]) disagrees with the whole rendering right after the turn's start.
  FakeCodec codec;
  ChatRenderFn render = [](const std::vector<ChatMessage>& msgs, bool gen) {
    std::string s;
    for (size_t i = 0; i < msgs.size(); ++i) {
      const bool last = i + 1 == msgs.size();
      s += "<|im_start|>" + msgs[i].role + "\n" +
           (msgs[i].role == "assistant" && last ? "<think></think>" : "") + msgs[i].content +
           "<|im_end|>\n";
    }
    if (gen) s += "<|im_start|>assistant\n";
    return s;
  };
  const MaskedTokens m = tokenize_sample(
      chat({{"user", "Hi"}, {"assistant", "Hello"}, {"user", "Bye"}, {"assistant", "Ciao"}}), codec,
      render, {});
  EXPECT_EQ(scored_runs(m, codec),
            (std::vector<std::string>{"Hello<|im_end|>", "<think></think>Ciao<|im_end|>"}));
  EXPECT_EQ(m.inexact_boundaries, 0);
}

TEST(DatasetMask, TrainOnInputsScoresEverything) {
  FakeCodec codec;
  MaskOptions opt;
  opt.train_on_inputs = true;
  const MaskedTokens m =
      tokenize_sample(chat({{"user", "Hi"}, {"assistant", "Yo"}}), codec, chatml, opt);
  EXPECT_EQ(m.labels, m.input_ids);
}

TEST(DatasetMask, EmptyAnswerStillScoresEndOfTurn) {
  FakeCodec codec;
  const MaskedTokens m =
      tokenize_sample(chat({{"user", "Hi"}, {"assistant", ""}}), codec, chatml, {});
  EXPECT_EQ(scored_runs(m, codec), (std::vector<std::string>{"<|im_end|>"}));
}

TEST(DatasetMask, BoundaryInsideATokenScoresTheStraddlingToken) {
  FakeCodec codec;
  // The generation prompt ends in letters, so "Prompt" + "Hello" is one token.
  ChatRenderFn render = [](const std::vector<ChatMessage>& msgs, bool gen) {
    std::string s;
    for (const auto& m : msgs)
      s += m.role == "assistant" ? "Prompt" + m.content + "</s>\n" : m.content + "\n";
    if (gen) s += "Prompt";
    return s;
  };
  const MaskedTokens m =
      tokenize_sample(chat({{"user", "Q"}, {"assistant", "Hello world"}}), codec, render, {});
  EXPECT_EQ(scored_runs(m, codec), (std::vector<std::string>{"PromptHello world</s>"}));
  EXPECT_EQ(m.inexact_boundaries, 1);
}

TEST(DatasetMask, TemplateThatIsNotPrefixStableIsARowError) {
  FakeCodec codec;
  ChatRenderFn render = [](const std::vector<ChatMessage>& msgs, bool gen) {
    return "turns=" + std::to_string(msgs.size()) + "\n" + chatml(msgs, gen);
  };
  try {
    tokenize_sample(chat({{"user", "Q"}, {"assistant", "A"}}), codec, render, {});
    FAIL() << "expected a RowError";
  } catch (const RowError& e) {
    EXPECT_EQ(e.reason(), BadRowReason::kTemplate);
  }
}

TEST(DatasetMask, ChatRowWithoutTemplateIsARowError) {
  FakeCodec codec;
  EXPECT_THROW(tokenize_sample(chat({{"user", "Q"}, {"assistant", "A"}}), codec, {}, {}), RowError);
}

TEST(DatasetMask, AlpacaWithoutTemplateUsesPromptTextBosAndEos) {
  FakeCodec codec;
  Sample s;
  s.kind = Sample::Kind::kAlpaca;
  s.instruction = "Add";
  s.input = "two and three";
  s.output = "Five";
  s.messages = {{"user", "Add\n\ntwo and three"}, {"assistant", "Five"}};
  const MaskedTokens m = tokenize_sample(s, codec, {}, {});
  EXPECT_EQ(m.rendered, alpaca_prompt_text("Add", "two and three") + "Five");
  EXPECT_NE(m.rendered.find("### Input:\ntwo and three\n\n### Response:\nFive"), std::string::npos);
  EXPECT_EQ(m.input_ids.front(), 0);  // BOS from add_special_tokens=true
  EXPECT_EQ(m.input_ids.back(), 1);   // EOS appended and scored
  EXPECT_EQ(scored_runs(m, codec), (std::vector<std::string>{"Five</s>"}));
  // With a chat template the same row is a two-turn chat.
  const MaskedTokens c = tokenize_sample(s, codec, chatml, {});
  EXPECT_EQ(scored_runs(c, codec), (std::vector<std::string>{"Five<|im_end|>"}));
}

TEST(DatasetMask, CompletionScoresAllWithBosAndOneEos) {
  FakeCodec codec;
  Sample s;
  s.kind = Sample::Kind::kText;
  s.text = "Once upon a time";
  MaskedTokens m = tokenize_sample(s, codec, chatml, {});
  EXPECT_EQ(m.input_ids.front(), 0);
  EXPECT_EQ(m.input_ids.back(), 1);
  EXPECT_EQ(m.labels, m.input_ids);
  s.text = "Ends with eos</s>";
  m = tokenize_sample(s, codec, chatml, {});
  EXPECT_EQ(std::count(m.input_ids.begin(), m.input_ids.end(), 1), 1);
}

TEST(DatasetMask, PretokenizedDefaultsLabelsAndChecksVocabulary) {
  FakeCodec codec;
  Sample s;
  s.kind = Sample::Kind::kTokens;
  s.input_ids = {5, 6, 7};
  MaskedTokens m = tokenize_sample(s, codec, {}, {});
  EXPECT_EQ(m.labels, s.input_ids);
  s.labels = {-100, 6, -100};
  m = tokenize_sample(s, codec, {}, {});
  EXPECT_EQ(m.labels, s.labels);
  s.input_ids = {5, 6, 5000};
  EXPECT_THROW(tokenize_sample(s, codec, {}, {}), RowError);
}

}  // namespace
}  // namespace fitlm
